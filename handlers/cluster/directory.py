"""The GitOps back-end: each environment as a folder of plain manifests for Argo CD or Flux to sync.

`<root>/<namespace>/<NN>-<kind>-<name>.yaml`, NN being the apply order, one object per file,
with nothing a server would add (status, uid, resourceVersion...). A folder is written
atomically: the new version is built beside it under a temporary name (`.<ns>.new-*`,
unchanged files hard-linked, not copied), then takes the folder's name in one rename (an
atomic exchange where the folder exists). A repeated apply that changes nothing writes
nothing, so the folder, its timestamps and a git diff stay untouched. What a write killed
half-way leaves (the folder built aside, a folder being deleted) is cleaned up by the next
call for that namespace and never blocks it.

Ownership is kept in `<root>/<namespace>/.k8s-ee`, a JSON file with the repository and the
digest of what was written (handlers/cluster/digest.py), itself written last whenever anything
in the folder is. A redeploy is recognised as changing nothing (`unchanged`) without rendering
a file: the marker is ours with these manifests' digest, the folder holds exactly the files
they make, and none of them was modified after the marker (an edit by hand makes the next
redeploy compare and rewrite everything; a change of mode alone is not seen until then).
Unlike a cluster's, a folder's drift is seen that way, so no periodic re-apply is needed; a
re-apply period of zero still compares every time. The marker has
no .json/.yaml extension on purpose: Argo CD's directory source reads every .json file as
a manifest and would fail on it; Flux and kustomize read .yaml/.yml only.

The generated passwords are in the Secret files (base64, as a cluster stores them), readable
by the owner only. A folder pushed to a shared repository needs them encrypted (SOPS,
Sealed Secrets) on the way.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import functools
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import yaml

from handlers import naming
from handlers.cluster import (
    REAPPLY_AFTER,
    ApplyResult,
    Claim,
    ClusterError,
    ClusterFacts,
    DestroyResult,
    Fence,
    NamespaceInfo,
    ObjectRef,
    OwnershipError,
    PermanentClusterError,
    TransientClusterError,
    check,
)
from handlers.cluster.digest import applied_digest
from handlers.cluster.ownership import check_owner, same_repository
from handlers.cluster.resources import Planned, check_namespace_name, plan
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
# libyaml's C loader and dumper when PyYAML was built with it (the wheels are): the same
# documents, byte for byte (tests/handlers/test_cluster_directory.py compares them over the
# rendered manifests), several times faster; the pure-Python ones otherwise.
LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER: type[yaml.SafeDumper] | type[yaml.CSafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

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
    # A folder has no status to read back: what runs is the GitOps tool's to report.
    observes = False

    def __init__(
        self, root: str | os.PathLike[str], *, reapply_after: timedelta | None = REAPPLY_AFTER
    ) -> None:
        self.root = Path(root)
        # None or zero: every redeploy compares (and rewrites what differs). Otherwise only the
        # marker's digest and the files' times are looked at: a folder's drift is seen in them.
        self._reapply_after = reapply_after

    async def facts(self) -> ClusterFacts:
        return ClusterFacts()  # no cluster to ask

    async def read_claims(self, namespace: str) -> list[Claim]:
        return []  # the operators' volumes are the cluster's, not in the folder

    async def read(self, namespace: str, ref: ObjectRef) -> dict[str, Any] | None:
        return None

    async def pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return []

    # File work runs in a thread: an fsync can take a while, and the worker's loop must not wait.
    async def read_credentials(self, namespace: str) -> dict[str, str]:
        return await asyncio.to_thread(self._read_credentials, namespace)

    async def unchanged(self, namespace: str, repository: str, manifests: list[dict[str, Any]]) -> bool:
        if not self._reapply_after:
            return False
        return await asyncio.to_thread(self._unchanged, namespace, repository, manifests)

    async def apply(
        self, namespace: str, repository: str, manifests: list[dict[str, Any]], fence: Fence | None = None
    ) -> ApplyResult:
        # The new folder is built aside, then swapped in: one write, fenced once.
        staged = await asyncio.to_thread(self._stage, namespace, repository, manifests)
        try:
            if staged.build is not None:
                await check(fence)
                await asyncio.to_thread(self._swap, staged)
        finally:
            await asyncio.to_thread(staged.discard)
        return staged.result

    async def destroy(
        self, namespace: str, repository: str, fence: Fence | None = None, *, release_preserve: bool = False
    ) -> DestroyResult:
        found = await asyncio.to_thread(self._check_destroy, namespace, repository, release_preserve)
        if found is not None:
            return found
        await check(fence)
        return await asyncio.to_thread(self._destroy, namespace)

    async def namespaces(self) -> list[NamespaceInfo]:
        return await asyncio.to_thread(self._namespaces)

    def close(self) -> None:
        pass  # nothing held open between calls

    @_file_errors
    def _namespaces(self) -> list[NamespaceInfo]:
        if not self.root.is_dir():
            return []
        found: list[NamespaceInfo] = []
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue  # a folder being built or deleted, or not an environment
            marker = _read_marker(folder)
            if marker is None or marker.get("managedBy") != naming.MANAGED_BY:
                continue
            labels, annotations = _namespace_metadata(folder, folder.name)
            annotations.setdefault(naming.ANNOTATION_REPOSITORY, str(marker.get("repository") or ""))
            found.append(NamespaceInfo(name=folder.name, labels=labels, annotations=annotations))
        return found

    # -- the work, in a thread -----------------------------------------------------------------

    def _folder(self, namespace: str) -> Path:
        check_namespace_name(namespace)  # also keeps `..` and `/` out of the path
        return self.root / namespace

    @_file_errors
    def _unchanged(self, namespace: str, repository: str, manifests: list[dict[str, Any]]) -> bool:
        planned = plan(namespace, manifests)
        folder = self._folder(namespace)
        marker = _read_marker(folder) if folder.is_dir() else None
        if (
            marker is None
            or marker.get("managedBy") != naming.MANAGED_BY
            or not same_repository(str(marker.get("repository") or ""), repository)
            or marker.get("digest") != applied_digest(manifests)
        ):
            return False
        written = (folder / MARKER).stat().st_mtime_ns
        found = {path.name: path for path in folder.iterdir() if _OBJECT_FILE.fullmatch(path.name)}
        if set(found) != set(_file_names(planned)):
            return False
        return all(path.stat().st_mtime_ns <= written for path in found.values())

    @_file_errors
    def _stage(self, namespace: str, repository: str, manifests: list[dict[str, Any]]) -> Staged:
        """Check the owner and build the new folder under a temporary name (None when nothing changes)."""
        planned = plan(namespace, manifests)
        folder = self._folder(namespace)
        self.root.mkdir(parents=True, exist_ok=True)
        _recover(self.root, namespace)
        result = ApplyResult(namespace=namespace)
        exists = folder.is_dir()
        result.created_namespace = not exists or _check_folder_owner(folder, namespace, repository) is None
        if exists:
            _remove_leftovers(folder)
        before = _object_files(folder) if exists else {}
        previous = {ref.key: ref for ref in map(_ref_of, before.values()) if ref.kind and ref.name}
        marker = {
            "managedBy": naming.MANAGED_BY,
            "repository": repository,
            "namespace": namespace,
            "digest": applied_digest(manifests),
        }
        result.digest = str(marker["digest"])
        wanted: dict[str, tuple[bytes, int]] = {}
        for filename, item in zip(_file_names(planned), planned, strict=True):
            mode = _SECRET_MODE if item.ref.kind == "Secret" else _FILE_MODE
            wanted[filename] = (_render(item.manifest), mode)
            if item.ref.key not in previous:
                result.created.append(item.ref)
            result.applied.append(item.ref)
        current = {item.ref.key for item in planned}
        result.pruned = [ref for key, ref in previous.items() if key not in current]
        # Last: written after every file of a build, so that no file is newer than it (_unchanged).
        wanted[MARKER] = (json.dumps(marker, indent=2).encode() + b"\n", _FILE_MODE)

        ours = set(before) | {MARKER}
        unchanged = exists and all(_holds(folder / name, *wanted[name]) for name in wanted)
        if unchanged and not (set(before) - set(wanted)):
            return Staged(result, folder, None)
        build = self.root / f".{namespace}.new-{uuid.uuid4().hex[:8]}"
        build.mkdir()
        staged = Staged(result, folder, build)
        try:
            for name, (content, mode) in wanted.items():
                if name != MARKER and exists and _holds(folder / name, content, mode):
                    # The same file, linked: a GitOps tool and `git status` see it untouched.
                    os.link(folder / name, build / name)
                else:
                    _write(build / name, content, mode)
            if exists:
                # Whatever else is in the folder (a kustomization.yaml someone added) comes along.
                for path in folder.iterdir():
                    if path.name not in ours and path.name not in wanted and not _leftover(path.name):
                        _carry(path, build / path.name)
            _sync_directory(build)
        except BaseException:
            staged.discard()
            raise
        return staged

    @_file_errors
    def _swap(self, staged: Staged) -> None:
        assert staged.build is not None
        if staged.folder.is_dir():
            # Atomic where the kernel can (a GitOps sync sees the old folder or the new one);
            # the displaced old one is under the temporary name afterwards, and goes.
            _exchange(staged.folder, staged.build)
        else:
            os.rename(staged.build, staged.folder)
            staged.build = None
        _sync_directory(self.root)

    @_file_errors
    def _check_destroy(
        self, namespace: str, repository: str, release_preserve: bool = False
    ) -> DestroyResult | None:
        """The answer when there is nothing to delete; None when the folder is ours to delete."""
        folder = self._folder(namespace)
        if self.root.is_dir():
            _recover(self.root, namespace)
        if not folder.is_dir():
            return DestroyResult(namespace=namespace, already_gone=True)
        _check_folder_owner(folder, namespace, repository)
        labels, annotations = _namespace_metadata(folder, namespace)
        released = release_preserve and naming.preserved_by_gateway(labels, annotations)
        if labels.get(naming.LABEL_PRESERVE) == "true" and not released:
            return DestroyResult(namespace=namespace, preserved=True)
        return None

    @_file_errors
    def _destroy(self, namespace: str) -> DestroyResult:
        folder = self._folder(namespace)
        # Renamed away first, so a GitOps tool never syncs a half-deleted folder.
        doomed = self.root / f".deleting-{namespace}-{uuid.uuid4().hex[:8]}"
        try:
            folder.rename(doomed)
        except FileNotFoundError:
            return DestroyResult(namespace=namespace, already_gone=True)
        _sync_directory(self.root)
        shutil.rmtree(doomed)
        return DestroyResult(namespace=namespace, deleted=True)

    @_file_errors
    def _read_credentials(self, namespace: str) -> dict[str, str]:
        folder = self._folder(namespace)
        if self.root.is_dir():
            _recover(self.root, namespace)
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


@dataclass
class Staged:
    """An apply between its two steps: the result, and the folder built aside (None: no change)."""

    result: ApplyResult
    folder: Path
    build: Path | None

    def discard(self) -> None:
        if self.build is not None:
            shutil.rmtree(self.build, ignore_errors=True)
            self.build = None


def _file_names(planned: list[Planned]) -> list[str]:
    """`<NN>-<kind>-<name>.yaml` for each object, NN its place in the apply order."""
    width = max(2, len(str(len(planned) - 1)))
    return [
        f"{order:0{width}d}-{item.ref.kind.lower()}-{item.ref.name}.yaml"
        for order, item in enumerate(planned)
    ]


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
        if any(not _leftover(path.name) for path in folder.iterdir()):
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
            obj = yaml.load(path.read_bytes(), Loader=LOADER)  # noqa: S506 (a safe loader)
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


def _render(
    manifest: dict[str, Any], dumper: type[yaml.SafeDumper] | type[yaml.CSafeDumper] = DUMPER
) -> bytes:
    obj = {key: value for key, value in manifest.items() if key != "status"}
    metadata = dict(obj.get("metadata") or {})
    for field in _SERVER_METADATA:
        metadata.pop(field, None)
    obj["metadata"] = metadata
    text = yaml.dump(
        obj, Dumper=dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120
    )
    return text.encode("utf-8")


def _holds(path: Path, content: bytes, mode: int) -> bool:
    try:
        return path.read_bytes() == content and (path.stat().st_mode & 0o777) == mode
    except FileNotFoundError:
        return False


def _write(path: Path, content: bytes, mode: int) -> None:
    """A new file in a folder nobody reads yet: written and synced, then the folder is swapped in."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(handle, "wb") as stream:
        stream.write(content)
        stream.flush()
        os.fsync(stream.fileno())
    os.chmod(path, mode)  # the umask may have taken bits off


