"""The resync: each repository's open changes, read from its host, the safety net for missed webhooks.

GitHub, GitLab and Bitbucket Data Center do not retry a delivery that failed, and GitLab
switches off a hook that keeps failing. So every K8S_EE_RESYNC_INTERVAL, for each repository
with a credential and an environment (or listed in K8S_EE_RESYNC_REPOSITORIES, or whose webhook
`k8s-ee hooks ensure` registered: gateway/api_resync.py), the resync lists its open changes (one call per page, none per change) and brings the
desired state in line, through the same events a webhook would have sent, from source `resync`:

- an open change without an environment: `change.opened` (the same rules: drafts, forks,
  on-demand);
- an open change whose head moved: `change.updated` (which also wakes it);
- a draft marked ready: `change.ready`; a closed change the host shows open again: `change.reopened`;
- an environment whose change is not in the list: its change is read on its own. Closed,
  merged, or gone (404, from a repository the listing just proved reachable): destroyed only
  after two consecutive successful reads, on two passes an interval apart, show it so. The first
  is a sighting (a Redis key that expires); a read that shows the change open deletes it; the
  second, a pass later, sends `change.closed` (and the reconcile reads the host once more before
  it deletes anything). A host that cannot be read changes nothing (the error is counted, and a
  sighting stays as it was): a host outage, or a host that answers wrongly once, never deletes
  anything. A close that arrives by webhook is the host's own word, and applied at once.

With K8S_EE_RESYNC_INTERVAL=0 the sweep runs the closed-change part of this pass itself, so
"destroyed when its change is closed, per the host's API" holds either way.

Rate limits: the host clients wait out (or refuse) what their host asks (providers/hosts/pacer.py);
on top of that a pass stops listing a provider whose last known budget is under BUDGET_RESERVE,
leaving it to the reports, and picks up there next time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.asyncio import Redis

from handlers.desired import Desired, EnvKey
from handlers.keys import Keys
from handlers.lifecycle.counters import Tally
from handlers.lifecycle.emit import delivery_id
from handlers.policy import same_commit
from providers.events import EventSource, EventType, LifecycleEvent, Provider
from providers.hosts.base import ChangeState, Host, HostError, HostUnavailable, ListedChange, NotFound

logger = logging.getLogger("k8s_ee.worker")

# Requests a provider must have left before a pass lists another of its repositories.
BUDGET_RESERVE = 100
# A second sighting counts when at least this share of an interval lies between the two reads:
# the passes are claimed an interval apart (handlers/lifecycle/runs.py), but each starts when a
# worker picks its job up, so the next pass may read a little less than an interval later. Half
# an interval tells "the next pass" from "this pass, or its rest, again".
APART = 0.5
# A sighting is forgotten after this many intervals without a second successful read (the host
# failing all that while): the next read that shows the change closed is a first one again.
SIGHTING_KEPT = 10


@dataclass(frozen=True, slots=True)
class Repo:
    provider: Provider
    repository: str

    def __str__(self) -> str:
        return f"{self.provider.value}:{self.repository}"

    @classmethod
    def parse(cls, text: str) -> Repo:
        provider, _, repository = text.partition(":")
        return cls(Provider(provider), repository)


@dataclass
class Pass:
    """One resync (or the sweep's closed-change part of one)."""

    redis: Redis
    keys: Keys
    hosts: Mapping[Provider, Host]
    emit: Callable[[LifecycleEvent], Awaitable[bool]]
    interval_s: float
    source: EventSource = EventSource.RESYNC
    # False: only find closed changes (the sweep's part when the resync is off).
    open_events: bool = True
    tally: Tally = field(default_factory=Tally)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    # time.monotonic() past which no further repository is started; the rest is left in `left`.
    # Each provider's first is started regardless, so a pass that hands on its rest made progress.
    deadline: float | None = None
    left: list[Repo] = field(default_factory=list)
    # The change numbers of each repository's live environments (`live_environments`).
    known: dict[Repo, set[int]] = field(default_factory=dict)

    async def run(self, repositories: Iterable[Repo]) -> Tally:
        if not self.known:
            self.known = await live_environments(self.redis, self.keys)
        by_provider: dict[Provider, list[Repo]] = defaultdict(list)
        for repo in sorted(set(repositories), key=str):
            if repo.provider in self.hosts:
                by_provider[repo.provider].append(repo)
        # Each provider's repositories one after another (its rate limit is one budget); the
        # providers side by side.
        await asyncio.gather(*(self._provider(provider, repos) for provider, repos in by_provider.items()))
        return self.tally

    async def _provider(self, provider: Provider, repos: list[Repo]) -> None:
        host = self.hosts[provider]
        for index, repo in enumerate(repos):
            if index and self.deadline is not None and time.monotonic() > self.deadline:
                self.left.extend(repos[index:])
                return
            budgets = host.rate_limits()
            least = min((budget.remaining for budget in budgets.values()), default=None)
            if least is not None and least < BUDGET_RESERVE:
                left = len(repos) - index
                logger.warning(
                    "resync: %s has %d requests left; %d repositories wait for the next pass",
                    provider.value,
                    int(least),
                    left,
                )
                self.tally.change("deferred", left)
                return
            try:
                await self._repository(host, repo)
            except HostUnavailable as exc:
                self.tally.error(provider.value)
                logger.warning("resync: cannot read %s (%s); its environments are kept", repo, exc)
                if exc.rate_limited:
                    self.tally.change("deferred", len(repos) - index - 1)
                    return

    async def _repository(self, host: Host, repo: Repo) -> None:
        numbers = await self._numbers(repo)
        try:
            listed = await asyncio.to_thread(host.open_changes, repo.repository)
        except NotFound:
            # Not a proof that anything is gone: the credentials may have lost it. Kept.
            self.tally.error(repo.provider.value)
            logger.warning(
                "resync: %s is not visible with these credentials; its environments are kept", repo
            )
            return
        except HostError as exc:
            if isinstance(exc, HostUnavailable):
                raise
            self.tally.error(repo.provider.value)
            logger.warning("resync: listing %s failed (%s); its environments are kept", repo, exc)
            return
        self.tally.change("listed")
        open_now = {change.number: change for change in listed}
        known = await self._desired(repo, numbers | (set(open_now) if self.open_events else set()))
        if self.open_events:
            for number, change in open_now.items():
                await self._open(repo, change, known.get(number))
        unlisted = numbers - set(open_now)
        # Sightings of changes shown open, and of environments destroyed some other way (a
        # webhook's close): none may count as the first read of a later close.
        ended = {n for n in unlisted if n not in known or known[n].action == "destroy"}
        await self._clear_suspicions(repo, (set(open_now) & numbers) | ended)
        for number in sorted(unlisted - ended):
            await self._not_listed(host, repo, number, known[number])

    async def _numbers(self, repo: Repo) -> set[int]:
        return set(self.known.get(repo, ()))

    async def _desired(self, repo: Repo, numbers: set[int]) -> dict[int, Desired]:
        if not numbers:
            return {}
        ordered = sorted(numbers)
        env = [str(EnvKey(provider=repo.provider, repository=repo.repository, number=n)) for n in ordered]
        raw = await self.redis.mget([self.keys.desired(e) for e in env])
        return {n: Desired.model_validate_json(r) for n, r in zip(ordered, raw, strict=True) if r}

    # -- open changes ------------------------------------------------------------------------

    async def _open(self, repo: Repo, change: ListedChange, current: Desired | None) -> None:
        head = change.head_sha.lower()
        if current is None:
            await self._event(repo, change, EventType.CHANGE_OPENED, f"opened:{head}", "created")
        elif current.closed:
            stamp = int(change.updated_at.timestamp()) if change.updated_at else 0
            await self._event(repo, change, EventType.CHANGE_REOPENED, f"reopened:{head}:{stamp}", "reopened")
        elif not same_commit(current.head_sha, head):
            await self._event(repo, change, EventType.CHANGE_UPDATED, f"updated:{head}", "deployed")
        elif current.draft and not change.draft:
            await self._event(repo, change, EventType.CHANGE_READY, f"ready:{head}", "deployed")

    async def _event(self, repo: Repo, change: ListedChange, kind: EventType, name: str, action: str) -> None:
        event = LifecycleEvent(
            provider=repo.provider,
            delivery_id=delivery_id(f"{self.source.value}:{repo}:{change.number}:{name}"),
            type=kind,
            repository=repo.repository,
            number=change.number,
            head_sha=change.head_sha.lower(),
            head_ref=change.head_ref or None,
            base_ref=change.base_ref,
            draft=change.draft,
            fork=change.fork,
            title=change.title,
            url=change.url,
            occurred_at=change.updated_at,
            received_at=self.now,
            source=self.source,
        )
        if await self.emit(event):
            self.tally.change(action)

    # -- changes not in the list -------------------------------------------------------------

    async def _not_listed(self, host: Host, repo: Repo, number: int, current: Desired) -> None:
        try:
            truth = await asyncio.to_thread(host.change, repo.repository, number)
        except NotFound:
            # The listing just proved the repository reachable: the change itself is gone.
            await self._gone(repo, number, None, "gone")
            return
        except HostError as exc:
            if isinstance(exc, HostUnavailable):
                raise
            self.tally.error(repo.provider.value)
            logger.warning("resync: cannot read %s#%d (%s); kept", repo, number, exc)
            return
        if truth.state == "open":
            # Opened (or reopened) after the listing: as if listed.
            await self._clear_suspicions(repo, {number})
            if self.open_events:
                listed = ListedChange(**truth.model_dump(), number=number)
                await self._open(repo, listed, current)
            return
        await self._gone(repo, number, truth, truth.state)

    async def _gone(self, repo: Repo, number: int, truth: ChangeState | None, state: str) -> None:
        """One successful read shows the change closed (or gone): a sighting. The second, a pass
        later, destroys."""
        env = str(EnvKey(provider=repo.provider, repository=repo.repository, number=number))
        now = self.now.timestamp()
        kept = int(max(self.interval_s, 60) * SIGHTING_KEPT)
        if await self.redis.set(self.keys.gone_seen(env), str(now), nx=True, ex=kept):
            self.tally.change("suspected")
            return
        first = await self.redis.get(self.keys.gone_seen(env))
        if first is None:
            return  # it expired just now: the next pass sees it again
        if now - float(first) < APART * self.interval_s:
            return  # the same pass again, or one too soon: not a second read a pass apart
        await self._close(repo, number, truth, state, str(int(float(first))))

    async def _close(self, repo: Repo, number: int, truth: ChangeState | None, state: str, seen: str) -> None:
        env = str(EnvKey(provider=repo.provider, repository=repo.repository, number=number))
        event = LifecycleEvent(
            provider=repo.provider,
            delivery_id=delivery_id(f"{self.source.value}:{env}:closed:{seen}"),
            type=EventType.CHANGE_CLOSED,
            repository=repo.repository,
            number=number,
            head_sha=truth.head_sha.lower() if truth else None,
            merged=state == "merged",
            occurred_at=(truth.updated_at if truth and truth.updated_at else self.now),
            received_at=self.now,
            actor=f"k8s-ee {self.source.value}",
            source=self.source,
        )
        if await self.emit(event):
            self.tally.change("destroyed")
        await self.redis.delete(self.keys.gone_seen(env))

    async def _clear_suspicions(self, repo: Repo, numbers: set[int]) -> None:
        """A read that shows these changes open: what an earlier one sighted was not so."""
        if numbers:
            envs = [
                str(EnvKey(provider=repo.provider, repository=repo.repository, number=n)) for n in numbers
            ]
            await self.redis.delete(*(self.keys.gone_seen(env) for env in envs))


async def live_environments(redis: Redis, keys: Keys) -> dict[Repo, set[int]]:
    """Every live environment (its status record indexed), by repository."""
    found: dict[Repo, set[int]] = defaultdict(set)
    cursor = 0
    while True:
        cursor, page = await redis.zscan(keys.statuses(), cursor, count=1000)
        for member, _ in page:
            env = EnvKey.parse(member.decode())
            found[Repo(env.provider, env.repository)].add(env.number)
        if cursor == 0:
            return dict(found)


async def repositories(redis: Redis, keys: Keys, configured: Iterable[str]) -> set[Repo]:
    """What a pass reads: every repository with an environment, the configured ones, those the
    sweep registered (an orphan's), and those whose webhook `k8s-ee hooks ensure` registered."""
    found = {Repo.parse(entry) for entry in configured}
    async with redis.pipeline(transaction=False) as pipe:
        pipe.smembers(keys.resync_repositories())
        pipe.smembers(keys.hooked_repositories())
        registered, hooked = await pipe.execute()
    found |= {Repo.parse(m.decode()) for m in (*registered, *hooked)}
    return found | set(await live_environments(redis, keys))
