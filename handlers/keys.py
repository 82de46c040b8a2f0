"""Every Redis key the gateway and the worker use, built in one place.

A key is `{prefix}{kind}:{...}` with the prefix from K8S_EE_KEY_PREFIX, so several
installations can share one Redis. Each method names what its key holds and who
writes it; nothing else in the code spells a key. The delivery script
(`gateway/deliver.lua`) gets its key stems from `lua_stems`, so even it builds none
by hand. arq's own keys (jobs, results) are arq's: see `handlers.queue`.

The scripts touch several keys at once, so this schema assumes a single Redis (or a
primary with replicas, or Sentinel), not Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from providers.events import Provider
from providers.text import ascii_lower


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def _key(self, kind: str, *parts: str) -> str:
        return self.prefix + ":".join((kind, *parts))

    # -- the delivery log: written by the gateway (deliver.lua), read by the admin API --

    def writes(self) -> str:
        """Counter of log writes, for trimming the indexes every few writes."""
        return self._key("writes")

    def attempts(self, ident: str) -> str:
        """How many times `{provider}:{delivery id}` arrived."""
        return self._key("attempts", ident)

    def delivery(self, member: str) -> str:
        """One attempt's log entry; `member` is `{provider}:{delivery id}:{attempt}`."""
        return self._key("delivery", member)

    def deliveries(self) -> str:
        """Every attempt, by time received."""
        return self._key("deliveries")

    def deliveries_by_provider(self, provider: str) -> str:
        return self._key("deliveries", "provider", provider)

    def deliveries_by_repository(self, repository: str) -> str:
        # ASCII-only, as deliver.lua's string.lower, so both build the same key.
        return self._key("deliveries", "repository", ascii_lower(repository))

    def seen(self, ident: str) -> str:
        """Set when a delivery id was first accepted: the dedup key."""
        return self._key("seen", ident)

    def bodies(self) -> str:
        """The stored request bodies, by time received."""
        return self._key("bodies")

    def body(self, ident: str) -> str:
        return self._key("body", ident)

    def lua_stems(self) -> dict[str, str]:
        """The stems deliver.lua appends an id to (an empty id gives the stem)."""
        return {
            "writes_key": self.writes(),
            "attempts_stem": self.attempts(""),
            "delivery_stem": self.delivery(""),
            "deliveries_key": self.deliveries(),
            "provider_index_stem": self.deliveries_by_provider(""),
            "repository_index_stem": self.deliveries_by_repository(""),
            "seen_stem": self.seen(""),
            "bodies_key": self.bodies(),
            "body_stem": self.body(""),
        }

    # -- environments: written by the worker --

    def desired(self, env: str) -> str:
        """The desired state of environment `{provider}:{repository}:{number}` (handlers.desired)."""
        return self._key("env", env)

    def generation(self, env: str) -> str:
        """Bumped by every write of the desired state; the reconcile's finish check reads it."""
        return self._key("gen", env)

    def generation_stem(self) -> str:
        """What the admission script appends an environment to for `generation`."""
        return self.generation("")

    def lock(self, env: str) -> str:
        """Held by the one reconcile of the environment that runs."""
        return self._key("lock", env)

    def applied_generation(self, env: str) -> str:
        """The generation the environment's last finished reconcile applied."""
        return self._key("applied-gen", env)

    def whole_apply(self, env: str) -> str:
        """Set by an invalidation: a lost reconcile's late write may have landed, so the next
        deploy applies everything even when its manifests are unchanged (handlers/reconcile.py)."""
        return self._key("whole-apply", env)

    def branch_envs(self, provider: Provider, repository: str, branch: str) -> str:
        """The change numbers of a repository whose head branch is `branch` (what a push concerns)."""
        return self._key("branch-envs", provider.value, repository, branch)

    def commit_envs(self, provider: Provider, repository: str, sha_prefix: str) -> str:
        """The change numbers whose head commit starts with `sha_prefix` (what a build concerns)."""
        return self._key("commit-envs", provider.value, repository, sha_prefix)

    def status(self, env: str) -> str:
        """The environment's status record (handlers.status), read by the admin API."""
        return self._key("status", env)

    def statuses(self) -> str:
        """Every live environment's status record, by last update."""
        return self._key("statuses")

    def retired_statuses(self) -> str:
        """Destroyed environments' status records, by when they were destroyed (kept for the
        retention period, then trimmed; the whole index expires with its newest member)."""
        return self._key("statuses-retired")

    def readiness(self, env: str) -> str:
        """The rollout an environment's readiness checks are following (handlers.readiness)."""
        return self._key("ready", env)

    def namespace(self, namespace: str) -> str:
        """The environment that owns a namespace (handlers.status.StatusStore.claim)."""
        return self._key("namespace", namespace)

    def applied(self, provider: Provider, delivery_id: str) -> str:
        """Where an accepted delivery ended up: the reconcile that applied it, or why none did."""
        return self._key("applied", provider.value, delivery_id)

    # -- chat commands: written by the worker (handlers.chat, handlers.permissions) --

    def permission(self, provider: Provider, repository: str, user: str) -> str:
        """What the host last said `user` may do in the repository (cached briefly)."""
        return self._key("permission", provider.value, repository.lower(), user.lower())

    def answered(self, provider: Provider, repository: str, comment_id: str) -> str:
        """Set once a comment's commands were answered: a retried job does not answer twice."""
        return self._key("answered", provider.value, repository.lower(), comment_id)

    # -- preserved environments (handlers.preserve): environment -> preserved-until, epoch s --

    def preserved(self) -> str:
        """Every preserved environment, by when its preservation ends."""
        return self._key("preserved")

    def preserved_in(self, provider: Provider, repository: str) -> str:
        """The preserved environments of one repository (its limit is counted here)."""
        return self._key("preserved", provider.value, repository)

    # -- admission (handlers.admission): which environments are awake, which wait --

    def awake(self) -> str:
        """Environments holding a slot, by when they got it."""
        return self._key("admission", "awake")

    def awake_in(self, provider: Provider, repository: str) -> str:
        """The environments of one repository that hold a slot."""
        return self._key("admission", "awake", provider.value, repository)

    def awake_stem(self) -> str:
        """What the admission script appends `{provider}:{repository}` to for `awake_in`."""
        return self._key("admission", "awake", "")

    def admission_queue(self) -> str:
        """Environments waiting for a slot, first come first served (score: arrival number)."""
        return self._key("admission", "queue")

    def admission_arrivals(self) -> str:
        """Counter numbering the arrivals in the admission queue."""
        return self._key("admission", "arrivals")

    def admission_promoted(self) -> str:
        """Environments given a slot whose reconcile may not be queued yet (score: when)."""
        return self._key("admission", "promoted")

    def queue_wake(self, queue: str) -> str:
        """At most one wake-up token, pushed with each job written to the arq queue `queue`
        (gateway/deliver.lua, handlers/enqueue.py): a worker waiting for work blocks on it
        (handlers/queue_worker.py). See handlers/queue.py."""
        return self._key("wake", queue)

    def worker_heartbeat(self) -> str:
        """When a worker last said it was alive (epoch ms): written by every worker
        (handlers/heartbeat.py), read by the gateway's /readyz and /metrics."""
        return self._key("worker-heartbeat")

    # -- reporting back --

    def report(self, env: str) -> str:
        """What was last told to the host about the environment (comment id, last state)."""
        return self._key("report", env)

    def report_lock(self, env: str) -> str:
        return self._key("lock", "report", env)

    def report_generation(self, env: str) -> str:
        """Counts the environment's state changes: a report pass that began at a lower count is
        followed by another (handlers/report.py)."""
        return self._key("report-generation", env)

    def report_pending(self, env: str) -> str:
        """Set while the environment has a report job queued or running (the dirty marker): one job
        per environment, cleared only by a pass that saw no later change."""
        return self._key("report-pending", env)

    def write_bucket(self, credential: str) -> str:
        """A host credential's write bucket (handlers/write_gate.py); `credential` is its
        fingerprint (providers/hosts/gate.py), never a secret."""
        return self._key("write-bucket", credential)

    def report_warned(self, env: str) -> str:
        """Set once "no credentials, not reporting" was logged for the environment."""
        return self._key("report-skip-warned", env)

    def rate_limits(self) -> str:
        """The budget each host credential had left, as the worker last saw it."""
        return self._key("rate-limits")

    # -- DORA (handlers/dora.py): written by the worker, read by the gateway's /metrics --

    def dora_environment(self, env: str) -> str:
        """One environment's deployments already counted, since when it fails, its lead time taken."""
        return self._key("dora", "env", env)

    def dora_deployments(self) -> str:
        """Deployments by series and result."""
        return self._key("dora", "deployments")

    def dora_change_failures(self) -> str:
        """Failure streaks started, by series."""
        return self._key("dora", "change-failures")

    def dora_lead_time(self) -> str:
        """The lead-time histogram's buckets and sum, by series."""
        return self._key("dora", "lead-time")

    def dora_recovery(self) -> str:
        """The recovery-time histogram's buckets and sum, by series."""
        return self._key("dora", "recovery")

    def status_delivery(self, delivery_id: str) -> str:
        """One status-webhook delivery (handlers.status_webhooks.store)."""
        return self._key("status-webhook", delivery_id)

    def status_deliveries(self, state: str | None = None) -> str:
        """Status-webhook deliveries by time, all of them or those in one state."""
        return self._key("status-webhooks", *((state,) if state else ()))

    # -- the lifecycle (handlers/lifecycle): activity, idle, the sweeps, wake --

    def activity(self) -> str:
        """Every environment by its last activity (epoch s); the gateway's wake service writes too."""
        return self._key("activity")

    def idle_deadlines(self) -> str:
        """Awake environments by the moment they fall idle and hibernate (epoch s)."""
        return self._key("idle-deadlines")

    def idle_after(self) -> str:
        """Each environment's own idle time in seconds (its k8s-ee.yaml `hibernation.after`)."""
        return self._key("idle-after")

    def lifecycle_lock(self, kind: str) -> str:
        """Held by the one worker running the `kind` run (sweep, resync) now."""
        return self._key("lock", "lifecycle", kind)

    def lifecycle_due(self, kind: str) -> str:
        """Set by the run of `kind` that started; expires when the next one is due."""
        return self._key("lifecycle-due", kind)

    def lifecycle_counters(self) -> str:
        """What the sweeps did, counted (`runs:sweep:ok`, `changes:resync:deployed`, ...)."""
        return self._key("lifecycle-counters")

    def gone_seen(self, env: str) -> str:
        """When a successful host read first showed the environment's change closed or gone (a
        sighting; it expires, and a read that shows the change open deletes it)."""
        return self._key("gone-seen", env)

    def orphans_seen(self) -> str:
        """Managed namespaces without an environment record, and when a sweep first saw them."""
        return self._key("orphans-seen")

    def notices(self, env: str) -> str:
        """The warnings already posted on the environment's change (TTL, preserve expiry)."""
        return self._key("notices", env)

    def wake_asked(self, env: str) -> str:
        """Set when a visit asked for a wake, so a crowd of visitors asks once."""
        return self._key("wake-asked", env)

    def resync_repositories(self) -> str:
        """`{provider}:{repository}` entries resynced even without an environment."""
        return self._key("resync-repositories")

    def hooked_repositories(self) -> str:
        """`{provider}:{repository}` entries whose webhook `k8s-ee hooks ensure` registered (through
        the admin API): resynced even without an environment, until `hooks delete` removes them."""
        return self._key("hooked-repositories")

    def ingress_counters(self) -> str:
        """The ingress controllers' request counters per namespace, as the last sweep read them."""
        return self._key("ingress-counters")

    def wake_progress(self, env: str) -> str:
        """What the wake watch last saw of a waking environment's app, for the waiting page."""
        return self._key("wake-progress", env)
