"""A small kube-controller-manager and kubelet: what makes a Deployment's pods exist and become ready.

A real cluster answers an applied Deployment with work that happens after the apply: the
Deployment controller makes a ReplicaSet per pod template and scales them (RollingUpdate:
at most `maxSurge` pods above the wanted count, at most `maxUnavailable` below it;
Recreate: the old pods go before the new ones come); the ReplicaSet controller creates the
pods, through admission, so a pod the namespace's quota or limits refuse is reported on the
ReplicaSet as `ReplicaFailure`/`FailedCreate` with the refusal's message, and the Deployment
copies that condition; the kubelet starts the pods, and a pod becomes ready. Here:

- a pod becomes ready `ready_delay` seconds after it was created (0: at once, within the
  same request that caused it);
- an image a test marks bad (`mark_image`) never starts: the container waits with the
  reason given, as the kubelet reports it (`ErrImagePull`, `ImagePullBackOff` with
  `Back-off pulling image "x"`, `CrashLoopBackOff` with a restart count and the last exit);
- the Deployment's status is the controller's: `observedGeneration`, `replicas`,
  `updatedReplicas`, `readyReplicas`, `availableReplicas`, and the conditions `Available`,
  `Progressing` (`NewReplicaSetAvailable` when done, `ProgressDeadlineExceeded` after
  `progressDeadlineSeconds` without progress) and `ReplicaFailure`;
- deleting an owner deletes what it owns (the garbage collector, background propagation).

Custom resources have no controller here; a test gives them status (`status_hooks`, or the
status subresource), as their operators would.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .kinds import ResourceType, by_kind
from .status import KubeError

if TYPE_CHECKING:
    from .store import Store

MANAGER = "kube-controller-manager"
KUBELET = "kubelet"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
# Kinds whose changes can move a rollout.
WATCHED = frozenset({"Deployment", "ReplicaSet", "Pod", "ResourceQuota", "LimitRange"})
TICK = 0.02


def _kind(name: str) -> ResourceType:
    [found] = [r for r in by_kind(name) if r.group in ("", "apps")]
    return found


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def template_hash(template: Any) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    uid = owner["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def _owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _scaled(value: Any, replicas: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * replicas / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


@dataclass
class BadImage:
    reason: str
    message: str


@dataclass
class Workloads:
    store: Store
    ready_delay: float = 0.0
    bad_images: dict[str, BadImage] = field(default_factory=dict)
    # pod uid -> when this controller first saw it (monotonic), for the ready delay.
    _born: dict[str, float] = field(default_factory=dict)
    # deployment uid -> (what its progress was, when it last moved), for the progress deadline.
    _progress: dict[str, tuple[tuple[int, int], float]] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _syncing: bool = False
    # namespace -> when something in it is next due to change on its own (monotonic).
    _wake: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # -- what the store and the test call -----------------------------------------------------

    def mark_image(self, image: str, reason: str = "ErrImagePull", message: str | None = None) -> None:
        """Pods running `image` never start; their container waits with `reason`."""
        if message is None:
            message = {
                "ErrImagePull": f'failed to pull and unpack image "{image}": not found',
                "ImagePullBackOff": f'Back-off pulling image "{image}"',
                "InvalidImageName": f'Failed to apply default image tag "{image}": invalid reference format',
                "CrashLoopBackOff": "back-off 5m0s restarting failed container",
            }.get(reason, reason)
        self.bad_images[image] = BadImage(reason, message)
        self.poke_all()

    def changed(self, kind: str, namespace: str) -> None:
        """A write of `kind` in `namespace` happened (under the store's lock)."""
        if kind in WATCHED and namespace:
            self._dirty.add(namespace)
            self._run()

    def poke_all(self) -> None:
        with self.store.lock:
            self._dirty |= {ns["metadata"]["name"] for ns in self.store.items(_namespace_kind(), None)}
            self._run()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._tick, name="kubeapi-controllers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def reset(self) -> None:
        self._born.clear()
        self._progress.clear()
        self._dirty.clear()
        self._wake.clear()
        self.bad_images.clear()

    # -- the loop ------------------------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            now = time.monotonic()
            if not any(at <= now for at in list(self._wake.values())):
                continue
            with self.store.lock:
                self._dirty |= {ns for ns, at in self._wake.items() if at <= now}
                self._run()

    def _run(self) -> None:
        if self._syncing:
            return  # our own writes: the loop below picks them up
        self._syncing = True
        try:
            for _ in range(50):
                if not self._dirty:
                    return
                namespace = self._dirty.pop()
                self._sync(namespace)
        finally:
            self._syncing = False

    def _sync(self, namespace: str) -> None:
        wakes: list[float] = []
        for deployment in self.store.items(_kind("Deployment"), namespace):
            if not deployment["metadata"].get("deletionTimestamp"):
                self._sync_deployment(namespace, deployment)
        for replicaset in self.store.items(_kind("ReplicaSet"), namespace):
            self._sync_replicaset(namespace, replicaset)
        for pod in self.store.items(_kind("Pod"), namespace):
            if (wake := self._sync_pod(namespace, pod)) is not None:
                wakes.append(wake)
        for replicaset in self.store.items(_kind("ReplicaSet"), namespace):
            self._replicaset_status(namespace, replicaset)
        for deployment in self.store.items(_kind("Deployment"), namespace):
            if (wake := self._deployment_status(namespace, deployment)) is not None:
                wakes.append(wake)
        if wakes:
            self._wake[namespace] = min(wakes)
        else:
            self._wake.pop(namespace, None)

    # -- Deployment controller -----------------------------------------------------------------

    def _sync_deployment(self, namespace: str, deployment: dict[str, Any]) -> None:
        spec = deployment.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        digest = template_hash(template)
        owned = [rs for rs in self.store.items(_kind("ReplicaSet"), namespace) if _owned_by(rs, deployment)]
        name = f"{deployment['metadata']['name']}-{digest}"
        new = next((rs for rs in owned if rs["metadata"]["name"] == name), None)
        olds = [rs for rs in owned if rs["metadata"]["name"] != name]
        if new is None:
            revision = 1 + max(
                (int(rs["metadata"].get("annotations", {}).get(REVISION, 0)) for rs in owned), default=0
            )
            new = self._new_replicaset(namespace, deployment, name, digest, revision)
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            if any(self._replicas(rs) for rs in olds) or any(self._pods(namespace, rs) for rs in olds):
                for rs in olds:
                    self._scale(namespace, rs, 0)
                return
            self._scale(namespace, new, replicas)
            return
        rolling = strategy.get("rollingUpdate") or {}
        surge = _scaled(rolling.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        total = self._replicas(new) + sum(self._replicas(rs) for rs in olds)
        room = max(0, replicas + surge - total)
        target = min(replicas, self._replicas(new) + room) if self._replicas(new) < replicas else replicas
        self._scale(namespace, new, target)
        available = self._available(namespace, new) + sum(self._available(namespace, rs) for rs in olds)
        removable = max(0, available - (replicas - unavailable))
        for rs in sorted(olds, key=lambda r: r["metadata"]["creationTimestamp"]):
            pods = self._pods(namespace, rs)
            unready = sum(1 for pod in pods if not _ready(pod))
            drop = min(self._replicas(rs), unready + removable)
            removable -= max(0, drop - unready)
            self._scale(namespace, rs, self._replicas(rs) - drop)

    def _new_replicaset(
        self, namespace: str, deployment: dict[str, Any], name: str, digest: str, revision: int
    ) -> dict[str, Any]:
        spec = deployment["spec"]
        template = json.loads(json.dumps(spec.get("template") or {}))
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
        selector = json.loads(json.dumps(spec.get("selector") or {}))
        selector.setdefault("matchLabels", {})[HASH_LABEL] = digest
        body = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {REVISION: str(revision)},
                "ownerReferences": [_owner_ref(deployment)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
        }
        return self.store.create(_kind("ReplicaSet"), namespace, body, MANAGER)

    def _replicas(self, replicaset: dict[str, Any]) -> int:
        return int((replicaset.get("spec") or {}).get("replicas", 0))

    def _scale(self, namespace: str, replicaset: dict[str, Any], replicas: int) -> None:
        if self._replicas(replicaset) == replicas:
            return
        body = json.loads(json.dumps(replicaset))
        body["spec"]["replicas"] = replicas
        updated = self.store.replace(
            _kind("ReplicaSet"), namespace, replicaset["metadata"]["name"], body, MANAGER
        )
        replicaset.clear()
        replicaset.update(updated)

    def _pods(self, namespace: str, replicaset: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            pod
            for pod in self.store.items(_kind("Pod"), namespace)
            if _owned_by(pod, replicaset) and not pod["metadata"].get("deletionTimestamp")
        ]

    def _available(self, namespace: str, replicaset: dict[str, Any]) -> int:
        return sum(1 for pod in self._pods(namespace, replicaset) if _ready(pod))

    # -- ReplicaSet controller -----------------------------------------------------------------

    def _sync_replicaset(self, namespace: str, replicaset: dict[str, Any]) -> None:
        pods = self._pods(namespace, replicaset)
        wanted = self._replicas(replicaset)
        failure: str | None = None
        for _ in range(wanted - len(pods)):
            template = json.loads(json.dumps(replicaset["spec"].get("template") or {}))
            body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": f"{replicaset['metadata']['name']}-",
                    "namespace": namespace,
                    "labels": (template.get("metadata") or {}).get("labels") or {},
                    "ownerReferences": [_owner_ref(replicaset)],
                },
                "spec": template.get("spec") or {},
            }
            try:
                created = self.store.create(_kind("Pod"), namespace, body, MANAGER)
            except KubeError as refused:
                failure = refused.message
                break
            self._born[created["metadata"]["uid"]] = time.monotonic()
        if len(pods) > wanted:
            # Not-ready pods go first, then the newest.
            doomed = sorted(pods, key=lambda p: (_ready(p), p["metadata"]["creationTimestamp"]))
            for pod in doomed[: len(pods) - wanted]:
                self.store.delete(_kind("Pod"), namespace, pod["metadata"]["name"])
        self._set_failure(namespace, replicaset, failure)

    def _set_failure(self, namespace: str, replicaset: dict[str, Any], failure: str | None) -> None:
        fresh = self.store.items(_kind("ReplicaSet"), namespace, replicaset["metadata"]["name"])
        if not fresh:
            return
        current = fresh[0]
        status = dict(current.get("status") or {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        if failure is not None:
            conditions.append(
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": failure,
                    "lastTransitionTime": _stamp(time.time()),
                }
            )
        elif not any(c.get("type") == "ReplicaFailure" for c in status.get("conditions") or []):
            return
        status["conditions"] = conditions
        if not conditions:
            status.pop("conditions")
        self._write_status("ReplicaSet", namespace, current, status)

    def _replicaset_status(self, namespace: str, replicaset: dict[str, Any]) -> None:
        pods = self._pods(namespace, replicaset)
        ready = sum(1 for pod in pods if _ready(pod))
        current = dict(replicaset.get("status") or {})
        status: dict[str, Any] = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": replicaset["metadata"].get("generation", 1),
        }
        if current.get("conditions"):
            status["conditions"] = current["conditions"]
        self._write_status("ReplicaSet", namespace, replicaset, status)

    # -- the kubelet ---------------------------------------------------------------------------

    def _sync_pod(self, namespace: str, pod: dict[str, Any]) -> float | None:
        """Bring a pod's status to what its images and age say; answers when it is next due to
        change on its own (monotonic), if it waits on the clock."""
        born = self._born.setdefault(pod["metadata"]["uid"], time.monotonic())
        started = str(pod["metadata"].get("creationTimestamp") or _stamp(time.time()))
        due_at = born + self.ready_delay
        due = time.monotonic() >= due_at
        spec = pod.get("spec") or {}
        inits = [c for c in spec.get("initContainers") or [] if isinstance(c, dict)]
        containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
        old = pod.get("status") or {}
        # Init containers run one after the other; the first that cannot start holds the rest.
        init_statuses: list[dict[str, Any]] = []
        initialized = True
        for container in inits:
            if not initialized:
                init_statuses.append(_waiting(container, "PodInitializing", None))
            elif container.get("image") in self.bad_images:
                init_statuses.append(self._waiting_status(container, old, "initContainerStatuses"))
                initialized = False
            elif not due:
                init_statuses.append(_running(container, started, ready=False))
                initialized = False
            else:
                init_statuses.append(_completed(container, started))
        statuses: list[dict[str, Any]] = []
        for container in containers:
            if not initialized:
                statuses.append(_waiting(container, "PodInitializing", None))
            elif container.get("image") in self.bad_images:
                statuses.append(self._waiting_status(container, old, "containerStatuses"))
            elif not due:
                statuses.append(_waiting(container, "ContainerCreating", None))
            else:
                statuses.append(_running(container, started, ready=True))
        ready = bool(statuses) and all(s["ready"] for s in statuses)
        # Running once every container has started (a crash-looping one has, and restarts).
        running = initialized and all(
            "running" in s["state"] or s["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
            for s in statuses
        )
        status: dict[str, Any] = {
            "phase": "Running" if running else "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": str(initialized), "lastTransitionTime": started},
                {"type": "ContainersReady", "status": str(ready), "lastTransitionTime": started},
                {"type": "Ready", "status": str(ready), "lastTransitionTime": started},
            ],
            "containerStatuses": statuses,
            "startTime": started,
            "qosClass": "Burstable",
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        self._write_status("Pod", namespace, pod, status, KUBELET)
        return None if due else due_at

    def _waiting_status(self, container: dict[str, Any], old: dict[str, Any], field: str) -> dict[str, Any]:
        bad = self.bad_images[container["image"]]
        status = _waiting(container, bad.reason, bad.message)
        if bad.reason == "CrashLoopBackOff":
            previous = next((s for s in old.get(field) or [] if s.get("name") == container.get("name")), {})
            status["restartCount"] = max(1, int(previous.get("restartCount", 0)))
            status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
        return status

    # -- Deployment status ---------------------------------------------------------------------

    def _deployment_status(self, namespace: str, deployment: dict[str, Any]) -> float | None:
        """Write the Deployment's status; answers when its progress deadline falls, while it rolls."""
        spec = deployment.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        owned = [rs for rs in self.store.items(_kind("ReplicaSet"), namespace) if _owned_by(rs, deployment)]
        new_name = f"{deployment['metadata']['name']}-{template_hash(spec.get('template') or {})}"
        new = next((rs for rs in owned if rs["metadata"]["name"] == new_name), None)
        pods = [pod for rs in owned for pod in self._pods(namespace, rs)]
        updated = self._pods(namespace, new) if new is not None else []
        ready = sum(1 for pod in pods if _ready(pod))
        updated_ready = sum(1 for pod in updated if _ready(pod))
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        unavailable = (
            0
            if (spec.get("strategy") or {}).get("type") == "Recreate"
            else _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        )
        complete = len(updated) == replicas and len(pods) == replicas and updated_ready == replicas
        uid = deployment["metadata"]["uid"]
        now = time.monotonic()
        progress = (len(updated), updated_ready)
        last = self._progress.get(uid)
        if last is None or last[0] != progress:
            self._progress[uid] = (progress, now)
            last = self._progress[uid]
        deadline = int(spec.get("progressDeadlineSeconds", 600))
        old = {c["type"]: c for c in (deployment.get("status") or {}).get("conditions") or []}
        rs_name = new_name
        conditions = [
            _condition(
                old,
                "Available",
                ready >= replicas - unavailable,
                "MinimumReplicasAvailable"
                if ready >= replicas - unavailable
                else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if ready >= replicas - unavailable
                else "Deployment does not have minimum availability.",
            )
        ]
        if complete:
            conditions.append(
                _condition(
                    old,
                    "Progressing",
                    True,
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                )
            )
        elif now - last[1] > deadline:
            conditions.append(
                _condition(
                    old,
                    "Progressing",
                    False,
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                )
            )
        else:
            conditions.append(
                _condition(
                    old, "Progressing", True, "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
                )
            )
        failure = next(
            (
                c
                for c in ((new or {}).get("status") or {}).get("conditions") or []
                if c.get("type") == "ReplicaFailure"
            ),
            None,
        )
        if failure is not None:
            conditions.append(_condition(old, "ReplicaFailure", True, failure["reason"], failure["message"]))
        status = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": len(pods),
            "updatedReplicas": len(updated),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, replicas - ready),
            "conditions": conditions,
        }
        for key in (
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        ):
            if not status[key]:
                del status[key]  # omitempty, as the real status omits zero counts
        self._write_status("Deployment", namespace, deployment, status)
        return last[1] + deadline if not complete and now - last[1] <= deadline else None

    def _write_status(
        self, kind: str, namespace: str, obj: dict[str, Any], status: dict[str, Any], manager: str = MANAGER
    ) -> None:
        if obj.get("status") == status:
            return
        body = {"metadata": {"name": obj["metadata"]["name"]}, "status": status}
        self.store.replace(
            _kind(kind), namespace, obj["metadata"]["name"], body, manager, subresource="status"
        )


