"""The production back-end: server-side apply to a Kubernetes cluster.

An apply costs one GET of the namespace (ownership, and the set of objects the previous
apply left), one PATCH per object, and one DELETE per object to prune; no discovery and no
listing. The set of applied objects is kept in the namespace's `k8s-ee/applied-objects`
annotation, written by the namespace's own apply. Pruning happens before that write: if
a DELETE fails, the annotation still lists the object and the next apply tries again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

from kubernetes import client, config

from handlers import naming
from handlers.cluster import (
    ApplyResult,
    DestroyResult,
    ObjectRef,
    PermanentClusterError,
    TransientClusterError,
)
from handlers.cluster.ownership import check_owner
from handlers.cluster.resources import (
    NAMESPACE,
    SECRET,
    Planned,
    check_namespace_name,
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
ANNOTATION_APPLIED_OBJECTS = "k8s-ee/applied-objects"
# Owned objects go with their owner (a Deployment's ReplicaSets and Pods), without waiting.
_DELETE_OPTIONS = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
_PAGE = 500


class KubernetesCluster:
    name = "kubernetes"

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        destroy_timeout: float = 60.0,
        poll_interval: float = 0.5,
        source: str = "the given API client",
    ) -> None:
        self._transport = Transport(api_client, timeout=timeout, retry=retry)
        self._destroy_timeout = destroy_timeout
        self._poll_interval = poll_interval
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

    async def apply(self, namespace: str, repository: str, manifests: list[dict[str, Any]]) -> ApplyResult:
        planned = plan(namespace, manifests)
        secrets = secret_values(manifests)
        result = ApplyResult(namespace=namespace)
        current = await self._read_namespace(namespace)
        previous: list[ObjectRef] = []
        if current is None:
            result.created_namespace = True
        else:
            labels, annotations = _labels(current), _annotations(current)
            result.adopted = check_owner(namespace, labels, annotations, repository)
            if _terminating(current):
                raise TransientClusterError(
                    f"namespace {namespace} is still being deleted (an earlier destroy); try again later"
                )
            previous = _decode_applied(namespace, annotations.get(ANNOTATION_APPLIED_OBJECTS))

        wanted = {item.ref.key for item in planned[1:]}
        for ref in previous:
            if ref.key not in wanted and await self._prune(namespace, ref):
                result.pruned.append(ref)

        _record_applied(planned[0].manifest, [item.ref for item in planned[1:]])
        # Each wave at once: the same requests as one by one, in a fraction of the time.
        for wave in phases(namespace, planned):
            created = await asyncio.gather(*(self._apply_one(namespace, item, secrets) for item in wave))
            for item, was_created in zip(wave, created, strict=True):
                if was_created:
                    result.created.append(item.ref)
                result.applied.append(item.ref)
        return result

    async def _apply_one(self, namespace: str, item: Planned, secrets: list[str]) -> bool:
        """Server-side apply one object; True when it was created."""
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
        self, namespace: str, repository: str, *, release_preserve: bool = False
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


def _record_applied(namespace_manifest: dict[str, Any], refs: list[ObjectRef]) -> None:
    """Put the set of applied objects into the namespace manifest, applied first."""
    metadata = namespace_manifest.setdefault("metadata", {})
    annotations = metadata.get("annotations") or {}
    annotations[ANNOTATION_APPLIED_OBJECTS] = _encode_applied(refs)
    metadata["annotations"] = annotations


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
