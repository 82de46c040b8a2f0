"""Ingestion benchmark: the gateway's full webhook path against a bare Starlette app.

Both run on uvicorn in their own process on this machine and get the same load
from the same wrk process (same concurrency, same duration): GitHub's real-size
`pull_request.opened` payload with a valid signature and a unique delivery id per
request. The full path verifies, parses, normalises, stores and queues in Redis.

Prints requests/s and p50/p99 latency of both, their ratio, the CPU time each server
process spent per request (user + system, from /proc/<pid>/stat over the measured run:
steadier than throughput on a busy machine, since it does not count time spent waiting
for a core), and the gateway's peak RSS after at least 10,000 deliveries. Figures are
printed, never asserted.

    .venv/bin/python -m bench.ingest [--connections 32] [--seconds 10]

Needs `wrk` (Debian: apt-get install wrk) and a redis-server (scripts/bootstrap.sh finds one).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = ROOT / "tests" / "fixtures" / "github" / "pull_request.opened.json"
SECRET = "bench-secret"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.05)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (its own, not its children's)."""
    # The command name (field 2) may hold spaces: the numbers start after its closing parenthesis.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(
    url: str, pid: int, connections: int, seconds: int, env: dict[str, str], redis_pid: int
) -> dict[str, float]:
    """One wrk run, with the CPU the server process `pid` and Redis spent per request during it."""
    before, redis_before = cpu_seconds(pid), cpu_seconds(redis_pid)
    result = wrk(url, connections, seconds, env)
    requests = max(result["requests"], 1)
    result["cpu_us"] = (cpu_seconds(pid) - before) * 1e6 / requests
    result["redis_cpu_us"] = (cpu_seconds(redis_pid) - redis_before) * 1e6 / requests
    return result


def wrk(url: str, connections: int, seconds: int, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(ROOT / "bench" / "ingest.lua"),
            url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def start(cmd: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """`cmd` with `env` added to this process's; its stderr appended to `log` (else dropped)."""
    if log is None:
        return subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    with log.open("ab") as stream:
        return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=stream)


def redis_binary() -> str | None:
    """The redis-server the benchmarks run (K8S_EE_REDIS_SERVER, else PATH's); says so when none."""
    found = os.environ.get("K8S_EE_REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        print(
            "a redis-server is needed (run through scripts/bootstrap.sh, or set K8S_EE_REDIS_SERVER)",
            file=sys.stderr,
        )
    return found


def redis_command(binary: str, port: int, workdir: str | os.PathLike[str]) -> list[str]:
    """A throwaway redis-server on loopback: no snapshots, no append-only file."""
    return [
        binary,
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        *("--dir", str(workdir)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    redis_bin = redis_binary()
    if not redis_bin:
        return 2

    body = PAYLOAD.read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    workdir = tempfile.mkdtemp(prefix="k8s-ee-bench-")
    redis_port, gateway_port, wake_port, bare_port = free_port(), free_port(), free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(start(redis_command(redis_bin, redis_port, workdir), {}))
        gateway_env = {
            "K8S_EE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "K8S_EE_GITHUB_WEBHOOK_SECRET": SECRET,
            "K8S_EE_PORT": str(gateway_port),
            # The wake service runs, as in production, on a port of its own.
            "K8S_EE_WAKE_PORT": str(wake_port),
            "K8S_EE_LOG_LEVEL": "WARNING",
        }
        gateway = start([sys.executable, "-m", "gateway.cli", "serve"], gateway_env)
        processes.append(gateway)
        bare = start(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.bare_app:app",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            {"PYTHONPATH": str(ROOT)},
        )
        processes.append(bare)
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz")
        wait_http(f"http://127.0.0.1:{bare_port}/")

        load_env = {"BODY_FILE": str(PAYLOAD), "SIGNATURE": signature}
        # A short warm-up of each, then the measured runs.
        wrk(f"http://127.0.0.1:{bare_port}", args.connections, 2, {**load_env, "RUN_ID": "warm-bare"})
        wrk(f"http://127.0.0.1:{gateway_port}", args.connections, 2, {**load_env, "RUN_ID": "warm"})
        bare_result = measured(
            f"http://127.0.0.1:{bare_port}",
            bare.pid,
            args.connections,
            args.seconds,
            {**load_env, "RUN_ID": "bare"},
            processes[0].pid,
        )
        full_result = measured(
            f"http://127.0.0.1:{gateway_port}",
            gateway.pid,
            args.connections,
            args.seconds,
            {**load_env, "RUN_ID": "full"},
            processes[0].pid,
        )
        deliveries = int(full_result["requests"])
        # Bring the total over 10,000 deliveries before reading the peak RSS.
        while deliveries < 10_000:
            extra = wrk(
                f"http://127.0.0.1:{gateway_port}",
                args.connections,
                3,
                {**load_env, "RUN_ID": f"more{deliveries}"},
            )
            deliveries += int(extra["requests"])
        rss = peak_rss_mib(gateway.pid)

        import redis

        queued = redis.Redis(port=redis_port).zcard("k8s-ee:queue")
        print(
            f"payload: {PAYLOAD.name} ({len(body)} bytes), concurrency {args.connections}, {args.seconds} s each, wrk -t1"
        )
        for name, r in (
            ("bare Starlette (read body, 202)", bare_result),
            ("full path (verify+parse+store+queue)", full_result),
        ):
            print(
                f"{name:40s} {r['rps']:9.0f} req/s   p50 {r['p50_us'] / 1000:6.2f} ms   p99 {r['p99_us'] / 1000:6.2f} ms"
                f"   CPU {r['cpu_us']:4.0f} us/req   non-2xx {int(r['non_2xx'])}   socket errors {int(r['errors'])}"
            )
        print(f"ratio full/bare: {full_result['rps'] / bare_result['rps']:.3f}   (target >= 0.30)")
        print(f"full path p99: {full_result['p99_us'] / 1000:.2f} ms   (target <= 15 ms)")
        print(
            f"gateway CPU per request: {full_result['cpu_us']:.0f} us (bare Starlette: "
            f"{bare_result['cpu_us']:.0f} us); Redis CPU per request: {full_result['redis_cpu_us']:.0f} us"
        )
        print(f"gateway peak RSS after {deliveries} deliveries: {rss:.1f} MiB   (target < 64 MiB)")
        print(f"jobs queued in Redis: {queued} (warm-up included)")
        return 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
