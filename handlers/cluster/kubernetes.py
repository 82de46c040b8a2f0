"""The production back-end: server-side apply to a Kubernetes cluster.

An apply costs one GET of the namespace (ownership, and the set of objects the previous
apply left), one PATCH per object, and one DELETE per object to prune; no listing, and the
operators' kinds are discovered once per worker (discovery.py). The set of applied objects
is kept in the namespace's `k8s-ee/applied-objects` annotation, written by the namespace's
own apply. Pruning happens before that write: if a DELETE fails, the annotation still lists
the object and the next apply tries again.

The same write records the apply's digest (`k8s-ee/applied-digest`, handlers/cluster/digest.py)
and time (`k8s-ee/applied-at`). `unchanged` reads the namespace once and answers whether a
redeploy would change nothing: the namespace exists, is not terminating, is ours (not a first
edition's to adopt), its inventory is exactly what this apply would apply (the kinds served
now included) and its digest is these manifests', recorded less than `reapply_after` ago.
The digest is written before the other objects are, so on its own it says what was started;
the reconcile also requires its own record of the apply having finished (handlers/reconcile.py).

What a real API server answers that a second try of the same request cannot change:
- a namespace that is being deleted (403, cause NamespaceTerminating, or found Terminating):
  the apply waits for it to go, then creates it again;
- a field that cannot change in place (422, `field is immutable`, as a first edition's
  Deployment with another selector has): an object without data is deleted and created
  again; a volume or a database is not, and the deploy fails saying why;
- a volume asked to shrink (422): fails saying so (the config check catches it first);
- a kind the cluster does not serve: optional (the ServiceMonitor) is left out with a
  warning, a database's fails naming the operator that is missing.
Adopting a first edition's namespace hands its objects' fields over to us first (adoption.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client, config

from handlers import naming, quota
from handlers.cluster import (
    REAPPLY_AFTER,
    ApplyResult,
    Claim,
    ClusterFacts,
    DestroyResult,
    Fence,
    NamespaceInfo,
    NamespaceTerminating,
    ObjectRef,
    OwnershipError,
    PermanentClusterError,
    TransientClusterError,
    adoption,
    check,
)
from handlers.cluster.digest import applied_digest
from handlers.cluster.discovery import ServedKinds, read_facts
from handlers.cluster.ownership import check_owner
from handlers.cluster.resources import (
    NAMESPACE,
    PERSISTENT_VOLUME_CLAIM,
    POD,
    RESOURCES,
    SECRET,
    Planned,
    check_namespace_name,
    missing_operator,
    phases,
    plan,
    resource_for,
    secret_values,
)
from handlers.cluster.retry import RetryPolicy
from handlers.cluster.transport import APPLY_PATCH, DEFAULT_TIMEOUT, Transport
from handlers.render import passwords_from_secrets

logger = logging.getLogger("k8s_ee.cluster")

FIELD_MANAGER = naming.MANAGED_BY
ANNOTATION_APPLIED_OBJECTS = naming.ANNOTATION_APPLIED_OBJECTS
# Owned objects go with their owner (a Deployment's ReplicaSets and Pods), without waiting.
_DELETE_OPTIONS = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
_PAGE = 500
# Times an apply starts over after its namespace began terminating under it.
_TERMINATING_RESTARTS = 3
# Words of the causes a real server gives for a field that cannot change in place.
_IMMUTABLE = ("immutable", "cannot change", "may not change")


class KubernetesCluster:
    name = "kubernetes"
    observes = True

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        destroy_timeout: float = 60.0,
        poll_interval: float = 0.5,
        source: str = "the given API client",
        reapply_after: timedelta | None = REAPPLY_AFTER,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._transport = Transport(api_client, timeout=timeout, retry=retry)
        self._kinds = ServedKinds(self._transport)
        self._destroy_timeout = destroy_timeout
        self._poll_interval = poll_interval
        # None or zero: every redeploy applies everything.
        self._reapply_after = reapply_after
        self._clock = clock
        # Where the connection settings came from, for the start-up log.
        self.source = source

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, **options: Any) -> KubernetesCluster:
        """In a pod (KUBERNETES_SERVICE_HOST set) its service account, unless `kubeconfig` names a
        file; otherwise that kubeconfig, $KUBECONFIG, or ~/.kube/config, at its current context."""
        configuration = client.Configuration()
        try:
            if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                source = "in-cluster service account"
            else:
                # Looked up now: the client reads $KUBECONFIG once, when it is imported. A list
                # of files (os.pathsep) is merged by the client, as kubectl does.
                path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
                config.load_kube_config(config_file=path, client_configuration=configuration)  # type: ignore[no-untyped-call]
                source = f"kubeconfig {path}"
        except (config.ConfigException, OSError) as error:
            raise PermanentClusterError(f"cannot load the Kubernetes connection settings: {error}") from error
        configuration.retries = False
        return cls(
            client.ApiClient(configuration), source=f"{source}, API server {configuration.host}", **options
        )

    # -- reads ---------------------------------------------------------------------------------

    async def facts(self) -> ClusterFacts:
        """The version and the API server's addresses; the operators' kinds are discovered too,
        so that no apply waits for it."""
        try:
            await self.discover()
        except PermanentClusterError as error:
            # Asked again by the first apply that needs it.
            logger.warning("cannot discover the operators' kinds: %s", error)
        return await read_facts(self._transport)

    async def discover(self) -> None:
        """Ask which operators' kinds the cluster serves (one GET per operator's group)."""
        for resource in RESOURCES:
            await self._kinds.served(resource)

    async def read(self, namespace: str, ref: ObjectRef) -> dict[str, Any] | None:
        resource = resource_for(ref.api_version, ref.kind)
        answer = await self._transport.request(
            "GET", resource.path(namespace, ref.name), action=f"read {ref}", accept=(404,)
        )
        return None if answer.status == 404 else answer.body

    async def namespaces(self) -> list[NamespaceInfo]:
        found: list[NamespaceInfo] = []
        token = ""
        while True:
            query = [
                ("labelSelector", f"{naming.LABEL_MANAGED_BY}={naming.MANAGED_BY}"),
                ("limit", str(_PAGE)),
            ]
            if token:
                query.append(("continue", token))
            answer = await self._transport.request(
                "GET", "/api/v1/namespaces", action="list managed namespaces", query=query
            )
            found.extend(_namespace_info(item) for item in _items(answer.body))
            token = str((answer.body.get("metadata") or {}).get("continue") or "")
            if not token:
                return found

    async def pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        check_namespace_name(namespace)
        answer = await self._transport.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/{POD.plural}",
            action=f"list pods in {namespace}",
            query=[("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(labels.items())))],
        )
        return _items(answer.body)

    async def read_claims(self, namespace: str) -> list[Claim]:
        check_namespace_name(namespace)
        answer = await self._transport.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/{PERSISTENT_VOLUME_CLAIM.plural}",
            action=f"list volume claims in {namespace}",
        )
        claims = []
        for item in _items(answer.body):
            sizes = [
                ((item.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage"),
                ((item.get("status") or {}).get("capacity") or {}).get("storage"),
            ]
            size = max((quota.mebibytes_up(str(s)) for s in sizes if s), default=0)
            claims.append(Claim(name=str(_metadata(item).get("name")), labels=_labels(item), size_mi=size))
        return claims

    async def read_credentials(self, namespace: str) -> dict[str, str]:
        check_namespace_name(namespace)
        answer = await self._transport.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/{SECRET.plural}",
            action=f"read generated credentials in {namespace}",
            query=[("labelSelector", f"{naming.LABEL_GENERATED_CREDENTIALS}=true")],
        )
        return passwords_from_secrets(_items(answer.body))

    # -- apply ---------------------------------------------------------------------------------

    async def unchanged(self, namespace: str, repository: str, manifests: list[dict[str, Any]]) -> bool:
        if not self._reapply_after:
            return False  # always applied: not even the read
        planned = plan(namespace, manifests)
        inventory = {item.ref.key for item in planned[1:] if await self._kinds.served(item.resource)}
        current = await self._read_namespace(namespace)
        if current is None or _terminating(current):
            return False
        labels, annotations = _labels(current), _annotations(current)
        try:
            if check_owner(namespace, labels, annotations, repository):
                return False  # the first edition's: adopted by a whole apply
        except OwnershipError:
            return False  # the apply refuses it, saying why
        if annotations.get(naming.ANNOTATION_APPLIED_DIGEST) != applied_digest(manifests):
            return False
        at = _parse_time(annotations.get(naming.ANNOTATION_APPLIED_AT))
        age = self._clock() - at if at is not None else None
        if age is None or not timedelta(0) <= age < self._reapply_after:
            return False  # due for the periodic re-apply (or a time we cannot trust)
        # The inventory decides what a later apply prunes: it must be what this one would write.
        recorded = annotations.get(ANNOTATION_APPLIED_OBJECTS)
        return recorded is not None and {ref.key for ref in _decode_applied(namespace, recorded)} == inventory

    async def apply(
        self, namespace: str, repository: str, manifests: list[dict[str, Any]], fence: Fence | None = None
    ) -> ApplyResult:
        for _ in range(_TERMINATING_RESTARTS):
            try:
                return await self._apply(namespace, repository, manifests, fence)
            except NamespaceTerminating:
                # Someone deleted the namespace while we applied into it: once it is gone, it is
                # created again, and everything with it.
                logger.info(
                    "namespace %s began terminating during the apply; waiting to recreate it", namespace
                )
                await self._wait_until_gone(namespace)
        raise TransientClusterError(f"namespace {namespace} kept being deleted while it was applied")

    async def _apply(
        self, namespace: str, repository: str, manifests: list[dict[str, Any]], fence: Fence | None
    ) -> ApplyResult:
        planned = plan(namespace, manifests)
        secrets = secret_values(manifests)
        result = ApplyResult(namespace=namespace)
        planned = await self._served(planned, result)
        current = await self._read_namespace(namespace)
        previous: list[ObjectRef] = []
        if current is not None:
            labels, annotations = _labels(current), _annotations(current)
            result.adopted = check_owner(namespace, labels, annotations, repository)
            if _terminating(current):
                # An earlier destroy, or a person: wait for it to go, then create it anew.
                await self._wait_until_gone(namespace)
                current, result.adopted = None, False
            else:
                previous = _decode_applied(namespace, annotations.get(ANNOTATION_APPLIED_OBJECTS))
        result.created_namespace = current is None

        wanted = {item.ref.key for item in planned[1:]}
        stale = [ref for ref in previous if ref.key not in wanted]
        if stale or result.adopted:
            await check(fence)
        for ref in stale:
            if await self._prune(namespace, ref):
                result.pruned.append(ref)
        if result.adopted:
            await self._adopt(namespace, planned, result)

        result.digest = applied_digest(manifests)
        _record_applied(planned[0].manifest, [item.ref for item in planned[1:]], result.digest, self._clock())
        # Each wave at once: the same requests as one by one, in a fraction of the time.
        for wave in phases(namespace, planned):
            await check(fence)
            created = await asyncio.gather(
                *(self._apply_one(namespace, item, secrets, result) for item in wave)
            )
            for item, was_created in zip(wave, created, strict=True):
                if was_created:
                    result.created.append(item.ref)
                result.applied.append(item.ref)
        return result

    async def _served(self, planned: list[Planned], result: ApplyResult) -> list[Planned]:
        """The planned objects whose kinds the cluster serves; an optional one it does not is left
        out with a warning, a required one fails the apply before anything is sent."""
        kept: list[Planned] = []
        for item in planned:
            if await self._kinds.served(item.resource):
                kept.append(item)
            elif item.resource.optional:
                result.skipped.append(item.ref)
                result.warnings.append(f"{item.ref} was not applied: {missing_operator(item.resource)}")
            else:
                raise PermanentClusterError(missing_operator(item.resource))
        return kept

    async def _adopt(self, namespace: str, planned: list[Planned], result: ApplyResult) -> None:
        """Hand the first edition's fields over to us, and delete its objects we no longer render."""
        await asyncio.gather(
            *(adoption.hand_over(self._transport, namespace, item, FIELD_MANAGER) for item in planned)
        )
        kinds = [r for r in RESOURCES if r.namespaced and await self._kinds.served(r)]
        rendered = {item.ref.key for item in planned}
        for ref, resource in await adoption.leftovers(self._transport, namespace, kinds, rendered):
            await self._transport.request(
                "DELETE",
                resource.path(namespace, ref.name),
                action=f"delete {ref} (the first edition's, no longer configured)",
                body=_DELETE_OPTIONS,
                accept=(404,),
            )
            result.pruned.append(ref)

    async def _apply_one(
        self, namespace: str, item: Planned, secrets: list[str], result: ApplyResult
    ) -> bool:
        """Server-side apply one object; True when it was created."""
        try:
            return await self._patch(namespace, item, secrets)
        except PermanentClusterError as error:
            if error.status == 404 and item.resource.operator:
                self._kinds.forget(item.resource)  # its CRD went away since it was discovered
                raise PermanentClusterError(missing_operator(item.resource), status=404) from error
            if error.status != 422:
                raise
            if _shrinks(error):
                raise PermanentClusterError(
                    f"{item.ref}: a volume cannot shrink; set the storage back to at least its size "
                    f"({error.message})",
                    status=422,
                ) from error
            fields = [cause.field for cause in error.causes if any(w in cause.message for w in _IMMUTABLE)]
            if not fields:
                raise
            if not item.resource.recreatable:
                raise PermanentClusterError(
                    f"{item.ref}: {', '.join(fields)} cannot change in place, and a {item.ref.kind} "
                    f"holds data, so it is not recreated; delete it (losing its data) to change it "
                    f"({error.message})",
                    status=422,
                ) from error
        # Nothing in it is lost by deleting it: created again with what we apply.
        logger.info(
            "%s in %s: %s cannot change in place; recreating it", item.ref, namespace, ", ".join(fields)
        )
        await self._transport.request(
            "DELETE",
            item.resource.path(namespace, item.ref.name),
            action=f"delete {item.ref} to create it again",
            body=_DELETE_OPTIONS,
            accept=(404,),
        )
        result.recreated.append(item.ref)
        return await self._patch(namespace, item, secrets)

    async def _patch(self, namespace: str, item: Planned, secrets: list[str]) -> bool:
        answer = await self._transport.request(
            "PATCH",
            item.resource.path(namespace, item.ref.name),
            action=f"apply {item.ref}",
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=item.manifest,
            content_type=APPLY_PATCH,
            secrets=secrets,
        )
        return answer.status == 201

    async def _prune(self, namespace: str, ref: ObjectRef) -> bool:
        try:
            resource = resource_for(ref.api_version, ref.kind)
        except PermanentClusterError:
            # Recorded by a version of the gateway that applied a kind this one does not know.
            logger.warning("cannot prune %s in %s: unknown kind; leaving it", ref, namespace)
            return False
        await self._transport.request(
            "DELETE",
            resource.path(namespace, ref.name),
            action=f"delete {ref} (no longer configured)",
            body=_DELETE_OPTIONS,
            accept=(404,),
        )
        return True

    # -- destroy -------------------------------------------------------------------------------

    async def destroy(
        self, namespace: str, repository: str, fence: Fence | None = None, *, release_preserve: bool = False
    ) -> DestroyResult:
        check_namespace_name(namespace)
        current = await self._read_namespace(namespace)
        if current is None:
            return DestroyResult(namespace=namespace, already_gone=True)
        labels, annotations = _labels(current), _annotations(current)
        check_owner(namespace, labels, annotations, repository)
        released = release_preserve and naming.preserved_by_gateway(labels, annotations)
        if labels.get(naming.LABEL_PRESERVE) == "true" and not released:
            return DestroyResult(namespace=namespace, preserved=True)
        if not _terminating(current):
            await check(fence)
            answer = await self._transport.request(
                "DELETE",
                NAMESPACE.path("", namespace),
                action=f"delete namespace {namespace}",
                body=_DELETE_OPTIONS,
                # 409: another delete got there first and the namespace is terminating.
                accept=(404, 409),
            )
            if answer.status == 404:
                return DestroyResult(namespace=namespace, already_gone=True)
        await self._wait_until_gone(namespace)
        return DestroyResult(namespace=namespace, deleted=True)

    async def _wait_until_gone(self, namespace: str) -> None:
        """Poll until the namespace is gone; past the deadline, say what still holds it."""
        deadline = time.monotonic() + self._destroy_timeout
        interval = self._poll_interval
        while True:
            current = await self._read_namespace(namespace)
            if current is None:
                return
            if time.monotonic() + interval > deadline:
                raise TransientClusterError(
                    f"namespace {namespace} is held by finalizers: {_holders(current)}; "
                    f"still terminating after {self._destroy_timeout:.0f}s, will try again"
                )
            await asyncio.sleep(interval)
            interval = min(interval * 2, 5.0)

    # -- helpers -------------------------------------------------------------------------------

    async def _read_namespace(self, namespace: str) -> dict[str, Any] | None:
        answer = await self._transport.request(
            "GET", NAMESPACE.path("", namespace), action=f"read namespace {namespace}", accept=(404,)
        )
        return None if answer.status == 404 else answer.body

    def close(self) -> None:
        self._transport.close()


