"""The GitOps back-end: each environment as a folder of plain manifests for Argo CD or Flux to sync.

`<root>/<namespace>/<NN>-<kind>-<name>.yaml`, NN being the apply order, one object per file,
with nothing a server would add (status, uid, resourceVersion...). Files are written
atomically (temporary file, then rename) and only when their content changed, so a repeated
apply leaves the folder, its timestamps and a git diff untouched.

Ownership is kept in `<root>/<namespace>/.k8s-ee`, a JSON file with the repository. It has
no .json/.yaml extension on purpose: Argo CD's directory source reads every .json file as
a manifest and would fail on it; Flux and kustomize read .yaml/.yml only.

The generated passwords are in the Secret files (base64, as a cluster stores them), readable
by the owner only. A folder pushed to a shared repository needs them encrypted (SOPS,
Sealed Secrets) on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import yaml

from handlers import naming
from handlers.cluster import (
    ApplyResult,
    ClusterError,
    DestroyResult,
    ObjectRef,
    OwnershipError,
    PermanentClusterError,
    TransientClusterError,
)
from handlers.cluster.ownership import check_owner
from handlers.cluster.resources import check_namespace_name, plan
from handlers.render import passwords_from_secrets

MARKER = ".k8s-ee"
# What this back-end writes; anything else in a folder (a kustomization.yaml someone added)
# is left alone.
_OBJECT_FILE = re.compile(r"^(?P<order>\d{2,})-(?P<kind>[a-z0-9]+)-(?P<name>[a-z0-9.-]+)\.yaml$")
# Fields the API server sets; a GitOps source must not carry them.
_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
_SECRET_MODE = 0o600
_FILE_MODE = 0o644

P = ParamSpec("P")
T = TypeVar("T")


def _file_errors(function: Callable[P, T]) -> Callable[P, T]:
    """File-system failures as cluster errors: a full disk may clear, a read-only one will not."""

    @functools.wraps(function)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except OSError as error:
            raise _file_error(error) from error

    return guarded


def _file_error(error: OSError) -> ClusterError:
    message = f"cannot update the manifests folder: {error.strerror or error} ({error.filename})"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermanentClusterError(message)
    return TransientClusterError(message)


class DirectoryCluster:
    name = "directory"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # File work runs in a thread: an fsync can take a while, and the worker's loop must not wait.
    async def read_credentials(self, namespace: str) -> dict[str, str]:
        return await asyncio.to_thread(self._read_credentials, namespace)

    async def apply(self, namespace: str, repository: str, manifests: list[dict[str, Any]]) -> ApplyResult:
        return await asyncio.to_thread(self._apply, namespace, repository, manifests)

    async def destroy(
        self, namespace: str, repository: str, *, release_preserve: bool = False
    ) -> DestroyResult:
        return await asyncio.to_thread(self._destroy, namespace, repository, release_preserve)

    def close(self) -> None:
        pass  # nothing held open between calls

    # -- the work, in a thread -----------------------------------------------------------------

    def _folder(self, namespace: str) -> Path:
        check_namespace_name(namespace)  # also keeps `..` and `/` out of the path
        return self.root / namespace

    @_file_errors
    def _apply(self, namespace: str, repository: str, manifests: list[dict[str, Any]]) -> ApplyResult:
        planned = plan(namespace, manifests)
        folder = self._folder(namespace)
        result = ApplyResult(namespace=namespace)
        if folder.is_dir():
            result.created_namespace = _check_folder_owner(folder, namespace, repository) is None
        else:
            result.created_namespace = True
            folder.mkdir(parents=True)
        _remove_leftovers(folder)
        before = _object_files(folder)
        previous = {ref.key: ref for ref in map(_ref_of, before.values()) if ref.kind and ref.name}
        marker = {"managedBy": naming.MANAGED_BY, "repository": repository, "namespace": namespace}
        _write_if_changed(folder / MARKER, json.dumps(marker, indent=2).encode() + b"\n", _FILE_MODE)

        width = max(2, len(str(len(planned) - 1)))
        written: set[str] = set()
        for order, item in enumerate(planned):
            filename = f"{order:0{width}d}-{item.ref.kind.lower()}-{item.ref.name}.yaml"
            mode = _SECRET_MODE if item.ref.kind == "Secret" else _FILE_MODE
            _write_if_changed(folder / filename, _render(item.manifest), mode)
            written.add(filename)
            if item.ref.key not in previous:
                result.created.append(item.ref)
            result.applied.append(item.ref)

        # Stale names go after the new ones are written: a sync in between sees an object twice
        # (which a GitOps tool reports) rather than not at all (which it might prune).
        current = {item.ref.key for item in planned}
        for filename in before:
            if filename not in written:
                (folder / filename).unlink(missing_ok=True)
        result.pruned = [ref for key, ref in previous.items() if key not in current]
        _sync_directory(folder)
        return result

    @_file_errors
    def _destroy(self, namespace: str, repository: str, release_preserve: bool = False) -> DestroyResult:
        folder = self._folder(namespace)
        if not folder.is_dir():
            return DestroyResult(namespace=namespace, already_gone=True)
        _check_folder_owner(folder, namespace, repository)
        labels, annotations = _namespace_metadata(folder, namespace)
        released = release_preserve and naming.preserved_by_gateway(labels, annotations)
        if labels.get(naming.LABEL_PRESERVE) == "true" and not released:
            return DestroyResult(namespace=namespace, preserved=True)
        # Renamed away first, so a GitOps tool never syncs a half-deleted folder.
        doomed = self.root / f".deleting-{namespace}-{uuid.uuid4().hex[:8]}"
        folder.rename(doomed)
        shutil.rmtree(doomed)
        _sync_directory(self.root)
        return DestroyResult(namespace=namespace, deleted=True)

    @_file_errors
    def _read_credentials(self, namespace: str) -> dict[str, str]:
        folder = self._folder(namespace)
        if not folder.is_dir():
            return {}
        secrets = [
            obj
            for obj in _object_files(folder).values()
            if obj.get("kind") == "Secret"
            and (obj.get("metadata") or {}).get("labels", {}).get(naming.LABEL_GENERATED_CREDENTIALS)
            == "true"
        ]
        return passwords_from_secrets(secrets)


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return {}
    return marker if isinstance(marker, dict) else {}


def _check_folder_owner(folder: Path, namespace: str, repository: str) -> dict[str, Any] | None:
    """The folder's marker, once the folder is known to be `repository`'s; None for an empty folder."""
    marker = _read_marker(folder)
    if marker is None:
        if any(folder.iterdir()):
            raise OwnershipError(
                f"folder for namespace {namespace} exists and was not written by {naming.MANAGED_BY}; "
                "refusing to touch it"
            )
        return None
    labels = {naming.LABEL_MANAGED_BY: str(marker.get("managedBy") or "")}
    annotations = {naming.ANNOTATION_REPOSITORY: str(marker.get("repository") or "")}
    check_owner(namespace, labels, annotations, repository)
    return marker


def _object_files(folder: Path) -> dict[str, dict[str, Any]]:
    """This back-end's files in `folder`, by file name, with the object each holds."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.iterdir()):
        if not _OBJECT_FILE.fullmatch(path.name):
            continue
        try:
            obj = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            obj = None
        found[path.name] = obj if isinstance(obj, dict) else {}
    return found