def _carry(source: Path, target: Path) -> None:
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True)
        return
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=False)


# What this back-end leaves behind when it is killed mid-write: never in the way of the next one.
def _leftover(name: str) -> bool:
    """A temporary file of the per-file writes an earlier version made."""
    return name.startswith(".") and name.endswith(".tmp")


def _remove_leftovers(folder: Path) -> None:
    for path in folder.iterdir():
        if _leftover(path.name):
            path.unlink(missing_ok=True)


def _recover(root: Path, namespace: str) -> None:
    """Finish what a write or destroy of `namespace` that was cut short left in the root.

    A folder built aside (`.<ns>.new-*`) never became the environment: removed. A folder that
    was being deleted (`.deleting-<ns>-*`) was gone from the GitOps tool's view already:
    removed. A folder displaced by a swap without an atomic exchange (`.<ns>.old-*`) is
    the environment if the new one never arrived: put back, else removed.
    """
    name = re.escape(namespace)
    built = re.compile(rf"^\.{name}\.new-[0-9a-f]{{8}}$")
    deleting = re.compile(rf"^\.deleting-{name}-[0-9a-f]{{8}}$")
    displaced = re.compile(rf"^\.{name}\.old-[0-9a-f]{{8}}$")
    folder = root / namespace
    for path in sorted(root.iterdir()):
        if displaced.match(path.name) and not folder.exists():
            os.rename(path, folder)
        elif built.match(path.name) or deleting.match(path.name) or displaced.match(path.name):
            shutil.rmtree(path, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(folder: Path, build: Path) -> None:
    """Swap two folders' names: atomically with renameat2(RENAME_EXCHANGE) (Linux), else by two
    renames, the old folder kept under `.<ns>.old-*` in between (see _recover)."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(build), _AT_FDCWD, os.fsencode(folder), _RENAME_EXCHANGE) == 0:
            return
        error = ctypes.get_errno()
        if error not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(error, os.strerror(error), str(folder))
    displaced = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(folder, displaced)
    os.rename(build, folder)
    os.rename(displaced, build)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


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
