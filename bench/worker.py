"""Worker benchmark: what reporting and reconciling cost, seen from outside the processes.

Processes as in production: a redis-server, the gateway (`k8s-ee serve`), the worker
(`k8s-ee worker`) and the project's test Kubernetes API server (tests/fakes/kubeapi, pods ready
at once) each in their own process; the fake GitHub (tests/fakes/fakehosts) in this one, which
the worker reaches over HTTP with its production settings (GitHub's default pacing, only the URL
and a token set). Signed GitHub `pull_request` deliveries go to the gateway's webhook endpoint.
Everything is read from outside: the fake GitHub's request log, the API server's (`/_test/`),
the status records as Redis executes them and every other command (one MONITOR), and INFO
commandstats. Figures are printed, never asserted.

1. **One pull request's lifecycle** (opened, one push, closed; then a synchronize of the same
   head, a redeploy with nothing changed): per step the GitHub calls and writes, the Kubernetes
   requests, and the Redis commands (gateway; worker's reports, polling and the rest).
2. **Report latency**: from each state change (the status record's `updated_at`) to the first
   write at the fake GitHub that shows it, or a later state, for that one pull request and for
   `--prs` opened at once; and the most writes GitHub got within one second.
3. **Environments per second** of each back-end (a worker without host credentials): `--environments`
   opened at once, then the same heads delivered again (a redeploy with nothing changed).

    .venv/bin/python -m bench.worker [--prs 10] [--environments 50] [--quiet 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from bench.ingest import free_port, redis_binary, redis_command, start, wait_http
from bench.observe import (
    Command,
    Environment,
    RedisMonitor,
    busiest_second,
    github_writes,
    latencies,
    now_offset,
    ports_of,
    shape,
)
from bench.reconcile import SECRET, control, percentile, post
from bench.stack import start_kubeapi, write_kubeconfig
from tests.fakes.fakehosts import FakeGitHub
from tests.support.pull_requests import REPO, pull_request
from tests.support.senders import FIXTURES, hub_signature

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "bench" / "k8s-ee.bench.yaml"
TOKEN = "ghp-bench-0123456789"
HEADERS = json.loads((FIXTURES / "github" / "pull_request.opened.headers.json").read_text())


def delivery_id(action: str, number: int, minute: float) -> str:
    return f"bench-{action}-{number}-{minute}"


def sha(number: int, push: int = 0) -> str:
    return f"{push:08x}{number:032x}"


@dataclass
class Step:
    """What one step (deliveries sent at once, until their environments settle) cost."""

    name: str
    host_calls: int = 0
    host_writes: int = 0
    kube_requests: int = 0
    commands: int = 0  # INFO commandstats, gateway and worker: scripts' own calls included
    split: Counter[str] = field(default_factory=Counter)  # from MONITOR, by who sent them
    seconds: float = 0.0


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, redis_bin: str) -> None:
        self.args = args
        self.workdir = workdir
        self.processes: list[subprocess.Popen[Any]] = []
        self.redis_port = free_port()
        self.processes.append(start(redis_command(redis_bin, self.redis_port, workdir), {}))
        self.kube, self.kube_url = start_kubeapi(0.0)
        self.processes.append(self.kube)
        self.kubeconfig = write_kubeconfig(workdir / "kubeconfig", self.kube_url)
        self.github = FakeGitHub()
        self.github.start()
        self.github.add_token(TOKEN)
        self.github.add_repo(REPO)
        self.offset = now_offset()
        self.heads: dict[str, int] = {}
        gateway_port = free_port()
        self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        self.redis_env = {"K8S_EE_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0"}
        gateway_env = {
            **self.redis_env,
            "K8S_EE_GITHUB_WEBHOOK_SECRET": SECRET,
            "K8S_EE_PORT": str(gateway_port),
            "K8S_EE_LOG_LEVEL": "WARNING",
        }
        self.gateway = start(
            [sys.executable, "-m", "gateway.cli", "serve"], gateway_env, workdir / "gateway.log"
        )
        self.processes.append(self.gateway)
        wait_http(f"{self.gateway_url}/healthz")
        self.info = redis.Redis(port=self.redis_port)
        self.monitor = RedisMonitor(self.redis_port)
        self.worker: subprocess.Popen[bytes] | None = None
        self.ports: dict[int, str] = {}
        self.idle: set[tuple[str, bytes]] = set()

    # -- processes -----------------------------------------------------------------------------

    def start_worker(self, **settings: str) -> None:
        """`k8s-ee worker` with these K8S_EE_ settings, as production runs it (default pacing)."""
        self.stop_worker()
        env = {
            **self.redis_env,
            "K8S_EE_LOG_LEVEL": "WARNING",
            "K8S_EE_PREVIEW_DOMAIN": "preview.example.com",
            "K8S_EE_WORKER_METRICS_PORT": "0",
            # The bench's API server has no `kubernetes` Service: say where it is.
            "K8S_EE_API_SERVER_CIDRS": "127.0.0.1/32",
            **{f"K8S_EE_{name.upper()}": value for name, value in settings.items()},
        }
        cmd = [sys.executable, "-m", "gateway.cli", "worker"]
        self.worker = start(cmd, env, self.workdir / "worker.log")
        time.sleep(1.5)  # it connects to Redis and the cluster

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.terminate()
            self.worker.wait(15)
            self.worker = None

    def github_worker(self) -> None:
        self.start_worker(
            cluster="kubernetes",
            kubeconfig=str(self.kubeconfig),
            github_api_url=self.github.url,
            github_token=TOKEN,
        )

    def close(self) -> None:
        self.stop_worker()
        self.monitor.close()
        self.github.stop()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)

    # -- measuring -------------------------------------------------------------------------------

    def learn_ports(self) -> None:
        for name, process in (("gateway", self.gateway), ("worker", self.worker)):
            if process is not None:
                for port in ports_of(process.pid, self.redis_port):
                    self.ports[port] = name

    def measure_idle(self, seconds: float = 3.0) -> float:
        """An idle worker's commands per second; what it sends then is its polling."""
        self.learn_ports()
        mark = self.monitor.mark()
        time.sleep(seconds)
        self.learn_ports()
        mine = [c for c in self.monitor.since(mark) if self.ports.get(c.port) == "worker"]
        self.idle = {shape(c) for c in mine}
        return len(mine) / seconds

    def split(self, commands: list[Command]) -> Counter[str]:
        """By sender: the gateway; the worker's reports, its polling (what it sends when idle), the rest.
        MULTI, EXEC and the like name no key: they go with the command before them on their connection.
        And `sent`: the commands the two processes sent (a script once, what it calls not at all)."""
        found: Counter[str] = Counter()
        others: Counter[tuple[str, bytes]] = Counter()
        last: dict[int, str] = {}
        for command in commands:
            who = self.ports.get(command.port)
            if who in ("gateway", "worker") and not command.scripted:
                found["sent"] += 1
            if who == "gateway":
                found["gateway"] += 1
            elif who == "worker":
                if not command.first and command.port in last:
                    kind = last[command.port]
                elif command.reports:
                    kind = "worker reports"
                elif shape(command) in self.idle:
                    kind = "worker polling"
                else:
                    kind = "worker other"
                    others[shape(command)] += 1
                last[command.port] = kind
                found[kind] += 1
        if os.environ.get("BENCH_TRACE"):
            print(
                "    the worker's other commands:",
                ", ".join(f"{n} {k.decode()} x{c}" for (n, k), c in others.most_common(12)),
            )
        return found

    def commandstats(self) -> int:
        stats = cast(dict[str, Any], self.info.info("commandstats"))
        return sum(int(v["calls"]) for v in stats.values())

    def kube_count(self) -> int:
        return len(control(self.kube_url, "/_test/requests")["items"])

    def deliver(self, action: str, number: int, head: str, minute: float) -> float:
        payload = pull_request(action, number, head, minute, branch=f"feature-{number}")
        body = json.dumps(payload).encode()
        headers = {
            **HEADERS,
            "X-GitHub-Delivery": delivery_id(action, number, minute),
            "X-Hub-Signature-256": hub_signature(SECRET, body),
        }
        status, at = post(f"{self.gateway_url}/webhooks/github", body, headers)
        if status != 202:
            raise RuntimeError(f"the gateway answered {status}")
        return at

    def step(
        self,
        name: str,
        action: str,
        heads: dict[int, str],
        minute: float,
        done: Callable[[Environment, Environment, float], bool],
        quiet: float,
    ) -> Step:
        """Deliver `action` for every pull request at once; wait until `done` says each has
        settled and, with `quiet`, until neither GitHub nor the API server got a call for that long."""
        for number, head in heads.items():
            self.heads[head] = number
        before = {n: self.monitor.environment(n) for n in heads}
        host_mark, kube_mark, redis_mark = len(self.github.requests), self.kube_count(), self.monitor.mark()
        stats = self.commandstats()
        started = time.time()
        sent: dict[int, float] = {}
        threads = [
            threading.Thread(target=lambda n=n, h=h: sent.__setitem__(n, self.deliver(action, n, h, minute)))
            for n, h in heads.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deadline = started + 120 + 10 * len(heads)
        pending = set(heads)
        finished = started
        while pending:
            if time.time() > deadline:
                raise RuntimeError(f"{name}: {len(pending)} environments did not settle in time")
            for n in list(pending):
                env = self.monitor.environment(n)
                # A reconcile that applied the delivery and left the environment deployed has
                # settled it too, whether or not it counted itself in the record.
                linked = self.monitor.was_applied(delivery_id(action, n, minute)) and env.state != "queued"
                if done(env, before[n], sent[n]) or (
                    done is redeployed and linked and env.state == "deployed"
                ):
                    pending.discard(n)
                    finished = time.time()
            time.sleep(0.01)
        if quiet:
            last = (len(self.github.requests), self.kube_count())
            calm = time.time()
            while time.time() - calm < quiet:
                time.sleep(0.1)
                now = (len(self.github.requests), self.kube_count())
                if now != last:
                    last, calm = now, time.time()
        self.learn_ports()
        host = self.github.requests[host_mark:]
        if os.environ.get("BENCH_TRACE"):
            print(f"    {name}: GitHub calls", ", ".join(f"{r.method} {r.path}" for r in host))
        return Step(
            name,
            host_calls=len(host),
            host_writes=sum(1 for r in host if r.method != "GET"),
            kube_requests=self.kube_count() - kube_mark,
            # Less the one INFO of this bench that the second reading counts.
            commands=self.commandstats() - stats - 1,
            split=self.split(self.monitor.since(redis_mark)),
            seconds=finished - started,
        )


def deployed(env: Environment, before: Environment, sent: float) -> bool:
    return env.state == "deployed" and any(c.state == "deployed" and c.at >= sent - 1 for c in env.changes)


def redeployed(env: Environment, before: Environment, sent: float) -> bool:
    return env.state == "deployed" and env.reconciles > before.reconciles


def destroyed(env: Environment, before: Environment, sent: float) -> bool:
    return env.state == "destroyed"


def print_steps(steps: list[Step]) -> None:
    print(
        f"  {'step':<22} {'GitHub calls':>12} {'writes':>7} {'k8s requests':>13} {'Redis':>6}"
        f" {'gateway':>8} {'reports':>8} {'polling':>8} {'other':>6} {'sent':>5}"
    )
    for s in steps:
        print(
            f"  {s.name:<22} {s.host_calls:>12} {s.host_writes:>7} {s.kube_requests:>13} {s.commands:>6}"
            f" {s.split['gateway']:>8} {s.split['worker reports']:>8} {s.split['worker polling']:>8}"
            f" {s.split['worker other']:>6} {s.split['sent']:>5}"
        )


def print_latency(label: str, values: list[float], unshown: int) -> None:
    if not values:
        print(f"  {label}: no state change was shown on GitHub")
        return
    print(
        f"  {label}: median {statistics.median(values):.2f} s, p95 {percentile(values, 0.95):.2f} s,"
        f" max {max(values):.2f} s over {len(values)} state changes"
        + (f" ({unshown} never shown)" if unshown else "")
    )


def lifecycle(bench: Bench, quiet: float) -> None:
    print("one pull request on GitHub: opened, one push, closed (reports paced as in production)")
    number = 1
    for push in (0, 1):
        bench.github.add_file(REPO, "k8s-ee.yaml", CONFIG.read_text(), ref=sha(number, push))
    pull = bench.github.add_pull(REPO, number, head_sha=sha(number), head_ref=f"feature-{number}")
    opened = bench.step("opened (deploy)", "opened", {number: sha(number)}, 0, deployed, quiet)
    pull.head_sha = sha(number, 1)
    pushed = bench.step("push (redeploy)", "synchronize", {number: sha(number, 1)}, 1, deployed, quiet)
    again = bench.step("same head again", "synchronize", {number: sha(number, 1)}, 2, redeployed, quiet)
    pull.state = "closed"
    closed = bench.step("closed (destroy)", "closed", {number: sha(number, 1)}, 3, destroyed, quiet)
    steps = [opened, pushed, closed]
    total = Step(
        "lifecycle",
        host_calls=sum(s.host_calls for s in steps),
        host_writes=sum(s.host_writes for s in steps),
        kube_requests=sum(s.kube_requests for s in steps),
        commands=sum(s.commands for s in steps),
        split=sum((s.split for s in steps), Counter()),
    )
    print_steps([opened, pushed, closed, total, again])
    print("  (the lifecycle is opened + push + closed; 'same head again' is a redeploy with nothing changed;")
    print("  Redis: the commands executed, scripts' own calls included, split by sender in the next four;")
    print("  sent: the commands the gateway and the worker sent, a script counted once)")
    changes = bench.monitor.environment(number).changes
    writes = [w for w in github_writes(bench.github, REPO, bench.heads, bench.github.requests, bench.offset)]
    mine = [w for w in writes if w.number == number]
    values = latencies(changes, mine)
    print_latency("state change -> GitHub write, 1 pull request", values, len(changes) - len(values))


def concurrent(bench: Bench, prs: int, quiet: float) -> None:
    numbers = range(100, 100 + prs)
    for n in numbers:
        bench.github.add_file(REPO, "k8s-ee.yaml", CONFIG.read_text(), ref=sha(n))
        bench.github.add_pull(REPO, n, head_sha=sha(n), head_ref=f"feature-{n}")
    mark = len(bench.github.requests)
    step = bench.step(f"{prs} opened at once", "opened", {n: sha(n) for n in numbers}, 0, deployed, quiet)
    writes = github_writes(bench.github, REPO, bench.heads, bench.github.requests[mark:], bench.offset)
    values: list[float] = []
    changes = 0
    for n in numbers:
        env = bench.monitor.environment(n)
        changes += len(env.changes)
        values += latencies(env.changes, [w for w in writes if w.number == n])
    print_latency(
        f"state change -> GitHub write, {prs} pull requests opened at once", values, changes - len(values)
    )
    print(
        f"  GitHub writes: {step.host_writes} ({step.host_writes / prs:.1f} per pull request),"
        f" at most {busiest_second(writes)} within one second (GitHub asks for at most 1 per second)"
    )
    print(
        f"  Redis commands per environment, deploy with its reports: {step.split['sent'] / prs:.0f} sent"
        f" by the gateway and the worker (a script counted once; issue 10's target: at most 90);"
        f" {step.commands / prs:.0f} executed, scripts' own calls included (without the worker's polling:"
        f" {(step.commands - step.split['worker polling']) / prs:.0f}; reports"
        f" {step.split['worker reports'] / prs:.0f}, gateway {step.split['gateway'] / prs:.0f})"
    )


def throughput(bench: Bench, backend: str, count: int, base: int) -> None:
    """Environments per second of one back-end, without a code host: first deploys, then redeploys."""
    if backend == "kubernetes":
        bench.start_worker(cluster="kubernetes", kubeconfig=str(bench.kubeconfig), default_config=str(CONFIG))
    else:
        bench.start_worker(
            cluster="directory", directory=str(bench.workdir / "environments"), default_config=str(CONFIG)
        )
    heads = {n: sha(n) for n in range(base, base + count)}
    first = bench.step("first deploy", "opened", heads, 0, deployed, 0)
    again = bench.step("redeploy", "synchronize", heads, 1, redeployed, 0)
    print(
        f"  {backend:<10} first deploy {count / first.seconds:6.1f} environments/s"
        f" ({first.kube_requests / count:.1f} k8s requests, {first.commands / count:.0f} Redis commands each);"
        f" redeploy, nothing changed, {count / again.seconds:6.1f} environments/s"
        f" ({again.kube_requests / count:.1f} k8s requests, {again.commands / count:.0f} Redis commands each)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prs", type=int, default=10, help="pull requests opened at once")
    parser.add_argument("--environments", type=int, default=50, help="per back-end, for environments/s")
    parser.add_argument(
        "--quiet", type=float, default=3.0, help="seconds without a host or API call that end a step"
    )
    args = parser.parse_args()
    redis_bin = redis_binary()
    if not redis_bin:
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="k8s-ee-bench-worker-"))
    bench = Bench(args, workdir, redis_bin)
    try:
        bench.github_worker()
        idle = bench.measure_idle()
        print(f"idle worker: {idle:.0f} Redis commands/s ({', '.join(sorted({n for n, _ in bench.idle}))})")
        lifecycle(bench, args.quiet)
        concurrent(bench, args.prs, args.quiet)
        print(f"environments per second, {args.environments} opened at once, no code host")
        throughput(bench, "kubernetes", args.environments, 1000)
        throughput(bench, "directory", args.environments, 2000)
        return 0
    except RuntimeError as exc:
        print(f"{exc}; logs in {workdir}", file=sys.stderr)
        workdir = Path()  # kept for a look
        return 1
    finally:
        bench.close()
        if workdir != Path():
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