def _shrinks(error: PermanentClusterError) -> bool:
    return any(
        cause.field.endswith("resources.requests.storage") and "less than" in cause.message
        for cause in error.causes
    )


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (_metadata(obj).get("labels") or {}).items()}


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (_metadata(obj).get("annotations") or {}).items()}


def _terminating(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return bool(_metadata(obj).get("deletionTimestamp")) or status.get("phase") == "Terminating"


def _namespace_info(obj: dict[str, Any]) -> NamespaceInfo:
    return NamespaceInfo(
        name=str(_metadata(obj).get("name") or ""),
        labels=_labels(obj),
        annotations=_annotations(obj),
        terminating=_terminating(obj),
    )


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("items")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _holders(obj: dict[str, Any]) -> str:
    """What keeps a terminating namespace: the conditions the namespace controller reports
    (content with finalizers, resources it could not delete), else its finalizers."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    reported = [
        str(condition.get("message"))
        for condition in conditions
        if isinstance(condition, dict) and condition.get("status") == "True" and condition.get("message")
    ]
    if reported:
        return "; ".join(reported)
    finalizers = [
        *(_metadata(obj).get("finalizers") or []),
        *((obj.get("spec") or {}).get("finalizers") or []),
    ]
    return ", ".join(str(f) for f in finalizers) or "none reported"


def _record_applied(
    namespace_manifest: dict[str, Any], refs: list[ObjectRef], digest: str, at: datetime
) -> None:
    """Put the set of applied objects, the digest and the time into the namespace manifest, applied first."""
    metadata = namespace_manifest.setdefault("metadata", {})
    annotations = metadata.get("annotations") or {}
    annotations[ANNOTATION_APPLIED_OBJECTS] = _encode_applied(refs)
    annotations[naming.ANNOTATION_APPLIED_DIGEST] = digest
    annotations[naming.ANNOTATION_APPLIED_AT] = naming.timestamp(at)
    metadata["annotations"] = annotations


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _encode_applied(refs: list[ObjectRef]) -> str:
    entries = sorted(f"{ref.api_version}/{ref.kind}/{ref.name}" for ref in refs)
    return json.dumps(entries, separators=(",", ":"))


def _decode_applied(namespace: str, value: str | None) -> list[ObjectRef]:
    if not value:
        return []
    try:
        entries = json.loads(value)
        if not isinstance(entries, list):
            raise ValueError("not a list")
        refs: list[ObjectRef] = []
        for entry in entries:
            api_version, kind, name = str(entry).rsplit("/", 2)
            refs.append(ObjectRef(api_version=api_version, kind=kind, name=name))
    except ValueError:
        # Someone edited it: without the list nothing can be pruned, but the apply goes on
        # and writes a good one.
        logger.warning(
            "namespace %s: unreadable %s annotation; not pruning", namespace, ANNOTATION_APPLIED_OBJECTS
        )
        return []
    return refs