def _namespace_kind() -> ResourceType:
    return _kind("Namespace")


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _waiting(container: dict[str, Any], reason: str, message: str | None) -> dict[str, Any]:
    state: dict[str, Any] = {"reason": reason}
    if message:
        state["message"] = message
    return {
        "name": container.get("name"),
        "image": container.get("image"),
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": 0,
        "state": {"waiting": state},
    }


def _running(container: dict[str, Any], started: str, ready: bool) -> dict[str, Any]:
    return {
        "name": container.get("name"),
        "image": container.get("image"),
        "imageID": f"{container.get('image')}@sha256:" + "0" * 64,
        "ready": ready,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": started}},
    }


def _completed(container: dict[str, Any], started: str) -> dict[str, Any]:
    return {
        "name": container.get("name"),
        "image": container.get("image"),
        "imageID": f"{container.get('image')}@sha256:" + "0" * 64,
        "ready": True,
        "started": False,
        "restartCount": 0,
        "state": {
            "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": started}
        },
    }


def _condition(
    old: dict[str, dict[str, Any]], kind: str, true: bool, reason: str, message: str
) -> dict[str, Any]:
    previous = old.get(kind)
    value = "True" if true else "False"
    if previous and previous.get("status") == value and previous.get("reason") == reason:
        return {**previous, "message": message}
    stamp = _stamp(time.time())
    return {
        "type": kind,
        "status": value,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


StatusHook = Callable[[dict[str, Any]], dict[str, Any] | None]