def _ref_of(obj: dict[str, Any]) -> ObjectRef:
    metadata = obj.get("metadata") or {}
    return ObjectRef(
        api_version=str(obj.get("apiVersion") or ""),
        kind=str(obj.get("kind") or ""),
        name=str(metadata.get("name") or "") if isinstance(metadata, dict) else "",
    )


def _namespace_metadata(folder: Path, namespace: str) -> tuple[dict[str, str], dict[str, str]]:
    for obj in _object_files(folder).values():
        metadata = obj.get("metadata") or {}
        if obj.get("kind") == "Namespace" and metadata.get("name") == namespace:
            labels = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
            annotations = {str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()}
            return labels, annotations
    return {}, {}


def _render(manifest: dict[str, Any]) -> bytes:
    obj = {key: value for key, value in manifest.items() if key != "status"}
    metadata = dict(obj.get("metadata") or {})
    for field in _SERVER_METADATA:
        metadata.pop(field, None)
    obj["metadata"] = metadata
    text = yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)
    return text.encode("utf-8")


def _write_if_changed(path: Path, content: bytes, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.read_bytes() == content and (path.stat().st_mode & 0o777) == mode:
            return
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _remove_leftovers(folder: Path) -> None:
    """Temporary files of a write that was cut short."""
    for path in folder.iterdir():
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)


def _sync_directory(folder: Path) -> None:
    """Make renames and unlinks durable (the file contents were synced when written)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # not every file system syncs directories
    finally:
        os.close(handle)
