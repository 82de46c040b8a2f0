"""Bring one environment to its desired state: read the truth, render, apply or destroy.

One reconcile per environment at a time (a Redis lock, renewed while it runs);
it loops until the desired state it applied is still the newest, so an event
that arrives mid-reconcile is applied right after, never lost.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from handlers import naming
from handlers.admission import Admission
from handlers.cluster import (
    ApplyResult,
    Cluster,
    Fence,
    OwnershipError,
    PermanentClusterError,
    TransientClusterError,
)
from handlers.cluster.digest import applied_digest
from handlers.config import (
    FILE_NAME,
    ConfigError,
    Problem,
    RepoConfig,
    check_live_storage,
    config_from_mapping,
    load_config,
)
from handlers.desired import Desired, DesiredStore, EnvKey, LockLost
from handlers.dora import DoraStore, Result, Series
from handlers.forks import without_secrets
from handlers.lifecycle.shaping import Lifecycle, Shaped
from handlers.metrics import WorkerMetrics
from handlers.policy import deploy_commit, fork_note, gate
from handlers.preserve import PreserveIndex
from handlers.readiness import Readiness
from handlers.render import (
    RenderSettings,
    RenderTarget,
    new_password,
    render_environment,
    required_passwords,
)
from handlers.render.databases import live_storage
from handlers.status import AppliedBy, EnvironmentStatus, StatusStore
from providers.events import Provider
from providers.hosts.base import ChangeState, Host, HostError, HostUnavailable, NotFound
from providers.states import State

logger = logging.getLogger("k8s_ee.worker")


def _shown(status: EnvironmentStatus) -> tuple[object, ...]:
    """What a change's report shows of its environment besides the state."""
    return (
        status.head_sha,
        status.note,
        status.approved_sha,
        status.preserved_until,
        status.warnings,
        status.last_error,
    )


def config_problem(message: str) -> ConfigError:
    return ConfigError([Problem(path="", message=message)])


class RetryLater(Exception):
    """A transient failure (cluster or host unreachable): the job is retried with backoff."""


# What the reconcile job retries (with backoff) rather than failing the environment for.
TRANSIENT = (TransientClusterError, RetryLater, HostUnavailable, RedisError)


