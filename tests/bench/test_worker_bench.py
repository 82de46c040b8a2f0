"""The worker benchmark runs end to end at a tiny size and prints every figure it promises.

Only that each figure is printed is checked: its values are measurements, never asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.redis_server import redis_server_binary

ROOT = Path(__file__).resolve().parents[2]

FIGURES = (
    "idle worker:",
    "opened (deploy)",
    "push (redeploy)",
    "closed (destroy)",
    "lifecycle",
    "same head again",
    "state change -> GitHub write, 1 pull request: median",
    "state change -> GitHub write, 2 pull requests opened at once: median",
    "within one second",
    "Redis commands per environment, deploy with its reports:",
    "kubernetes first deploy",
    "directory  first deploy",
    "redeploy, nothing changed",
)


def test_the_worker_benchmark_prints_every_figure() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.worker", "--prs", "2", "--environments", "2", "--quiet", "1"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("K8S_EE_")},
            "K8S_EE_REDIS_SERVER": redis_server_binary(),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    missing = [figure for figure in FIGURES if figure not in run.stdout]
    assert not missing, f"not printed: {missing}\n{run.stdout}"
    # One figure per step: GitHub calls, writes, Kubernetes requests and Redis commands (with its split).
    rows = [
        line.split()
        for line in run.stdout.splitlines()
        if line.strip().startswith(("opened (", "lifecycle "))
    ]
    assert rows and all(len(row) >= 8 for row in rows), run.stdout
