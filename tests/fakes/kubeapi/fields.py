"""Field ownership for server-side apply, kept in `metadata.managedFields` as the real server does.

A simplification of the real structured-merge-diff: maps are merged field by field, the keyed lists
of built-in kinds element by element (listmaps), every other list is atomic (owned and replaced
whole). That is enough to make a re-apply a no-op, let an applier drop a field or a list element it
stopped setting while another manager's fields stay, and report a conflict when another manager owns
a field with a different value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import listmaps
from .kinds import ResourceType
from .patching import Path, get_path, leaf_paths
from .status import KubeError

# Fields the server owns: never listed in managedFields and never taken from a body.
_SERVER_FIELDS: frozenset[Path] = frozenset(
    {
        ("apiVersion",),
        ("kind",),
        ("metadata", "name"),
        ("metadata", "namespace"),
        ("metadata", "uid"),
        ("metadata", "resourceVersion"),
        ("metadata", "generation"),
        ("metadata", "creationTimestamp"),
        ("metadata", "deletionTimestamp"),
        ("metadata", "deletionGracePeriodSeconds"),
        ("metadata", "managedFields"),
        ("metadata", "selfLink"),
    }
)


@dataclass
class Entry:
    """One managedFields entry: what a manager set through one kind of operation."""

    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    time: str
    paths: set[Path] = field(default_factory=set)
    subresource: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)


def owned_leaves(obj: Mapping[str, Any], skip_status: bool, keyed: bool = False) -> dict[Path, Any]:
    """The fields of `obj` a manager can own, with their values (`keyed`: a built-in kind's
    keyed lists are owned element by element)."""
    return {
        path: value
        for path, value in leaf_paths(dict(obj), keyed=keyed).items()
        if path
        and path not in _SERVER_FIELDS
        and path[:2] != ("metadata", "managedFields")
        and not (skip_status and path[0] == "status")
    }


def _to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Field paths as FieldsV1: `f:<field>` for a map's field, `k:{...}` for a keyed element,
    whose own entry `.` says the element itself is owned."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for step in path:
            if step.startswith(listmaps.KEY_PREFIX):
                node = node.setdefault(step, {})
                node.setdefault(".", {})
            else:
                node = node.setdefault(f"f:{step}", {})
    return tree


def _from_fields_v1(tree: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for key, child in tree.items():
        if key.startswith("f:"):
            path = (*prefix, key[2:])
        elif key.startswith(listmaps.KEY_PREFIX):
            path = (*prefix, key)
        else:
            continue  # ".": the node itself, implied by its fields
        if isinstance(child, Mapping) and any(k.startswith(("f:", listmaps.KEY_PREFIX)) for k in child):
            paths |= _from_fields_v1(child, path)
        else:
            paths.add(path)
    return paths


def read_entries(obj: Mapping[str, Any]) -> dict[tuple[str, str, str], Entry]:
    entries: dict[tuple[str, str, str], Entry] = {}
    for raw in (obj.get("metadata") or {}).get("managedFields") or []:
        entry = Entry(
            manager=raw.get("manager", ""),
            operation=raw.get("operation", "Update"),
            api_version=raw.get("apiVersion", ""),
            time=raw.get("time", ""),
            paths=_from_fields_v1(raw.get("fieldsV1") or {}),
            subresource=raw.get("subresource", ""),
        )
        entries[entry.key] = entry
    return entries


def render_entries(entries: Mapping[tuple[str, str, str], Entry]) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = []
    for entry in entries.values():
        if not entry.paths:
            continue  # the real server drops a manager that owns nothing
        raw: dict[str, Any] = {
            "manager": entry.manager,
            "operation": entry.operation,
            "apiVersion": entry.api_version,
            "time": entry.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": _to_fields_v1(entry.paths),
        }
        if entry.subresource:
            raw["subresource"] = entry.subresource
        rendered.append(raw)
    return rendered


def conflicts(
    entries: Mapping[tuple[str, str, str], Entry],
    manager: str,
    applied: Mapping[Path, Any],
    current: Mapping[str, Any],
) -> list[tuple[str, Path]]:
    """(other manager, field) pairs where the apply would change a value another manager owns."""
    found: list[tuple[str, Path]] = []
    for entry in entries.values():
        if entry.manager == manager:
            continue
        for path in sorted(entry.paths & applied.keys()):
            present, value = get_path(current, path)
            if not present or value != applied[path]:
                found.append((entry.manager, path))
    return found


def dotted(path: Path) -> str:
    return "." + ".".join(path)


def take_over(
    entries: dict[tuple[str, str, str], Entry], keep: tuple[str, str, str], paths: Iterable[Path]
) -> None:
    """Every manager but `keep` loses ownership of `paths`."""
    taken = set(paths)
    for key, entry in entries.items():
        if key != keep:
            entry.paths -= taken


def prune(entries: dict[tuple[str, str, str], Entry], obj: Mapping[str, Any]) -> None:
    """Forget ownership of fields the object no longer has."""
    for entry in entries.values():
        entry.paths = {path for path in entry.paths if get_path(obj, path)[0]}


def same(a: Mapping[tuple[str, str, str], Entry], b: Mapping[tuple[str, str, str], Entry]) -> bool:
    """Equal ownership, ignoring the timestamps."""
    live_a = {key: entry.paths for key, entry in a.items() if entry.paths}
    live_b = {key: entry.paths for key, entry in b.items() if entry.paths}
    return live_a == live_b


def conflict_error(resource: ResourceType, name: str, clashes: list[tuple[str, Path]]) -> KubeError:
    """The 409 the real server answers an apply with when it would take fields from others."""
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{manager}" using {resource.api_version}',
            "field": dotted(path),
        }
        for manager, path in clashes
    ]
    if len(causes) == 1:
        message = f"Apply failed with 1 conflict: {causes[0]['message']}: {causes[0]['field']}"
    else:
        listed = "".join(f"\n- {c['message']}: {c['field']}" for c in causes)
        message = f"Apply failed with {len(causes)} conflicts:{listed}"
    details: dict[str, Any] = {"name": name, "kind": resource.plural, "causes": causes}
    if resource.group:
        details["group"] = resource.group
    return KubeError(409, message, "Conflict", details)
