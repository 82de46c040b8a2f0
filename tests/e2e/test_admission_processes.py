"""Admission with two real worker processes racing for the last slots, and a worker restart.

Two `k8s-ee worker` processes share one Redis and a directory back-end; the limit is 3
environments awake at once. Eight pull requests open at the same moment: whichever worker takes
which, exactly three environments are deployed and five wait in order. A destroy frees a slot
that exactly one of the waiting environments gets. With every worker stopped, a close still waits
in Redis, and the worker that starts next frees the slot and promotes the next in line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.pull_requests import send as send_pull_request
from tests.support.pull_requests import sha
from tests.support.senders import ADMIN_TOKEN
from tests.support.worker import wait_for

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LIMIT = 3


class Workers:
    """Worker processes of our own, stopped by their process ids."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{len(self.running)}-{uuid.uuid4().hex[:6]}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker"], cwd=ROOT, env=self.env, stdout=log, stderr=log
        )
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.running:
            self.stop(process)


@pytest.fixture
def workers(redis_client: Any, redis_server: Any, tmp_path: Path) -> Iterator[Workers]:
    config = tmp_path / "k8s-ee.yaml"
    config.write_text("projectId: shop\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("K8S_EE_")}
    env |= {
        "K8S_EE_REDIS_URL": redis_server.url,
        "K8S_EE_CLUSTER": "directory",
        "K8S_EE_DIRECTORY": str(tmp_path / "environments"),
        "K8S_EE_DEFAULT_CONFIG": str(config),
        "K8S_EE_MAX_ENVIRONMENTS": str(LIMIT),
        "K8S_EE_MAX_JOBS": "4",
        "K8S_EE_LOG_LEVEL": "WARNING",
        "K8S_EE_WORKER_METRICS_PORT": "0",  # several workers at once
    }
    running = Workers(env, tmp_path)
    yield running
    running.stop_all()


def states(client: Any) -> dict[int, dict[str, Any]]:
    items = client.get("/api/v1/environments", headers=ADMIN).json()["items"]
    return {item["number"]: item for item in items}


def settled(client: Any, count: int) -> dict[int, dict[str, Any]] | None:
    found = states(client)
    done = [s for s in found.values() if s["state"] in ("deployed", "destroyed") or s.get("note")]
    return found if len(found) >= count and len(done) == len(found) else None


def test_two_workers_racing_for_the_last_slots_promote_exactly_once(
    gateway: Any, workers: Workers, tmp_path: Path
) -> None:
    client = gateway()
    first, second = workers.start(), workers.start()

    def send(number: int, action: str = "opened") -> None:
        send_pull_request(client, action, number, sha(number), 10 if action == "opened" else 11)

    # Eight at once, for two workers and three slots.
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, range(1, 9)))
    found = wait_for(lambda: settled(client, 8), timeout=60)
    deployed = sorted(n for n, s in found.items() if s["state"] == "deployed")
    queued = {n: s["note"] for n, s in found.items() if s["state"] == "queued"}
    assert len(deployed) == LIMIT and len(queued) == 8 - LIMIT
    positions = sorted(int(note.split("position ")[1].split(",")[0]) for note in queued.values())
    assert positions == list(range(1, 8 - LIMIT + 1))
    assert all(f"{LIMIT} of {LIMIT} in use" in note for note in queued.values())
    folders = sorted(p.name for p in (tmp_path / "environments").iterdir() if not p.name.startswith("."))
    assert folders == sorted(f"shop-pr-{n}" for n in deployed)

    # A destroy frees a slot: the first in line, and only it, is deployed.
    next_in_line = next(n for n, note in queued.items() if "position 1," in note)
    send(deployed[0], "closed")

    def promoted() -> dict[int, dict[str, Any]] | None:
        now = states(client)
        return (
            now
            if now[deployed[0]]["state"] == "destroyed" and now[next_in_line]["state"] == "deployed"
            else None
        )

    now = wait_for(promoted, timeout=60)
    assert sum(1 for s in now.values() if s["state"] == "deployed") == LIMIT
    assert sum(1 for s in now.values() if s["state"] == "queued") == 8 - LIMIT - 1

    # Every worker stops; a close arrives meanwhile and waits in Redis for the next worker.
    workers.stop(first)
    workers.stop(second)
    victim = next(n for n, s in now.items() if s["state"] == "deployed")
    waiting = {n: s["note"] for n, s in now.items() if s["state"] == "queued"}
    then_next = next(n for n, note in waiting.items() if "position 1," in note)
    send(victim, "closed")
    assert states(client)[victim]["state"] == "deployed"
    workers.start()

    def recovered() -> dict[int, dict[str, Any]] | None:
        later = states(client)
        return (
            later
            if later[victim]["state"] == "destroyed" and later[then_next]["state"] == "deployed"
            else None
        )

    later = wait_for(recovered, timeout=60)
    assert sum(1 for s in later.values() if s["state"] == "deployed") == LIMIT
