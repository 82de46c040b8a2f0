"""Reconcile benchmark: pull requests opened at once, from webhook to applied and to ready environment.

Gateway, worker, Redis and the project's test Kubernetes API server (tests/fakes/kubeapi, with
its Deployment controller) each run in their own process on this machine; the worker talks to
the API server over HTTP with the official client, exactly as it talks to a cluster. Signed
GitHub `pull_request.opened` deliveries are sent at once. Per environment it prints the time
from the gateway's 202 to the last object applied (and to the namespace step: namespace, quota,
limits and network policies applied), and to the environment found ready (`deployed_at`, the
app's pods available; `--ready-delay 0`: as soon as they exist), and the number of API
requests, against the number of objects applied.

With a ready delay (`--prs 200 --ready-delay 30`) every environment waits for its pods at
once: it prints the worker's memory while they all wait and at its peak, and the Redis
commands per environment, from the webhook to ready (gateway and worker). Figures are
printed, never asserted.

    .venv/bin/python -m bench.reconcile [--prs 20] [--ready-delay 0] [--config bench/k8s-ee.bench.yaml]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, cast

import redis

from bench.ingest import free_port, peak_rss_mib, redis_binary, redis_command, start, wait_http
from bench.stack import start_kubeapi, write_kubeconfig
from handlers.keys import Keys
from handlers.status import EnvironmentStatus

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = ROOT / "tests" / "fixtures" / "github" / "pull_request.opened.json"
SECRET = "bench-secret"
# What a namespace step is made of: the objects that exist before anything of the app's.
NAMESPACE_STEP = ("/resourcequotas/", "/limitranges/", "/networkpolicies/")


def control(url: str, path: str) -> Any:
    with urllib.request.urlopen(url + path, timeout=10) as answer:
        return json.loads(answer.read())


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, float]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
        return answer.status, time.time()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def statuses(client: redis.Redis, keys: Keys) -> dict[str, EnvironmentStatus]:
    """Every environment's status record, by namespace."""
    found: dict[str, EnvironmentStatus] = {}
    for name in client.scan_iter(match=keys.status("*"), count=1000):
        raw = cast(bytes | None, client.get(name))
        if raw:
            status = EnvironmentStatus.model_validate_json(raw)
            if status.namespace:
                found[status.namespace] = status
    return found


