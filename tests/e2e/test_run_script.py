"""`scripts/run` supervises what it starts: started for real, its worker killed or stopped, observed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
# Generous: scripts/run sets itself up (virtualenv check, imports) before it serves.
START_TIMEOUT_S = 120


@dataclass
class Run:
    process: subprocess.Popen[bytes]
    log: Path
    url: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pid_of(self, name: str) -> int:
        found = re.search(rf"\[k8s-ee\] {name} started \(pid (\d+)\)", self.output())
        assert found, self.output()[-3000:]
        return int(found.group(1))

    def wait_for(self, condition: str, check: object, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():  # type: ignore[operator]
                return
            if self.process.poll() is not None and condition != "exit":
                break
            time.sleep(0.2)
        raise AssertionError(f"never saw {condition}:\n{self.output()[-3000:]}")

    def ready(self) -> int | None:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code
        except httpx.HTTPError:
            return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is gone for every purpose here.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    redis = RedisServer().start()
    port = free_port()
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("K8S_EE_")}
    env.update(
        K8S_EE_REDIS_URL=redis.url,
        K8S_EE_PORT=str(port),
        K8S_EE_WAKE_PORT=str(free_port()),
        K8S_EE_WORKER_METRICS_PORT=str(free_port()),
        K8S_EE_CLUSTER="directory",
        K8S_EE_DIRECTORY=str(tmp_path / "environments"),
        K8S_EE_GENERIC_TOKEN="run-token",
        K8S_EE_WORKER_HEARTBEAT_TIMEOUT="4",
    )
    with log.open("wb") as out:
        # A session of its own, so that whatever is left of it can be ended by its group id.
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "run")],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = Run(process, log, f"http://127.0.0.1:{port}")
    try:
        started.wait_for("the gateway ready with its worker seen", lambda: started.ready() == 200)
        yield started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        redis.cleanup()


def test_a_dead_worker_stops_the_run_and_says_so(run: Run) -> None:
    worker, gateway = run.pid_of("worker"), run.pid_of("gateway")
    os.kill(worker, signal.SIGKILL)
    run.wait_for("exit", lambda: run.process.poll() is not None, timeout=60)
    assert run.process.returncode != 0
    assert re.search(rf"worker \(pid {worker}\) exited with status 137", run.output()), run.output()[-2000:]
    # The gateway no longer accepts deliveries that nobody would act on.
    assert not alive(gateway)
    assert run.ready() is None


def test_sigterm_stops_the_gateway_and_the_worker(run: Run) -> None:
    worker, gateway = run.pid_of("worker"), run.pid_of("gateway")
    run.process.send_signal(signal.SIGTERM)
    run.process.wait(30)
    assert "SIGTERM: stopping" in run.output()
    assert not alive(worker) and not alive(gateway)


def test_readyz_says_when_no_worker_is_seen(run: Run) -> None:
    worker = run.pid_of("worker")
    # Stopped, not dead: scripts/run has nothing to notice, only the heartbeat stops.
    os.kill(worker, signal.SIGSTOP)
    try:
        run.wait_for("readyz 503", lambda: run.ready() == 503, timeout=60)
        answer = httpx.get(f"{run.url}/readyz", timeout=2).json()
        assert answer["status"] == "unavailable"
        assert "no worker has been seen for" in answer["reason"]
        assert "K8S_EE_WORKER_HEARTBEAT_TIMEOUT" in answer["reason"]
        age = re.search(
            r"^k8s_ee_worker_heartbeat_age_seconds (\S+)$", httpx.get(f"{run.url}/metrics").text, re.M
        )
        assert age is not None and float(age.group(1)) > 4
    finally:
        os.kill(worker, signal.SIGCONT)
    run.wait_for("readyz 200 again", lambda: run.ready() == 200, timeout=60)
