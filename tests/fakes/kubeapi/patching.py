"""Patch documents: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and apply merging."""

from __future__ import annotations

import copy
from typing import Any

from . import listmaps
from .status import KubeError

Path = tuple[str, ...]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge key by key, `null` deletes, anything else replaces. Neither argument
    is changed; the result shares nothing with them."""
    return _merge(copy.deepcopy(target), patch)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def strip_directives(patch: Any) -> Any:
    """Drop strategic-merge directives (`$patch`, `$setElementOrder/...`): this server treats a
    strategic merge patch as a merge patch, which is what it means for maps and scalars."""
    if isinstance(patch, dict):
        return {k: strip_directives(v) for k, v in patch.items() if not str(k).startswith("$")}
    if isinstance(patch, list):
        return [strip_directives(item) for item in patch]
    return patch


def strip_nulls(config: Any) -> Any:
    """In an apply configuration a null means "not specified", so it is dropped."""
    if isinstance(config, dict):
        return {k: strip_nulls(v) for k, v in config.items() if v is not None}
    return config


def _pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise KubeError(422, f"invalid JSON pointer {pointer!r}", "Invalid")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as error:
            raise KubeError(422, f"JSON patch path not found: /{'/'.join(parts)}", "Invalid") from error
    return node


def _get(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return doc
    parent = _parent(doc, parts)
    try:
        return parent[int(parts[-1])] if isinstance(parent, list) else parent[parts[-1]]
    except (KeyError, IndexError, ValueError, TypeError) as error:
        raise KubeError(422, f"JSON patch path not found: /{'/'.join(parts)}", "Invalid") from error


def _remove(doc: Any, parts: list[str]) -> Any:
    value = _get(doc, parts)
    parent = _parent(doc, parts)
    if isinstance(parent, list):
        del parent[int(parts[-1])]
    else:
        del parent[parts[-1]]
    return value


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _parent(doc, parts)
    key = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if key == "-" else int(key)
        if not 0 <= index <= len(parent):
            raise KubeError(422, f"JSON patch index out of range: {key}", "Invalid")
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[key] = value
    else:
        raise KubeError(422, f"JSON patch cannot add below a scalar at /{'/'.join(parts)}", "Invalid")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 operations applied in order to a copy of `target`."""
    if not isinstance(operations, list):
        raise KubeError(400, "a JSON patch must be a list of operations", "BadRequest")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise KubeError(400, f"invalid JSON patch operation: {operation!r}", "BadRequest")
        op, parts = operation["op"], _pointer(operation["path"])
        if op == "add":
            doc = _add(doc, parts, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            _remove(doc, parts)
        elif op == "replace":
            _get(doc, parts)
            if parts:
                _remove(doc, parts)
            doc = _add(doc, parts, copy.deepcopy(operation.get("value")))
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from", ""))
            value = _remove(doc, source) if op == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, parts, value)
        elif op == "test":
            if _get(doc, parts) != operation.get("value"):
                raise KubeError(422, f"JSON patch test failed at {operation['path']}", "Invalid")
        else:
            raise KubeError(400, f"unknown JSON patch operation {op!r}", "BadRequest")
    return doc


def leaf_paths(config: Any, prefix: Path = (), keyed: bool = False) -> dict[Path, Any]:
    """Every field an apply configuration sets, with its value.

    Maps are walked into, and so are the keyed lists of built-in kinds when `keyed`
    (listmaps: an element is the step `k:{...}`); other lists are atomic (one field,
    replaced whole), and so is an empty map (`emptyDir: {}`).
    """
    if isinstance(config, dict) and config:
        paths: dict[Path, Any] = {}
        for key, value in config.items():
            paths.update(leaf_paths(value, (*prefix, str(key)), keyed))
        return paths
    keys = listmaps.keys_of(prefix) if keyed and isinstance(config, list) and config else None
    if keys and all(isinstance(element, dict) for element in config):
        paths = {}
        for element in config:
            paths.update(leaf_paths(element, (*prefix, listmaps.key_step(element, keys)), keyed))
        return paths
    return {prefix: config}


def _child(node: Any, step: str) -> tuple[bool, Any]:
    if step.startswith(listmaps.KEY_PREFIX):
        if isinstance(node, list):
            for element in node:
                if listmaps.matches(element, step):
                    return True, element
        return False, None
    if isinstance(node, dict) and step in node:
        return True, node[step]
    return False, None


def get_path(obj: Any, path: Path) -> tuple[bool, Any]:
    node = obj
    for step in path:
        present, node = _child(node, step)
        if not present:
            return False, None
    return True, node


def set_path(obj: dict[str, Any], path: Path, value: Any) -> None:
    """Set a field, making the maps and keyed-list elements on the way (an element is appended)."""
    node: Any = obj
    for index, step in enumerate(path[:-1]):
        present, child = _child(node, step)
        if step.startswith(listmaps.KEY_PREFIX):
            if not present:
                child = listmaps.key_values(step)
                node.append(child)
        else:
            kind: type = list if path[index + 1].startswith(listmaps.KEY_PREFIX) else dict
            if not present or not isinstance(child, kind):
                child = kind()
                node[step] = child
        node = child
    last = path[-1]
    if last.startswith(listmaps.KEY_PREFIX):
        # An element given whole (an empty one): keep its keys.
        if not _child(node, last)[0]:
            node.append({**listmaps.key_values(last), **(value if isinstance(value, dict) else {})})
        return
    node[last] = copy.deepcopy(value)


def is_key_field(path: Path) -> bool:
    """A keyed element's own key (`name` of `k:{"name":"app"}`): removed last, with its element."""
    return (
        len(path) >= 2
        and path[-2].startswith(listmaps.KEY_PREFIX)
        and path[-1] in listmaps.key_values(path[-2])
    )


def remove_path(obj: dict[str, Any], path: Path) -> None:
    """Delete a field, then the maps and keyed-list elements it leaves empty (top-level sections stay).

    A key field goes only with its element, and only when nothing else is left in it (fields
    of other managers keep the element, key and all)."""
    if is_key_field(path):
        present, element = get_path(obj, path[:-1])
        keys = listmaps.key_values(path[-2])
        if not present or any(field not in keys for field in element):
            return
        path = path[:-1]
    trail: list[Any] = [obj]
    for step in path[:-1]:
        present, child = _child(trail[-1], step)
        if not present or not isinstance(child, dict | list):
            return
        trail.append(child)
    _drop(trail[-1], path[-1])
    # trail[i] is the node at path[:i]; trail[1] is a top-level section such as metadata or spec.
    for depth in range(len(trail) - 1, 1, -1):
        if trail[depth] and not _only_keys(trail[depth], path[depth - 1]):
            break
        _drop(trail[depth - 1], path[depth - 1])


def _only_keys(node: Any, step: str) -> bool:
    """An element left with nothing but its key fields is empty."""
    return (
        step.startswith(listmaps.KEY_PREFIX)
        and isinstance(node, dict)
        and all(field in listmaps.key_values(step) for field in node)
    )


def _drop(node: Any, step: str) -> None:
    if isinstance(node, list):
        node[:] = [element for element in node if not listmaps.matches(element, step)]
    elif isinstance(node, dict):
        node.pop(step, None)
