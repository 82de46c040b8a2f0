"""The processes the process-level benchmarks run besides the gateway and the worker: the project's
test Kubernetes API server in its own process, and a kubeconfig pointing the worker at it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_kubeapi(ready_delay: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    """tests/fakes/kubeapi on a free port (its control endpoints under `/_test/`), and its URL."""
    kube = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.kubeapi", "--port", "0", "--ready-delay", str(ready_delay)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = (kube.stdout.readline() if kube.stdout else "").strip()
    return kube, url


def write_kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: bench\n"
        f"clusters:\n- name: bench\n  cluster:\n    server: {url}\n"
        "users:\n- name: bench\n  user:\n    token: bench\n"
        "contexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\n"
    )
    return path
