"""The stored objects and the rules a write follows: the state behind the test API server.

Every method takes the one lock, so the HTTP threads and a test inspecting state see whole
writes. Objects handed out are copies.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import string
import threading
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from . import admission, fields, immutability, status
from .controller import StatusHook, Workloads
from .defaults import apply_defaults
from .fields import Entry
from .kinds import NAMESPACE, RESOURCES, ResourceType, by_kind
from .patching import (
    get_path,
    is_key_field,
    json_patch,
    merge_patch,
    remove_path,
    set_path,
    strip_directives,
    strip_nulls,
)
from .selectors import field_selector, label_selector
from .validation import check_type, validate

PatchType = Literal["merge", "json"]
Key = tuple[str, str]  # (namespace or "", name)

# Metadata only the server writes; whatever a body says about them is replaced.
_SERVER_METADATA = (
    "uid",
    "creationTimestamp",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise status.bad_request("metadata must be an object")
    return metadata


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as compared to decide whether a write changed it."""
    view = dict(obj)
    view["metadata"] = {
        k: v for k, v in obj.get("metadata", {}).items() if k not in ("resourceVersion", "managedFields")
    }
    return view


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    """What a change of bumps metadata.generation: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _is_terminating(obj: dict[str, Any] | None) -> bool:
    return bool(obj and obj.get("metadata", {}).get("deletionTimestamp"))


def _entries_for_update(
    old: dict[str, Any], new: dict[str, Any]
) -> tuple[dict[tuple[str, str, str], Entry], bool]:
    """The ownership an update or patch leaves, and whether its manager is to be tracked.

    As on the real server, a write that leaves `metadata.managedFields` out (or as it was)
    keeps the stored ownership and its manager becomes owner of what it changed; one that
    sends different managedFields sets them as sent (how `kubectl` and client-go's csaupgrade
    hand fields of a client-side apply over to a server-side applier); `[{}]` clears them.
    """
    given = _meta(new).get("managedFields")
    if not given or given == old["metadata"].get("managedFields"):
        return fields.read_entries(old), True
    if given == [{}]:
        return {}, False
    return fields.read_entries(new), False


class Store:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tables: dict[ResourceType, dict[Key, dict[str, Any]]] = {r: {} for r in RESOURCES}
        self._revision = 0
        self._holds: dict[str, int] = {}
        # The kinds the server serves: a custom resource whose CRD is not installed is not.
        self.served: set[ResourceType] = set(RESOURCES)
        # kind -> what its operator would write as its status, after each write of one.
        self.status_hooks: dict[str, StatusHook] = {}
        self.workloads = Workloads(self)

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def items(
        self, resource: ResourceType, namespace: str | None, name: str | None = None
    ) -> list[dict[str, Any]]:
        """Copies of the stored objects of a kind, in one namespace (None: all), sorted by name."""
        with self._lock:
            return [
                copy.deepcopy(obj)
                for key, obj in sorted(self._tables[resource].items())
                if (namespace is None or key[0] == namespace) and (name is None or key[1] == name)
            ]

    # -- reads ---------------------------------------------------------------------------------

    def get(self, resource: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            obj = self._existing(resource, namespace, name)
            answer = copy.deepcopy(obj)
            if resource == NAMESPACE and _is_terminating(obj) and self._holds.get(name, 0) > 0:
                # A held namespace answers this GET as Terminating; once the count runs out it
                # is finished, so the next GET is a 404 (unless other finalizers still hold it).
                self._holds[name] -= 1
                if self._holds[name] == 0:
                    del self._holds[name]
                    self._finish_namespace(name)
            return answer

    def list_objects(
        self,
        resource: ResourceType,
        namespace: str | None,
        labels: str | None = None,
        field_filter: str | None = None,
        limit: int = 0,
        token: str | None = None,
    ) -> dict[str, Any]:
        selects_labels = label_selector(labels)
        selects_fields = field_selector(field_filter, resource.kind)
        after = self._decode_continue(token) if token else None
        with self._lock:
            rows = [
                (key, obj)
                for key, obj in sorted(self._tables[resource].items())
                if (namespace is None or key[0] == namespace)
                and selects_labels(obj.get("metadata", {}).get("labels") or {})
                and selects_fields(obj)
                and (after is None or key > after)
            ]
            metadata: dict[str, Any] = {"resourceVersion": str(self._revision)}
            if limit > 0 and len(rows) > limit:
                last = rows[limit - 1][0]
                metadata["continue"] = base64.urlsafe_b64encode(json.dumps(list(last)).encode()).decode()
                metadata["remainingItemCount"] = len(rows) - limit
                rows = rows[:limit]
            items = [copy.deepcopy(obj) for _, obj in rows]
        if resource.builtin:
            # The real server leaves kind and apiVersion off the items of a built-in list.
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
        return {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": items,
        }

    def objects(self, kind: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
        resources = [self.resource_of(kind)] if kind else list(RESOURCES)
        with self._lock:
            return [
                copy.deepcopy(obj)
                for resource in resources
                for key, obj in sorted(self._tables[resource].items())
                if namespace is None or key[0] == namespace
            ]

    def resource_of(self, kind: str) -> ResourceType:
        found = by_kind(kind)
        if len(found) != 1:
            raise ValueError(f"no single served kind matches {kind!r}")
        return found[0]

    # -- writes --------------------------------------------------------------------------------

    def create(
        self, resource: ResourceType, namespace: str, body: Any, manager: str, dry_run: bool = False
    ) -> dict[str, Any]:
        new = self._body(body)
        check_type(resource, new, required=False)
        metadata = _meta(new)
        if metadata.get("resourceVersion"):
            raise status.bad_request("resourceVersion should not be set on objects to be created")
        if not metadata.get("name") and metadata.get("generateName"):
            alphabet = string.ascii_lowercase + string.digits
            metadata["name"] = str(metadata["generateName"]) + "".join(
                secrets.choice(alphabet) for _ in range(5)
            )
        name = str(metadata.get("name") or "")
        self._check_namespace_field(resource, namespace, new)
        with self._lock:
            if resource.namespaced:
                self._require_open_namespace(resource, namespace, name)
            if name and (namespace, name) in self._tables[resource]:
                raise status.already_exists(resource, name)
            return self._commit(resource, namespace, None, new, {}, dry_run=dry_run, manager=manager)

    def replace(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        manager: str,
        dry_run: bool = False,
        subresource: str = "",
    ) -> dict[str, Any]:
        new = self._body(body)
        check_type(resource, new, required=False)
        self._check_identity(resource, namespace, name, new)
        with self._lock:
            old = self._existing(resource, namespace, name)
            if subresource == "status":
                new, given = copy.deepcopy(old), new
                new["status"] = given.get("status", {})
                _meta(new)["resourceVersion"] = _meta(given).get("resourceVersion")
            entries, tracked = _entries_for_update(old, new)
            return self._commit(
                resource,
                namespace,
                old,
                new,
                entries,
                dry_run=dry_run,
                manager=manager if tracked else None,
                subresource=subresource,
            )

    def patch(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        kind: PatchType,
        patch: Any,
        manager: str,
        dry_run: bool = False,
        subresource: str = "",
    ) -> dict[str, Any]:
        with self._lock:
            old = self._existing(resource, namespace, name)
            if kind == "json":
                new = json_patch(old, patch)
            else:
                if not isinstance(patch, dict):
                    raise status.bad_request("a merge patch must be a JSON object")
                new = merge_patch(old, strip_directives(patch))
            if not isinstance(new, dict):
                raise status.bad_request("the patch did not produce an object")
            if subresource == "status":
                patched, new = new, copy.deepcopy(old)
                new["status"] = patched.get("status", {})
                _meta(new)["resourceVersion"] = _meta(patched).get("resourceVersion")
            self._check_identity(resource, namespace, name, new)
            entries, tracked = _entries_for_update(old, new)
            return self._commit(
                resource,
                namespace,
                old,
                new,
                entries,
                dry_run=dry_run,
                manager=manager if tracked else None,
                subresource=subresource,
            )

    def apply(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        manager: str,
        force: bool,
        dry_run: bool = False,
    ) -> tuple[bool, dict[str, Any]]:
        """Server-side apply; answers (created, object)."""
        config = strip_nulls(self._body(body))
        check_type(resource, config, required=True)
        metadata = _meta(config)
        if metadata.get("managedFields") is not None:
            raise status.bad_request("metadata.managedFields must be nil")
        metadata.setdefault("name", name)
        self._check_identity(resource, namespace, name, config)
        applied = fields.owned_leaves(config, skip_status=resource.has_status, keyed=resource.builtin)
        key = (manager, "Apply", "")
        with self._lock:
            old = self._tables[resource].get((namespace, name))
            if old is None:
                if resource.namespaced:
                    self._require_open_namespace(resource, namespace, name)
                entry = Entry(manager, "Apply", resource.api_version, now(), set(applied))
                for field in ("resourceVersion", "uid"):
                    metadata.pop(field, None)
                created = self._commit(resource, namespace, None, config, {key: entry}, dry_run=dry_run)
                return True, created

            entries = fields.read_entries(old)
            clashes = fields.conflicts(entries, manager, applied, old)
            if clashes and not force:
                raise fields.conflict_error(resource, name, clashes)
            previous = entries[key].paths if key in entries else set()
            others = set().union(*(e.paths for k, e in entries.items() if k != key))
            new = copy.deepcopy(old)
            # A field this manager stopped applying, owned by no one else; keys with their elements, last.
            for path in sorted(previous - applied.keys() - others, key=is_key_field):
                remove_path(new, path)
            for path, value in applied.items():
                present, current = get_path(new, path)
                if value == {} and present and isinstance(current, dict):
                    continue  # an empty map sets the field without wiping what others put in it
                set_path(new, path, value)
            for field in ("resourceVersion", "uid"):
                if field in metadata:
                    _meta(new)[field] = metadata[field]  # preconditions, checked in _commit
            entries[key] = Entry(manager, "Apply", resource.api_version, now(), set(applied))
            fields.take_over(entries, key, [path for _, path in clashes])
            return False, self._commit(resource, namespace, old, new, entries, dry_run=dry_run)

    def delete(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        options: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete, or start deleting: answers a Status, or the object while finalizers hold it."""
        with self._lock:
            old = self._existing(resource, namespace, name)
            metadata = old["metadata"]
            preconditions = (options or {}).get("preconditions") or {}
            for field in ("uid", "resourceVersion"):
                wanted = preconditions.get(field)
                if wanted and wanted != metadata.get(field):
                    raise status.conflict(
                        resource,
                        name,
                        f"Precondition failed: {field} in precondition: {wanted}, {field} in object meta: "
                        f"{metadata.get(field)}",
                    )
            if resource == NAMESPACE:
                if _is_terminating(old):
                    raise status.conflict(
                        resource,
                        name,
                        "The system is ensuring all content is removed from this namespace.  "
                        "Upon completion, this namespace will automatically be purged by the system.",
                    )
                terminating = copy.deepcopy(old)
                terminating["metadata"]["deletionTimestamp"] = now()
                terminating["status"] = {"phase": "Terminating"}
                if dry_run:
                    return terminating
                self._store(resource, namespace, terminating)
                self._finish_namespace(name)
                return copy.deepcopy(terminating)
            if metadata.get("finalizers"):
                if metadata.get("deletionTimestamp"):
                    return copy.deepcopy(old)
                pending = copy.deepcopy(old)
                pending["metadata"]["deletionTimestamp"] = now()
                pending["metadata"]["deletionGracePeriodSeconds"] = 0
                if not dry_run:
                    self._store(resource, namespace, pending)
                return copy.deepcopy(pending)
            if not dry_run:
                del self._tables[resource][(namespace, name)]
                self._collect_dependents(namespace, metadata["uid"])
                self.workloads.changed(resource.kind, namespace)
            return status.success(resource, name, metadata["uid"])

    def delete_collection(
        self, resource: ResourceType, namespace: str | None, labels: str | None, field_filter: str | None
    ) -> dict[str, Any]:
        with self._lock:
            listed = self.list_objects(resource, namespace, labels, field_filter)
            for item in listed["items"]:
                meta = item["metadata"]
                self.delete(resource, meta.get("namespace", ""), meta["name"])
            return listed

    def hold_namespace_deletion(self, name: str, times: int) -> None:
        """The next `times` GETs of namespace `name` answer it Terminating; 0 releases it."""
        with self._lock:
            if times > 0:
                self._holds[name] = times
            else:
                self._holds.pop(name, None)
                self._finish_namespace(name)

    def reset(self) -> None:
        with self._lock:
            for table in self._tables.values():
                table.clear()
            self._holds.clear()
            self.served = set(RESOURCES)
            self.status_hooks.clear()
            self.workloads.reset()

    # -- the rules -----------------------------------------------------------------------------

    def _commit(
        self,
        resource: ResourceType,
        namespace: str,
        old: dict[str, Any] | None,
        new: dict[str, Any],
        entries: dict[tuple[str, str, str], Entry],
        *,
        dry_run: bool,
        manager: str | None = None,
        subresource: str = "",
    ) -> dict[str, Any]:
        """Validate, default and store `new` in place of `old`; a write that changes nothing
        keeps the stored object, resourceVersion included."""
        metadata = _meta(new)
        name = str(metadata.get("name") or "")
        if old is not None:
            for field in ("resourceVersion", "uid"):
                if metadata.get(field) and metadata[field] != old["metadata"].get(field):
                    raise status.stale(resource, name)
        new["apiVersion"], new["kind"] = resource.api_version, resource.kind
        if resource.namespaced:
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        validate(resource, new)
        if subresource != "status":
            if old is not None:
                immutability.check(resource, old, new)
            if resource.namespaced:
                admission.admit(resource, name, new, old, self._lister(namespace))
        apply_defaults(resource, new, old, status_write=subresource == "status")
        for field in _SERVER_METADATA:
            metadata.pop(field, None)
        if old is None:
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = now()
        else:
            for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if field in old["metadata"]:
                    metadata[field] = old["metadata"][field]
        if manager is not None:
            self._track_update(entries, manager, resource, old, new, subresource)
        fields.prune(entries, new)

        before = fields.read_entries(old) if old is not None else {}
        generation = int(old["metadata"].get("generation", 1)) if old is not None else 1
        if old is not None:
            metadata["generation"] = generation
            if _content(old) == _content(new) and fields.same(before, entries):
                return copy.deepcopy(old)
            if _spec(old) != _spec(new):
                generation += 1
        metadata["generation"] = generation
        stamp = now()
        for key, entry in entries.items():
            prior = before.get(key)
            if prior is None or prior.paths != entry.paths:
                entry.time, entry.api_version = stamp, resource.api_version
        rendered = fields.render_entries(entries)
        if rendered:
            metadata["managedFields"] = rendered
        metadata["resourceVersion"] = str(self._revision + 1)
        if dry_run:
            return copy.deepcopy(new)
        self._store(resource, namespace, new)
        stored = copy.deepcopy(self._tables[resource][(namespace if resource.namespaced else "", name)])
        self._settle(resource, namespace, name)
        self._written(resource, namespace, stored, subresource)
        return stored

    def _track_update(
        self,
        entries: dict[tuple[str, str, str], Entry],
        manager: str,
        resource: ResourceType,
        old: dict[str, Any] | None,
        new: dict[str, Any],
        subresource: str,
    ) -> None:
        """A create, update or patch makes its manager the owner of every field it changed."""
        skip_status = resource.has_status and subresource != "status"
        before = fields.owned_leaves(old or {}, skip_status, keyed=resource.builtin)
        after = fields.owned_leaves(new, skip_status, keyed=resource.builtin)
        changed = {path for path, value in after.items() if path not in before or before[path] != value}
        if subresource == "status":
            changed = {path for path in changed if path[0] == "status"}
        if not changed:
            return
        key = (manager, "Update", subresource)
        entry = entries.setdefault(
            key, Entry(manager, "Update", resource.api_version, now(), set(), subresource)
        )
        entry.paths |= changed
        entry.time = now()
        fields.take_over(entries, key, changed)

    def _store(self, resource: ResourceType, namespace: str, obj: dict[str, Any]) -> None:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        # Stored in the order the real server prints an object: apiVersion, kind, metadata, the rest.
        ordered: dict[str, Any] = {key: obj[key] for key in ("apiVersion", "kind", "metadata") if key in obj}
        ordered.update(obj)
        self._tables[resource][(namespace if resource.namespaced else "", obj["metadata"]["name"])] = ordered

    def _settle(self, resource: ResourceType, namespace: str, name: str) -> None:
        """Finish a deletion that no finalizer holds any more."""
        if resource == NAMESPACE:
            self._finish_namespace(name)
            return
        obj = self._tables[resource].get((namespace, name))
        if obj is not None and _is_terminating(obj) and not obj["metadata"].get("finalizers"):
            del self._tables[resource][(namespace, name)]
            self._finish_namespace(namespace)

    def _finish_namespace(self, name: str) -> None:
        """Remove a Terminating namespace and its content, unless something still holds it:
        a test's hold, the namespace's own finalizers, or content with finalizers."""
        namespace = self._tables[NAMESPACE].get(("", name))
        if not _is_terminating(namespace) or self._holds.get(name, 0) > 0:
            return
        assert namespace is not None
        if namespace["metadata"].get("finalizers"):
            return
        blocked = False
        for resource, table in self._tables.items():
            if not resource.namespaced:
                continue
            for key in [key for key in table if key[0] == name]:
                obj = table[key]
                if not obj["metadata"].get("finalizers"):
                    del table[key]
                    continue
                blocked = True
                if not _is_terminating(obj):
                    pending = copy.deepcopy(obj)
                    pending["metadata"]["deletionTimestamp"] = now()
                    pending["metadata"]["deletionGracePeriodSeconds"] = 0
                    self._store(resource, name, pending)
        if not blocked:
            del self._tables[NAMESPACE][("", name)]
            self._holds.pop(name, None)

    def _existing(self, resource: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self._tables[resource].get((namespace if resource.namespaced else "", name))
        if obj is None:
            raise status.not_found(resource, name)
        return obj

    def _require_open_namespace(self, resource: ResourceType, namespace: str, name: str) -> None:
        holder = self._tables[NAMESPACE].get(("", namespace))
        if holder is None:
            raise status.not_found(NAMESPACE, namespace)
        if _is_terminating(holder):
            raise status.namespace_terminating(resource, name, namespace)

    def _lister(self, namespace: str) -> admission.Lister:
        def listed(kind: str) -> list[dict[str, Any]]:
            [resource] = [r for r in RESOURCES if r.kind == kind and r.group == ""]
            return [obj for key, obj in self._tables[resource].items() if key[0] == namespace]

        return listed

    def _written(self, resource: ResourceType, namespace: str, obj: dict[str, Any], subresource: str) -> None:
        """What follows a write in a real cluster: its operator's status (a test's hook), and the
        controllers' work."""
        hook = self.status_hooks.get(resource.kind)
        if hook is not None and subresource != "status":
            wanted = hook(copy.deepcopy(obj))
            if wanted is not None and wanted != obj.get("status"):
                body = {"metadata": {"name": obj["metadata"]["name"]}, "status": wanted}
                self.replace(
                    resource, namespace, obj["metadata"]["name"], body, "operator", subresource="status"
                )
        self.workloads.changed(resource.kind, namespace)

    def _collect_dependents(self, namespace: str, uid: str) -> None:
        """The garbage collector, background propagation: what the deleted object owned goes too."""
        for resource, table in self._tables.items():
            if not resource.namespaced:
                continue
            for key, obj in list(table.items()):
                if key[0] != namespace or key not in table:
                    continue
                if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                    self.delete(resource, namespace, key[1])

    @staticmethod
    def _body(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise status.bad_request("the request body must be an object")
        return copy.deepcopy(body)

    @staticmethod
    def _check_namespace_field(resource: ResourceType, namespace: str, obj: dict[str, Any]) -> None:
        given = _meta(obj).get("namespace")
        if resource.namespaced and given and given != namespace:
            raise status.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )

    def _check_identity(self, resource: ResourceType, namespace: str, name: str, obj: dict[str, Any]) -> None:
        given = _meta(obj).get("name")
        if given != name:
            raise status.bad_request(
                f"the name of the object ({given}) does not match the name on the URL ({name})"
            )
        self._check_namespace_field(resource, namespace, obj)

    @staticmethod
    def _decode_continue(token: str) -> Key:
        try:
            namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
            return (str(namespace), str(name))
        except (ValueError, TypeError) as error:
            raise status.bad_request(f"invalid continue token: {token!r}") from error
