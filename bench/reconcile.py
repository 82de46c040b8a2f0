"""Reconcile benchmark: twenty pull requests opened at once, from webhook to applied environment.

Gateway, worker, Redis and the project's test Kubernetes API server (tests/fakes/kubeapi)
each run in their own process on this machine; the worker talks to the API server
over HTTP with the official client, exactly as it talks to a cluster. Twenty signed
GitHub `pull_request.opened` deliveries are sent at once. Per environment it prints
the time from the gateway's 202 to the last object applied (and to the namespace
step: namespace, quota, limits and network policies applied), and the number of API
requests, against the number of objects applied. Figures are printed, never asserted.

    .venv/bin/python -m bench.reconcile [--prs 20] [--config bench/k8s-ee.bench.yaml]
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
from typing import Any

from bench.ingest import free_port, start, wait_http

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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prs", type=int, default=20)
    parser.add_argument("--config", type=Path, default=ROOT / "bench" / "k8s-ee.bench.yaml")
    args = parser.parse_args()
    redis_bin = os.environ.get("K8S_EE_REDIS_SERVER") or shutil.which("redis-server")
    if not redis_bin:
        print(
            "a redis-server is needed (scripts/bootstrap.sh finds one, or set K8S_EE_REDIS_SERVER)",
            file=sys.stderr,
        )
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="k8s-ee-bench-"))
    redis_port, gateway_port = free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            start(
                [
                    redis_bin,
                    "--port",
                    str(redis_port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(workdir),
                ],
                {},
            )
        )
        kube = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.kubeapi", "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        kube_url = (kube.stdout.readline() if kube.stdout else "").strip()
        processes.append(kube)  # type: ignore[arg-type]
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: bench\n"
            f"clusters:\n- name: bench\n  cluster:\n    server: {kube_url}\n"
            "users:\n- name: bench\n  user:\n    token: bench\n"
            "contexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\n"
        )
        env = {
            "K8S_EE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "K8S_EE_GITHUB_WEBHOOK_SECRET": SECRET,
            "K8S_EE_PORT": str(gateway_port),
            "K8S_EE_LOG_LEVEL": "WARNING",
            "K8S_EE_CLUSTER": "kubernetes",
            "K8S_EE_KUBECONFIG": str(kubeconfig),
            "K8S_EE_DEFAULT_CONFIG": str(args.config),
            "K8S_EE_PREVIEW_DOMAIN": "preview.example.com",
            "K8S_EE_MAX_JOBS": str(max(10, args.prs)),
        }
        processes.append(start([sys.executable, "-m", "gateway.cli", "serve"], env))
        processes.append(start([sys.executable, "-m", "gateway.cli", "worker"], env))
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz")
        time.sleep(1.0)  # the worker connects to Redis

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

        # Done when every environment's app Deployment and Service are applied and nothing moved for a while.
        deadline = time.time() + 120
        while time.time() < deadline:
            requests = control(kube_url, "/_test/requests")["items"]
            done = {
                ns
                for ns in sent
                if any(r["path"].endswith(f"/namespaces/{ns}/services/{ns}-app") for r in requests)
            }
            if len(done) == len(sent):
                time.sleep(1.0)
                requests = control(kube_url, "/_test/requests")["items"]
                break
            time.sleep(0.2)
        else:
            print("not every environment was applied within 120 s", file=sys.stderr)
            return 1

        totals, steps, counts, applied = [], [], [], []
        for ns, at in sent.items():
            mine = [
                r
                for r in requests
                if f"/namespaces/{ns}/" in r["path"] or r["path"].endswith(f"/namespaces/{ns}")
            ]
            patches = [r for r in mine if r["method"] == "PATCH"]
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
            f"{len(sent)} pull requests opened at once; config {args.config.name}; worker max_jobs {env['K8S_EE_MAX_JOBS']}"
        )
        print(
            f"202 -> last object applied:   median {statistics.median(totals) * 1000:7.1f} ms   "
            f"p95 {percentile(totals, 0.95) * 1000:7.1f} ms   (targets: median < 300 ms, p95 < 1000 ms)"
        )
        print(
            f"202 -> namespace step done:   median {statistics.median(steps) * 1000:7.1f} ms   "
            f"p95 {percentile(steps, 0.95) * 1000:7.1f} ms   (namespace, quota, limits, network policies)"
        )
        print(
            f"API requests per environment: {min(counts)}-{max(counts)} for {min(applied)}-{max(applied)} objects applied"
            f"   (target: at most objects + 3)"
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
