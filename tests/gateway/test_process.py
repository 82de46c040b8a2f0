"""The processes themselves: start-up refuses bad settings by name, logs are JSON with the delivery id."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from providers.logs import JSONFormatter, delivery_id_var


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("K8S_EE_") and k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_bad_setting_stops_start_up_naming_it() -> None:
    result = run_cli("serve", K8S_EE_PORT="eighty", K8S_EE_GITHUB_WEBHOOK_SECRET="s3cr3t-value")
    assert result.returncode == 2
    assert "K8S_EE_PORT" in result.stderr
    assert "s3cr3t-value" not in result.stderr


def test_a_bad_worker_setting_stops_the_worker_naming_it() -> None:
    result = run_cli("worker", K8S_EE_DEFAULT_CONFIG="/nonexistent/k8s-ee.yaml")
    assert result.returncode == 2
    assert "K8S_EE_DEFAULT_CONFIG" in result.stderr


@pytest.mark.parametrize("process", ["serve", "worker"])
def test_a_misspelt_setting_stops_start_up_with_the_nearest_name(process: str) -> None:
    result = run_cli(process, K8S_EE_PREVIEW_DOMAN="previews.example.org")
    assert result.returncode == 2, result.stderr
    assert "unknown setting: K8S_EE_PREVIEW_DOMAN (did you mean K8S_EE_PREVIEW_DOMAIN?)" in result.stderr
    assert "previews.example.org" not in result.stderr


def test_the_variables_the_scripts_and_tests_read_do_not_stop_start_up() -> None:
    # They pass the check: what stops the worker is the bad value, named as before.
    result = run_cli("worker", K8S_EE_PYTHON="python3", K8S_EE_DEFAULT_CONFIG="/nonexistent/k8s-ee.yaml")
    assert result.returncode == 2
    assert "K8S_EE_DEFAULT_CONFIG" in result.stderr and "unknown setting" not in result.stderr


def test_a_cluster_that_cannot_be_used_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nclusters: [this is not a kubeconfig\n")
    for extra in ({}, {"K8S_EE_KUBECONFIG": str(tmp_path / "missing")}, {"K8S_EE_KUBECONFIG": str(broken)}):
        result = run_cli("worker", K8S_EE_CLUSTER="kubernetes", HOME=str(tmp_path), **extra)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        [line] = [line for line in result.stderr.splitlines() if not line.startswith("{")]
        assert line.startswith("k8s-ee: K8S_EE_CLUSTER=kubernetes, but no usable cluster configuration")
        assert "K8S_EE_KUBECONFIG" in line


def test_log_lines_are_json_with_the_delivery_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("k8s_ee.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    token = delivery_id_var.set("delivery-123")
    try:
        logger.info("delivery %s", "accepted", extra={"provider": "github"})
    finally:
        delivery_id_var.reset(token)
    logger.info("outside any delivery")
    logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["delivery_id"] == "delivery-123" and first["message"] == "delivery accepted"
    assert first["provider"] == "github" and first["level"] == "info"
    assert "delivery_id" not in second
