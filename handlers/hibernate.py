"""Hibernation as a transformation of the rendered manifests: pure, like the renderer.

A hibernated environment keeps every object and all its data (PVCs stay); what
runs is scaled to zero: the app and the Deployment-based databases, and
CloudNativePG clusters through the operator's own hibernation annotation. The
MongoDB and MinIO operators have no scale-to-zero, so those keep running.
"""

from __future__ import annotations

import copy
from typing import Any

CNPG_HIBERNATION = "cnpg.io/hibernation"


def hibernate(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = copy.deepcopy(manifests)
    for manifest in result:
        kind = manifest.get("kind")
        if kind == "Deployment":
            manifest.setdefault("spec", {})["replicas"] = 0
        elif kind == "Cluster" and str(manifest.get("apiVersion", "")).startswith("postgresql.cnpg.io/"):
            annotations = manifest.setdefault("metadata", {}).setdefault("annotations", {})
            annotations[CNPG_HIBERNATION] = "on"
    return result
