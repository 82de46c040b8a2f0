"""A preserved environment's marks on its namespace, and the interface to the preserve state.

The preserve state itself is `Desired.preserved_until` (set by `/preserve` and the admin API,
renewed the same way; handlers/policy.py). While it is in the future the namespace carries the
label `preserve=true` and the annotation `k8s-ee/preserve-until` (SPEC 1 and 5), the sweep
leaves the environment past its TTL, and a close leaves it standing (state `preserved`). Once
it has passed, the next apply drops the label (a field this gateway stops applying is removed
by server-side apply), and a closed change is destroyed: a label the gateway set no longer
protects it (one somebody else set still does). The sweep warns an hour before the time and
says when it has passed (handlers/lifecycle/sweep.py).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from handlers import naming
from handlers.desired import Desired

ANNOTATION_PRESERVE_UNTIL = "k8s-ee/preserve-until"


def mark_preserved(manifests: list[dict[str, Any]], want: Desired, now: datetime) -> list[dict[str, Any]]:
    """The namespace labelled and annotated while `want` is preserved; unchanged otherwise."""
    if not want.preserved(now) or not manifests or manifests[0].get("kind") != "Namespace":
        return manifests
    assert want.preserved_until is not None
    result = list(manifests)
    namespace = copy.deepcopy(result[0])
    metadata = namespace.setdefault("metadata", {})
    metadata.setdefault("labels", {})[naming.LABEL_PRESERVE] = "true"
    metadata.setdefault("annotations", {})[ANNOTATION_PRESERVE_UNTIL] = naming.timestamp(want.preserved_until)
    result[0] = namespace
    return result