def error_message(exc: Exception) -> str:
    """One line for an environment's `last_error`: a model's errors by field, else the message."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in errors[:5]
        )
        return f"invalid {exc.title}: {fields}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def taken_message(namespace: str, owner: str, want: Desired) -> str:
    """Why a deploy may not take `namespace` (SPEC 1: one owning environment per namespace)."""
    owner_key = EnvKey.parse(owner)
    if owner_key.repository.casefold() != want.repository.casefold():
        # Never name the other repository: it may be private, and this is shown on the change.
        return f"namespace {namespace} belongs to another repository; refusing to change it"
    hint = ""
    if want.provider == Provider.GENERIC:
        hint = f' (name "provider": "{owner_key.provider.value}" in the generic trigger to act on it)'
    return (
        f"namespace {namespace} belongs to the {owner_key.provider.value} environment of "
        f"{owner_key.repository}#{owner_key.number}; refusing to take it over{hint}"
    )


def _by_provider(want: Desired) -> dict[Provider, list[str]]:
    grouped: dict[Provider, list[str]] = {}
    for ref in want.deliveries:
        grouped.setdefault(ref.provider, []).append(ref.id)
    return grouped


@dataclass
class Reconciler:
    desired: DesiredStore
    statuses: StatusStore
    cluster: Cluster
    hosts: Mapping[Provider, Host]
    render_settings: RenderSettings
    # Follows each apply until the environment is up (or failed), outside the reconcile.
    readiness: Readiness
    default_config: Path | None = None
    lock_ttl_s: int = 30
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Told of every state change (report back, status webhooks).
    on_change: Callable[[EnvironmentStatus, str | None], Awaitable[None]] | None = None
    metrics: WorkerMetrics | None = None
    # Where deployments are counted for the DORA keys (handlers/dora.py).
    dora: DoraStore | None = None
    # How many environments may be awake at once; None: no limit, nothing counted.
    admission: Admission | None = None
    # The preserved environments' index; a destroyed environment leaves it.
    preserved: PreserveIndex | None = None
    # Hibernation, wake and the idle bookkeeping (handlers/lifecycle); None: none of it.
    lifecycle: Lifecycle | None = None

    async def reconcile(self, key: EnvKey) -> str:
        """Bring the environment to its newest desired state; raises LockLost (after making a new
        generation, see DesiredStore.invalidate) when the lock went to another reconcile."""
        token = uuid.uuid4().hex
        ttl_ms = self.lock_ttl_s * 1000
        if not await self.desired.acquire(key, token, ttl_ms):
            # Another reconcile holds it; its finish check sees our generation and runs again.
            return "busy"
        heartbeat = asyncio.create_task(self._heartbeat(key, token, ttl_ms))
        try:
            while True:
                generation, want = await self.desired.load(key)
                if want is None:
                    await self.desired.release(key, token)
                    return "nothing desired"
                if await self.desired.applied(key) >= generation:
                    # A reconcile queued for a generation another one has applied already.
                    await self.desired.release(key, token)
                    return "already applied"

                async def fence(generation: int = generation) -> None:
                    await self.desired.fence(key, token, generation, ttl_ms)

                outcome = await self._converge(want, generation, fence)
                finished = await self.desired.finish(key, token, generation, ttl_ms)
                if finished == "done":
                    return outcome
                if finished == "lost":
                    raise LockLost(f"{key}: lost the lock before finishing generation {generation}")
        except LockLost:
            logger.warning("lost the lock of %s while reconciling; stopped writing, and it runs again", key)
            await self.desired.invalidate(key)
            await self.desired.release(key, token)
            raise
        except BaseException:
            if not await self.desired.release(key, token):
                # The lock had gone to another reconcile meanwhile: a write of this one that was
                # still in flight may have landed over its apply. Make it apply again.
                await self.desired.invalidate(key)
            raise
        finally:
            heartbeat.cancel()

    async def _put(self, status: EnvironmentStatus) -> None:
        await self.statuses.publish(status, self.on_change)

    async def give_up(self, key: EnvKey, message: str) -> None:
        """A transient failure that outlasted every retry: the environment is failed, with why."""
        status = await self.statuses.get(str(key))
        if status is not None:
            failed = await self._failed(status, message)
            _, want = await self.desired.load(key)
            if status.state == "deploying" and want is not None:
                await self._count_deployment(want, failed)

    async def _note_error(self, key: EnvKey, message: str) -> None:
        status = await self.statuses.get(str(key))
        if status is not None:
            await self._put(status.model_copy(update={"last_error": message, "updated_at": self.clock()}))

    async def _heartbeat(self, key: EnvKey, token: str, ttl_ms: int) -> None:
        while True:
            await asyncio.sleep(ttl_ms / 3000)
            if not await self.desired.renew(key, token, ttl_ms):
                return

    # -- one pass --

    async def _converge(self, want: Desired, generation: int, fence: Fence) -> str:
        key = str(want.key)
        status = await self.statuses.get(key) or EnvironmentStatus(
            provider=want.provider, repository=want.repository, number=want.number, state="queued"
        )
        reconcile_id = f"{key}#{status.reconciles + 1}"
        status = status.model_copy(
            update={
                "reconciles": status.reconciles + 1,
                "last_reconcile": reconcile_id,
                "generation": generation,
                "progress": None,
            }
        )
        try:
            status = await self._act(want, status, fence)
        except TRANSIENT as exc:
            await self._note_error(want.key, str(exc))
            raise
        except LockLost:
            raise
        except Exception as exc:
            # Whatever went wrong, the environment says so (and is reported) rather than
            # staying `deploying` with no word; the traceback goes to the log.
            logger.exception("reconcile %s failed", reconcile_id)
            stored = await self.statuses.get(key)
            if stored is not None and stored.last_reconcile == reconcile_id:
                status = stored  # what this reconcile had recorded before it failed
            status = await self._failed(status, error_message(exc))
        for provider, ids in _by_provider(want).items():
            await self.statuses.link(
                provider,
                ids,
                AppliedBy(
                    reconcile=reconcile_id,
                    namespace=status.namespace,
                    state=status.state,
                    note=status.last_error,
                    at=self.clock(),
                ),
            )
        return status.state

    async def _act(self, want: Desired, status: EnvironmentStatus, fence: Fence) -> EnvironmentStatus:
        want = await self._with_truth(want)
        if want.action == "destroy":
            return await self._destroy(want, status, fence)
        if want.action == "deploy":
            deployed = await self._deploy(want, status, fence)
            if deployed.state == "failed":
                # Failed before the rollout could be followed (its k8s-ee.yaml, the apply).
                await self._count_deployment(want, deployed)
            return deployed
        skipped = status.model_copy(
            update={"state": "skipped", "note": want.reason, "updated_at": self.clock()}
        )
        await self._put(skipped)
        if not skipped.namespace:
            await self.release_slot(want.key)
        return skipped

    async def _with_truth(self, want: Desired) -> Desired:
        """Where the host can be asked, its answer decides: open or closed, and which head commit."""
        host = self.hosts.get(want.provider)
        if host is None:
            return want
        try:
            truth: ChangeState = await asyncio.to_thread(host.change, want.repository, want.number)
        except NotFound:
            return want.model_copy(update={"action": "destroy", "reason": "the change no longer exists"})
        except HostUnavailable as exc:
            logger.warning(
                "could not read %s from %s (%s); acting on the events", want.key, want.provider.value, exc
            )
            return want
        if truth.state != "open":
            return want.model_copy(update={"action": "destroy", "closed": True})
        update: dict[str, object] = {
            "head_sha": truth.head_sha,
            "head_ref": truth.head_ref,
            "base_ref": truth.base_ref or want.base_ref,
            "draft": truth.draft,
            "fork": truth.fork,
            "host_comments": truth.comments,
        }
        if want.action == "destroy" and want.closed:
            # A close we saw is not what the host says now (reopened since): the host wins.
            update |= {"action": "deploy", "closed": False}
        # The host may say for the first time that the change comes from a fork.
        return gate(want.model_copy(update=update))

    async def settled(self, status: EnvironmentStatus) -> None:
        """An apply's outcome, as readiness found it (handlers/readiness.py): the rollout is up
        (deployed) or will not be (failed)."""
        _, want = await self.desired.load(
            EnvKey(provider=status.provider, repository=status.repository, number=status.number)
        )
        if want is None or want.action != "deploy":
            return
        await self._count_deployment(want, status)
        if self.metrics is not None and status.state == "deployed" and want.updated_at is not None:
            # From the webhook that last changed what is wanted (its receipt by the gateway) to the
            # moment the environment was found up.
            waited = ((status.deployed_at or self.clock()) - want.updated_at).total_seconds()
            self.metrics.webhook_to_ready.observe(max(0.0, waited))

    async def _count_deployment(self, want: Desired, status: EnvironmentStatus) -> None:
        """A deploy that ended deployed or failed is one deployment, counted once (handlers/dora.py)."""
        if self.dora is None or status.state not in ("deployed", "failed"):
            return
        result: Result = "success" if status.state == "deployed" else "failure"
        env = str(want.key)
        first_commit = None
        if result == "success" and await self.dora.lead_time_pending(env):
            first_commit = await self._first_commit_at(want)
        await self.dora.record(
            env,
            Series(want.provider.value, want.repository),
            f"{status.head_sha}:{want.built_sha or ''}:{result}",
            result,
            status.updated_at or self.clock(),
            first_commit,
        )

    async def _first_commit_at(self, want: Desired) -> datetime | None:
        host = self.hosts.get(want.provider)
        if host is None:
            return None  # no credentials: no lead time for this change
        try:
            return await asyncio.to_thread(host.first_commit_at, want.repository, want.number)
        except HostError as exc:
            # Asked again at the next successful deployment of the change.
            logger.warning("could not read the first commit of %s: %s", want.key, exc)
            return None

    async def _read_config(self, want: Desired) -> RepoConfig:
        if want.config is not None:
            return config_from_mapping(want.config)
        host = self.hosts.get(want.provider)
        if host is not None:
            assert want.head_sha is not None
            # A fork's own k8s-ee.yaml is never read: its base branch's is (SPEC 3, issue 12).
            if want.fork and not want.base_ref:
                raise config_problem(f"cannot read {FILE_NAME} for a fork: its base branch is not known")
            ref = want.base_ref if want.fork and want.base_ref else want.head_sha
            where = f"branch {ref}" if want.fork else f"commit {want.head_sha[:12]}"
            try:
                text = await asyncio.to_thread(host.read_file, want.repository, FILE_NAME, ref)
            except HostUnavailable as exc:
                raise RetryLater(f"could not read {FILE_NAME}: {exc}") from exc
            except HostError as exc:
                raise config_problem(f"could not read {FILE_NAME} at {where}: {exc}") from exc
            if text is None:
                raise config_problem(f"{FILE_NAME} not found at {where}")
            return load_config(text)
        if self.default_config is not None:
            return load_config(self.default_config.read_text())
        raise config_problem(
            f"cannot read {FILE_NAME}: no credentials for {want.provider.value} "
            "(configure them, or K8S_EE_DEFAULT_CONFIG)",
        )

    async def _deploy(self, want: Desired, status: EnvironmentStatus, fence: Fence) -> EnvironmentStatus:
        sha = deploy_commit(want)
        assert sha is not None
        now = self.clock()
        try:
            config = await self._read_config(want)
        except ConfigError as exc:
            failed = status.model_copy(update={"head_sha": sha, "head_ref": want.head_ref})
            return await self._failed(failed, str(exc))
        if want.fork:
            # A fork's code never gets the repository's secrets.
            config = without_secrets(config)
        if config.trigger == "on-demand" and not want.requested:
            skipped = await self._settle(
                status,
                "skipped",
                note="trigger is on-demand: comment /deploy-preview to deploy",
                namespace=None,
            )
            if not status.namespace:
                await self.release_slot(want.key)
            return skipped
        namespace = naming.namespace_name(config.project_id, want.number)
        owner = await self.statuses.claim(namespace, status.key)
        if owner is not None:
            # Refused as for two repositories: nothing is touched, and the status says why.
            failed = await self._failed(status, taken_message(namespace, owner, want))
            if not status.namespace:
                await self.release_slot(want.key)
            return failed
        ticket = await self._admit(want, status)
        if ticket is not None:
            return ticket
        before = status
        status = status.model_copy(
            update={
                "head_sha": sha,
                "head_ref": want.head_ref,
                "host_comments": want.host_comments,
                "approved_sha": want.approved_sha if want.fork else None,
                "preserved_until": want.preserved_until if want.preserved(now) else None,
                "note": fork_note(want),
                "updated_at": now,
            }
        )
        target = RenderTarget(
            provider=want.provider,
            repository=want.repository,
            number=want.number,
            head_sha=sha,
            head_ref=want.head_ref or "unknown",
            image=want.image,
            created_at=status.created_at or now,
            now=now,
            # A fork's build of a commit not approved is not what runs.
            app_version=want.built_sha[:12]
            if want.built_sha and (not want.fork or want.built_sha == sha)
            else None,
            preserved_until=status.preserved_until,
        )
        # After an invalidation a lost reconcile's late write may have landed over the last apply:
        # applied in full, whatever the digests say.
        whole = status.applied_digest is not None and await self.desired.whole_apply_due(want.key)
        again = None if whole else await self._unchanged(want, status, namespace, target, config)
        if again is not None:
            # Nothing to apply: the state stays what it was until readiness has looked again.
            manifests, replicas = again.manifests, again.replicas
            applied = ApplyResult(namespace=namespace, digest=status.applied_digest, warnings=status.warnings)
        else:
            status = status.model_copy(update={"state": "deploying", "applied_digest": None})
            await self._put(status)
            if status.namespace and status.namespace != namespace:
                # projectId changed: the old namespace goes, the new one comes.
                await self.cluster.destroy(status.namespace, want.repository, fence)
                await self.statuses.unclaim(status.namespace, status.key)
            # Recorded before the first object is applied, so that a destroy after a
            # half-finished deploy still knows which namespace to remove.
            status = status.model_copy(update={"namespace": namespace})
            await self._put(status)
            try:
                passwords = await self.cluster.read_credentials(namespace)
                if any(db.storage for db in config.enabled_databases()):
                    claims = await self.cluster.read_claims(namespace)
                    check_live_storage(config, live_storage([(c.name, c.labels, c.size_mi) for c in claims]))
                for name in required_passwords(config):
                    passwords.setdefault(name, new_password())
                manifests = render_environment(target, config, self.render_settings, passwords)
                replicas = status.replicas
                if self.lifecycle is not None:
                    # Asleep, waking, or awake: what the lifecycle makes of the rendered manifests.
                    shaped = await self.lifecycle.shape(self.cluster, namespace, manifests, want, status)
                    manifests, replicas = shaped.manifests, shaped.replicas
                applied = await self.cluster.apply(namespace, want.repository, manifests, fence)
            except (PermanentClusterError, OwnershipError, ValueError, ConfigError) as exc:
                return await self._failed(status, str(exc))
            if whole:
                await self.desired.whole_applied(want.key)
        concluded = await self._conclude(
            want, status, config, manifests, replicas, applied, now, unchanged=again is not None
        )
        # Nothing applied, but what the change shows may differ (a fork's newer commit waits for
        # its approval, say): told as a state change would be, so its report follows.
        if (
            again is not None
            and self.on_change is not None
            and concluded.state == before.state
            and _shown(concluded) != _shown(before)
        ):
            await self.on_change(concluded, before.state)
        return concluded

    async def _conclude(
        self,
        want: Desired,
        status: EnvironmentStatus,
        config: RepoConfig,
        manifests: list[dict[str, Any]],
        replicas: dict[str, int],
        applied: ApplyResult,
        now: datetime,
        *,
        unchanged: bool,
    ) -> EnvironmentStatus:
        """What follows an apply (or a redeploy found `unchanged`): asleep, waking, or watched."""
        namespace = applied.namespace
        status = status.model_copy(
            update={
                "preview_url": naming.preview_url(namespace, self.render_settings.preview_domain),
                "databases": [db.name for db in config.enabled_databases()],
                "created_at": status.created_at or now,
                "warnings": applied.warnings,
                "applied_digest": applied.digest,
            }
        )
        if want.hibernated:
            note = status.note
            if self.lifecycle is not None:
                note = await self.lifecycle.asleep(
                    self.cluster, namespace, manifests, want, status, config.hibernation.after_seconds
                )
            settled = await self._settle(
                status,
                "hibernated",
                deployed_at=now,
                note=note,
                replicas=replicas,
                hibernated_at=want.hibernated_at,
                wakes_on_visit=self.lifecycle is not None and self.lifecycle.route is not None,
            )
            if not (self.admission and self.admission.counts_hibernated):
                await self.release_slot(want.key)
            return settled
        if self.lifecycle is not None:
            await self.lifecycle.awake(want, status, now, config.hibernation.after_seconds)
            if want.wake_route:
                # Woken: deploying until the app is ready, which the wake watch finds out; then
                # the host goes back to the app, and the readiness check says deployed.
                return await self._settle(
                    status,
                    "deploying",
                    note="waking up: starting the app again",
                    replicas=replicas,
                    deployed_at=now,
                )
            # Restored: later deploys run the rendered counts again.
            status = status.model_copy(
                update={"replicas": {}, "hibernated_at": None, "wakes_on_visit": False}
            )
        # Deployed once it is up: watched from here on, without this reconcile waiting.
        return await self.readiness.begin(status, manifests, unchanged=unchanged)

    async def _unchanged(
        self,
        want: Desired,
        status: EnvironmentStatus,
        namespace: str,
        target: RenderTarget,
        config: RepoConfig,
    ) -> Shaped | None:
        """The manifests of a redeploy that would change nothing, and what they run; None when it
        must be applied. Costs one read (Cluster.unchanged), none when it cannot be a no-op.

        The generated passwords are not read for it: the manifests are rendered with stand-ins,
        which the digest leaves out (handlers/cluster/digest.py), and never applied. The
        namespace's record says what the last apply started; `applied_digest` on the status,
        written once an apply finished and cleared when one starts, says it finished."""
        if status.applied_digest is None or status.namespace != namespace:
            return None
        if want.hibernated and not (status.state == "hibernated" and status.replicas):
            return None  # falling asleep reads the live replicas first: always applied
        stand_ins = {name: "unchanged-" + name for name in required_passwords(config)}
        try:
            manifests = render_environment(target, config, self.render_settings, stand_ins)
        except (ValueError, ConfigError):
            return None  # the whole apply says what is wrong
        shaped = Shaped(manifests, status.replicas)
        if self.lifecycle is not None:
            shaped = await self.lifecycle.shape(self.cluster, namespace, manifests, want, status)
        if applied_digest(shaped.manifests) != status.applied_digest:
            return None
        if not await self.cluster.unchanged(namespace, want.repository, shaped.manifests):
            return None
        logger.info("%s: the manifests are unchanged since the last apply; nothing applied", status.key)
        return shaped

    async def _admit(self, want: Desired, status: EnvironmentStatus) -> EnvironmentStatus | None:
        """Take a slot for the environment, or settle it queued (or refused): None when admitted."""
        if self.admission is None or (want.hibernated and not self.admission.counts_hibernated):
            return None
        running = bool(status.namespace) and status.state in ("deployed", "deploying", "failed", "preserved")
        if status.state == "hibernated" and self.admission.counts_hibernated:
            running = True
        ticket = await self.admission.admit(want.key, running=running)
        if ticket.state == "admitted":
            return None
        state: State = "queued" if ticket.state == "queued" else "skipped"
        return await self._settle(status, state, note=ticket.note(), head_sha=deploy_commit(want))

    async def release_slot(self, key: EnvKey) -> None:
        """The environment holds no slot: whoever fits is promoted (their reconciles are queued),
        and the comments of those still waiting show their new places.

        The one promotion entry point. A destroy, a hibernation or a TTL expiry that goes through
        the desired state and a reconcile calls it by itself; anything that frees a slot another
        way (a sweep that deletes a namespace directly, say) calls it too."""
        if self.admission is None:
            return
        await self.admission.release(key)
        for waiting, ticket in await self.admission.tickets():
            status = await self.statuses.get(str(waiting))
            if status is None or status.state != "queued" or status.note == ticket.note():
                continue
            moved = status.model_copy(update={"note": ticket.note(), "updated_at": self.clock()})
            if (
                await self.statuses.update_waiting(moved, self.admission.keys.admission_queue())
                and self.on_change
            ):
                await self.on_change(moved, "queued")

    async def _destroy(self, want: Desired, status: EnvironmentStatus, fence: Fence) -> EnvironmentStatus:
        namespace = status.namespace
        now = self.clock()
        if namespace:
            status = status.model_copy(update={"updated_at": now})
            preserved = want.preserved(now)
            try:
                # Once the gateway's own preservation is over, its label protects the namespace no more.
                result = await self.cluster.destroy(
                    namespace, want.repository, fence, release_preserve=not preserved
                )
            except (PermanentClusterError, OwnershipError) as exc:
                return await self._failed(status, str(exc))
            if result.preserved:
                return await self._settle(
                    status,
                    "preserved",
                    namespace=namespace,
                    preserved_until=want.preserved_until if preserved else None,
                    note="preserved: not deleted",
                )
        settled = await self._settle(status, "destroyed", namespace=namespace, preview_url=None)
        # Kept for the retention period (to refuse late deliveries, and for the admin API), then gone.
        await self.desired.retire(want.key)
        await self.statuses.retire(settled)
        if self.preserved is not None:
            await self.preserved.release(want.key)
        if self.lifecycle is not None:
            await self.lifecycle.forget(want.key)
        await self.release_slot(want.key)
        return settled

    async def _settle(self, status: EnvironmentStatus, state: State, **fields: object) -> EnvironmentStatus:
        settled = status.model_copy(
            update={"state": state, "last_error": None, "updated_at": self.clock(), "note": None, **fields}
        )
        await self._put(settled)
        return settled

    async def _failed(self, status: EnvironmentStatus, message: str, **fields: object) -> EnvironmentStatus:
        failed = status.model_copy(
            update={"state": "failed", "last_error": message, "updated_at": self.clock(), **fields}
        )
        await self._put(failed)
        logger.warning("environment %s failed: %s", status.key, message)
        return failed
