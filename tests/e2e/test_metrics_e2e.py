"""End to end: what Prometheus would scrape. DORA counts and the installation's figures from a
gateway, each worker's own counters from that worker's port; counted once, whatever repeats."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from handlers.settings import load_worker_config
from providers.events import Provider
from providers.hosts.build import build_hosts
from providers.hosts.settings import load_host_settings
from tests.fakes.fakehosts import FakeGitHub
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.pull_requests import REPO, send, sha
from tests.support.redis_server import free_port
from tests.support.worker import drain, kube_cluster, wait_for

SERIES = f'environment="preview",provider="github",repository="{REPO}"'


def sample(text: str, name: str, labels: str = "") -> float | None:
    """The value of the sample `name{labels}` in Prometheus' text format, whatever the label order."""
    wanted = dict(re.findall(r'(\w+)="([^"]*)"', labels))
    for line in text.splitlines():
        found = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if (
            found
            and found.group(1) == name
            and dict(re.findall(r'(\w+)="([^"]*)"', found.group(2) or "")) == wanted
        ):
            return float(found.group(3))
    return None


def test_dora_counts_follow_deployments_once(gateway: Any, redis_server: Any) -> None:
    client = gateway()
    settings = load_worker_config(redis_url=redis_server.url, preview_domain="preview.example.com")
    with KubeAPIServer() as kube, FakeGitHub() as github:
        github.add_token("ghp-test")
        github.add_repo(REPO)
        github.add_file(REPO, "k8s-ee.yaml", "projectId: shop\n", ref=sha(1))
        github.add_file(REPO, "k8s-ee.yaml", "projectId: Not Valid\n", ref=sha(2))
        github.add_file(REPO, "k8s-ee.yaml", "projectId: shop\n", ref=sha(3))
        # The change's first commit was written three hours before it is first deployed.
        first_commit = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        pull = github.add_pull(REPO, 8, head_sha=sha(1), commits=[(sha(1), first_commit)])
        hosts = build_hosts(
            load_host_settings(
                github_api_url=github.url, github_token="ghp-test", github_seconds_between_requests=0
            )
        )
        github_host = {Provider.GITHUB: hosts[Provider.GITHUB]}
        cluster = kube_cluster(kube.url)

        def deploy(n: int, twice: bool = False) -> str:
            pull.head_sha = sha(n)
            for _ in range(2 if twice else 1):
                send(client, "opened" if n == 1 else "synchronize", 8, sha(n), n)
                drain(settings, cluster, hosts=github_host)
            return client.get("/metrics").text

        metrics = deploy(1, twice=True)  # a redelivery, reconciled again: still one deployment
        assert sample(metrics, "k8s_ee_dora_deployments_total", f'{SERIES},result="success"') == 1
        assert sample(metrics, "k8s_ee_environments", 'state="deployed"') == 1
        assert sample(metrics, "k8s_ee_dora_lead_time_seconds_count", SERIES) == 1
        lead_sum = sample(metrics, "k8s_ee_dora_lead_time_seconds_sum", SERIES)
        assert lead_sum is not None and 3 * 3600 <= lead_sum < 3 * 3600 + 300
        # Three hours: past the 1 h edge, within 6 h.
        assert sample(metrics, "k8s_ee_dora_lead_time_seconds_bucket", f'{SERIES},le="3600.0"') == 0
        assert sample(metrics, "k8s_ee_dora_lead_time_seconds_bucket", f'{SERIES},le="21600.0"') == 1

        metrics = deploy(2)  # an invalid k8s-ee.yaml: a failed deployment, a change failure
        assert sample(metrics, "k8s_ee_dora_deployments_total", f'{SERIES},result="failure"') == 1
        assert sample(metrics, "k8s_ee_dora_change_failures_total", SERIES) == 1
        assert sample(metrics, "k8s_ee_environments", 'state="failed"') == 1

        metrics = deploy(3)  # fixed: recovered; the lead time is not taken a second time
        assert sample(metrics, "k8s_ee_dora_deployments_total", f'{SERIES},result="success"') == 2
        assert sample(metrics, "k8s_ee_dora_failed_deployment_recovery_seconds_count", SERIES) == 1
        assert sample(metrics, "k8s_ee_dora_lead_time_seconds_count", SERIES) == 1
        # The first commit was asked for once, for the first deployment only.
        assert github.calls().count(("GET", f"/repos/{REPO}/pulls/8/commits")) == 1


def test_each_worker_serves_its_own_counters(gateway: Any, redis_server: Any, tmp_path: Path) -> None:
    client = gateway()
    config = tmp_path / "k8s-ee.yaml"
    config.write_text("projectId: shop\n")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("K8S_EE_")},
        "K8S_EE_REDIS_URL": redis_server.url,
        "K8S_EE_CLUSTER": "directory",
        "K8S_EE_DIRECTORY": str(tmp_path / "environments"),
        "K8S_EE_DEFAULT_CONFIG": str(config),
        "K8S_EE_WORKER_METRICS_PORT": str(port),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def scrape() -> str:
            try:
                return httpx.get(url, timeout=2).text
            except httpx.HTTPError:
                return ""

        assert "k8s_ee_reconciles_total" in wait_for(scrape)
        send(client, "opened", 3, sha(1), 1)
        text = wait_for(
            lambda: (t := scrape()) and sample(t, "k8s_ee_reconciles_total", 'outcome="deployed"') == 1 and t
        )
        assert sample(text, "k8s_ee_webhook_to_ready_seconds_count") == 1
        assert (sample(text, "k8s_ee_reconcile_duration_seconds_count") or 0) >= 1
        # The installation's figures are the gateway's to export, never a worker's.
        assert "k8s_ee_queue_depth" not in text and "k8s_ee_dora" not in text
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        finally:
            if worker.poll() is None:
                worker.kill()
            worker.stderr.close()  # type: ignore[union-attr]
