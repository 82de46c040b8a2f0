"""The chart as the tests see it: `helm template` of a value set, as parsed objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.tools import ROOT, run

CHART = ROOT / "charts" / "k8s-ee-gateway"
VALUES = Path(__file__).parent / "values"
VALUE_SETS = sorted(path.stem for path in VALUES.glob("*.yaml"))
NAMESPACE = "k8s-ee"
RELEASE = "gw"
KUBE_VERSION = "1.33.0"


def template_args(value_set: str | None, *extra: str) -> list[str]:
    files = ["--values", str(VALUES / f"{value_set}.yaml")] if value_set else []
    return [
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION,
        *files, *extra,
    ]  # fmt: skip


def render(value_set: str | None = None, *extra: str) -> list[dict[str, Any]]:
    text = run("helm", *template_args(value_set, *extra)).stdout
    return [document for document in yaml.safe_load_all(text) if document]


def find(objects: list[dict[str, Any]], kind: str, suffix: str = "") -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]


def one(objects: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = find(objects, kind, suffix)
    assert len(found) == 1, f"{len(found)} {kind} named *{suffix}"
    return found[0]