def commands(client: redis.Redis) -> int:
    stats = cast(dict[str, Any], client.info("stats"))
    return int(stats["total_commands_processed"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prs", type=int, default=20)
    parser.add_argument(
        "--ready-delay", type=float, default=0.0, help="seconds until the test API server's pods are ready"
    )
    parser.add_argument("--config", type=Path, default=ROOT / "bench" / "k8s-ee.bench.yaml")
    args = parser.parse_args()
    redis_bin = redis_binary()
    if not redis_bin:
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="k8s-ee-bench-"))
    redis_port, gateway_port = free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(start(redis_command(redis_bin, redis_port, workdir), {}))
        kube, kube_url = start_kubeapi(args.ready_delay)
        processes.append(kube)  # type: ignore[arg-type]
        kubeconfig = write_kubeconfig(workdir / "kubeconfig", kube_url)
        env = {
            "K8S_EE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "K8S_EE_GITHUB_WEBHOOK_SECRET": SECRET,
            "K8S_EE_PORT": str(gateway_port),
            "K8S_EE_LOG_LEVEL": "WARNING",
            "K8S_EE_CLUSTER": "kubernetes",
            "K8S_EE_KUBECONFIG": str(kubeconfig),
            "K8S_EE_DEFAULT_CONFIG": str(args.config),
            "K8S_EE_PREVIEW_DOMAIN": "preview.example.com",
            "K8S_EE_MAX_JOBS": str(min(max(10, args.prs), 50)),
            # The bench's API server has no `kubernetes` Service: say where it is.
            "K8S_EE_API_SERVER_CIDRS": "127.0.0.1/32",
        }
        processes.append(start([sys.executable, "-m", "gateway.cli", "serve"], env))
        worker = start([sys.executable, "-m", "gateway.cli", "worker"], env)
        processes.append(worker)
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz")
        time.sleep(1.0)  # the worker connects to Redis
        store = redis.Redis(port=redis_port)
        keys = Keys("k8s-ee:")
        commands_before = commands(store)
        rss_idle = rss_mib(worker.pid)

        template = json.loads(PAYLOAD.read_text())
        project_id = "bench"
        sent: dict[str, float] = {}
        threads = []

        def send(number: int) -> None:
            payload = json.loads(json.dumps(template))
            payload["number"] = payload["pull_request"]["number"] = number
            payload["pull_request"]["head"]["sha"] = hashlib.sha1(str(number).encode()).hexdigest()
            body = json.dumps(payload).encode()
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": "pull_request",
                "X-GitHub-Delivery": f"bench-{number}",
                "X-Hub-Signature-256": "sha256="
                + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
            }
            status, at = post(f"http://127.0.0.1:{gateway_port}/webhooks/github", body, headers)
            assert status == 202, status
            sent[f"{project_id}-pr-{number}"] = at

        for number in range(1, args.prs + 1):
            threads.append(threading.Thread(target=send, args=(1000 + number,)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        # Done when every environment is deployed (or failed); sampled once all of them are applied.
        deadline = time.time() + 120 + args.ready_delay
        waiting_rss = waiting_count = 0.0
        seen: dict[str, EnvironmentStatus] = {}
        while time.time() < deadline:
            seen = statuses(store, keys)
            ours = [seen[ns] for ns in sent if ns in seen]
            applied_now = [s for s in ours if s.applied_at is not None]
            settled = [s for s in ours if s.state in ("deployed", "failed")]
            if len(applied_now) == len(sent) and not waiting_count:
                waiting_count = float(len(applied_now) - len(settled))
                waiting_rss = rss_mib(worker.pid)
            if len(settled) == len(sent):
                break
            time.sleep(0.2)
        else:
            print("not every environment was ready in time", file=sys.stderr)
            return 1
        commands_used = commands(store) - commands_before
        requests = control(kube_url, "/_test/requests")["items"]
        failed = [ns for ns in sent if seen[ns].state != "deployed"]
        if failed:
            print(
                f"{len(failed)} environments failed, e.g. {failed[0]}: {seen[failed[0]].last_error}",
                file=sys.stderr,
            )

        totals, steps, readies, counts, applied = [], [], [], [], []
        for ns, at in sent.items():
            deployed_at = seen[ns].deployed_at
            if deployed_at is not None:
                readies.append(deployed_at.timestamp() - at)
            mine = [
                r
                for r in requests
                if f"/namespaces/{ns}/" in r["path"] or r["path"].endswith(f"/namespaces/{ns}")
            ]
            patches = [r for r in mine if r["method"] == "PATCH" and "fieldManager" in r["query"]]
            totals.append(max(r["at"] for r in patches) - at)
            step = [
                r
                for r in patches
                if r["path"].endswith(f"/namespaces/{ns}") or any(p in r["path"] for p in NAMESPACE_STEP)
            ]
            steps.append(max(r["at"] for r in step) - at)
            counts.append(len(mine))
            applied.append(len(patches))

        if os.environ.get("BENCH_TRACE"):
            ns, at = next(iter(sent.items()))
            for r in requests:
                if ns in r["path"]:
                    print(f"  {(r['at'] - at) * 1000:7.1f} ms {r['method']} {r['path']}")
        print(
            f"{len(sent)} pull requests opened at once; config {args.config.name}; worker max_jobs "
            f"{env['K8S_EE_MAX_JOBS']}; pods ready {args.ready_delay:g} s after they are created"
        )
        print(
            f"202 -> last object applied:   median {statistics.median(totals) * 1000:7.1f} ms   "
            f"p95 {percentile(totals, 0.95) * 1000:7.1f} ms   (targets: median < 300 ms, p95 < 1000 ms)"
        )
        print(
            f"202 -> namespace step done:   median {statistics.median(steps) * 1000:7.1f} ms   "
            f"p95 {percentile(steps, 0.95) * 1000:7.1f} ms   (namespace, quota, limits, network policies)"
        )
        if readies:
            print(
                f"202 -> ready (deployed):      median {statistics.median(readies) * 1000:7.1f} ms   "
                f"p95 {percentile(readies, 0.95) * 1000:7.1f} ms   (the app's pods available, databases ready)"
            )
        print(
            f"API requests per environment: {min(counts)}-{max(counts)} for {min(applied)}-{max(applied)} objects applied"
            f"   (applying, then reading its readiness)"
        )
        print(
            f"worker memory: {rss_idle:.1f} MiB idle, {waiting_rss:.1f} MiB with {waiting_count:.0f} environments "
            f"waiting at once, peak {peak_rss_mib(worker.pid):.1f} MiB"
        )
        print(
            f"Redis commands per environment, webhook to ready (gateway and worker): {commands_used / len(sent):.0f}"
        )
        return 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
