"""One hash for what an apply sends, so that a redeploy that would change nothing can be skipped.

The digest is SHA-256 over canonical JSON (sorted keys, no spaces) of the manifests in their
apply order, plus what decides how they are applied: the field manager and `APPLY_FORMAT`,
raised whenever the back-ends start sending the same manifests differently. Left out, because
they do not change what runs:
- the namespace's `k8s-ee/last-updated` (the time of the apply itself) and the annotations an
  apply records on it (`k8s-ee/applied-*`);
- the values of the generated-credential Secrets (their keys stay in): the worker reads them
  back from the cluster before an apply, so a redeploy can be recognised without that read.
  Nothing else carries them (the app refers to them by secretKeyRef), and a Secret deleted
  out of band is drift, which the periodic full re-apply corrects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from handlers import naming

# Raised when an apply of the same manifests starts to send something else (a new default,
# a changed order): every environment is then applied in full once.
APPLY_FORMAT = 1
# What the apply writes on the namespace about itself, and the apply's own time.
_RECORDS = frozenset(
    {
        naming.ANNOTATION_APPLIED_DIGEST,
        naming.ANNOTATION_APPLIED_AT,
        naming.ANNOTATION_APPLIED_OBJECTS,
        naming.ANNOTATION_LAST_UPDATED,
    }
)


def applied_digest(manifests: Sequence[dict[str, Any]]) -> str:
    """`sha256:<hex>` of the manifests as they would be applied."""
    payload = {
        "format": APPLY_FORMAT,
        "fieldManager": naming.MANAGED_BY,
        "manifests": [_canonical(index, manifest) for index, manifest in enumerate(manifests)],
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(index: int, manifest: dict[str, Any]) -> dict[str, Any]:
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict):
        return manifest
    if index == 0 and manifest.get("kind") == "Namespace":
        annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k not in _RECORDS}
        return {**manifest, "metadata": {**metadata, "annotations": annotations}}
    labels = metadata.get("labels") or {}
    if manifest.get("kind") == "Secret" and labels.get(naming.LABEL_GENERATED_CREDENTIALS) == "true":
        return {**manifest, "data": sorted(manifest.get("data") or {}), "stringData": None}
    return manifest
