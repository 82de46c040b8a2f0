"""Chat commands, as the worker runs them: who asked, may they, what it means, and the answer.

A new comment whose text holds commands (handlers.commands) is handled here instead of being
counted as activity:

1. A comment of the gateway's own (it carries one of our markers, or its author is the account
   the host says our credentials act as) never commands anything.
2. The author's permission is read from the host at the time (handlers.permissions, cached
   briefly): write access or better runs commands, anyone may ask for `/preview-help`.
3. Each allowed command becomes a decision of the policy (`handlers.policy.decide_command`),
   saved like any event's; `/deploy-preview` reads the change from the host first, so that a
   fork's approval is of the head commit as it is now, and `/deploy-preview <sha>` is refused when
   the head has moved. `/preserve` takes a place in the repository's preserve limit
   (handlers.preserve) before it is saved.
4. Every comment with commands is answered at once, before any reconcile: a thumbs-up reaction
   when every command was accepted and the host has reactions; otherwise one reply that says,
   per command, what happens or why not (a refusal names what the host reported).

Each decision is logged with the author and the permission the host reported. Commands from the
generic trigger's `comment`, and those the admin API sends (`envs preserve`: events marked
`operator`), come from whoever holds its token: they are trusted, and answered in the delivery log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from redis.asyncio import Redis

from handlers.commands import Command, Invalid, Name, Parsed, help_text, parse
from handlers.desired import Desired, EnvKey
from handlers.keys import Keys
from handlers.permissions import PermissionCache
from handlers.policy import Decision, Head, Request, Rules, decide_command
from handlers.preserve import PreserveIndex, Reservation
from handlers.settings import CommandSettings
from providers.events import Comment, LifecycleEvent, Provider
from providers.hosts.base import Host, HostError, Permission
from providers.hosts.reporting import MARKER

logger = logging.getLogger("k8s_ee.worker")

# Hidden in every answer the gateway writes, so that an answer is never read as a command.
ANSWER_MARKER = "<!-- k8s-ee-answer -->"
GENERIC_ACTOR = "generic-trigger"
OPERATOR_ACTOR = "admin-api"
# How long a comment stays marked as answered (a job is retried within minutes, not days).
ANSWERED_TTL_S = 7 * 24 * 3600

Guard = Callable[[Desired], Awaitable[str | None]]


class Applier(Protocol):
    """Save a decision about one environment (handlers.worker.apply_decision)."""

    def __call__(
        self,
        key: EnvKey,
        event: LifecycleEvent,
        decide_next: Callable[[Desired | None], Decision | None],
        guard: Guard | None = None,
    ) -> Awaitable[Decision | None]: ...


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    # The command was accepted as it stands: a reaction says enough, unless it asked for words.
    accepted: bool
    words: bool = False


@dataclass
class Chat:
    redis: Redis
    keys: Keys
    hosts: Mapping[Provider, Host]
    settings: CommandSettings
    rules: Rules
    permissions: PermissionCache
    preserved: PreserveIndex
    apply: Applier
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    async def handle(self, event: LifecycleEvent) -> str | None:
        """Run the commands of a new comment; None when it holds none (it is mere activity)."""
        comment = event.comment
        if comment is None or event.number is None:
            return None
        found = parse(comment.body, max_hours=self.settings.preserve_max_hours)
        if not found:
            return None
        if MARKER in comment.body or ANSWER_MARKER in comment.body:
            return "a comment of the gateway's own: ignored"
        key = EnvKey(provider=event.provider, repository=event.repository, number=event.number)
        if event.provider == Provider.GENERIC or event.operator:
            actor = OPERATOR_ACTOR if event.operator else GENERIC_ACTOR
            answers = [await self._run(key, event, parsed, actor, None, None) for parsed in found]
            return "; ".join(answer.text for answer in answers)
        host = self.hosts.get(event.provider)
        if host is None:
            logger.warning(
                "commands on %s ignored: no credentials for %s to check who may run them",
                key,
                event.provider.value,
            )
            return f"commands ignored: no credentials for {event.provider.value}"
        if await self._is_own(host, comment):
            return "a comment of the gateway's own account: ignored"
        permission, problem = await self._permission(host, event, comment)
        answers = []
        for parsed in found:
            answers.append(
                await self._run(
                    key, event, parsed, comment.author_name or comment.author, host, permission, problem
                )
            )
        await self._answer(host, event, comment, answers)
        return "; ".join(answer.text for answer in answers)

    # -- one command -----------------------------------------------------------------------------

    async def _run(
        self,
        key: EnvKey,
        event: LifecycleEvent,
        parsed: Parsed,
        actor: str,
        host: Host | None,
        permission: Permission | None,
        problem: str | None = None,
    ) -> Answer:
        name = _mention(event.comment, actor)
        if isinstance(parsed, Invalid):
            return Answer(f"`{parsed.text}`: {parsed.problem}.\n\n{self._help()}", accepted=False)
        if parsed.name == Name.HELP:
            return Answer(self._help(), accepted=True, words=True)
        if host is not None:
            if permission is None:
                self._log(
                    key,
                    parsed,
                    actor,
                    "refused",
                    problem or "unknown",
                    allowed=False,
                    account=_account(event),
                )
                return Answer(
                    f"{name} could not be checked for write access to run {parsed}: {problem}", False
                )
            if not permission.can_write:
                self._log(
                    key, parsed, actor, "refused", permission.reported, allowed=False, account=_account(event)
                )
                return Answer(
                    f"{name} needs write access to run {parsed} ({host.name} reports: {permission.reported})",
                    accepted=False,
                )
        trusted = "admin API token" if event.operator else "generic trigger token"
        reported = permission.reported if permission is not None else f"trusted ({trusted})"
        try:
            head = await self._head(host, key) if parsed.name == Name.DEPLOY else None
        except HostError as exc:
            self._log(key, parsed, actor, f"not done: {exc}", reported, allowed=True, account=_account(event))
            return Answer(f"`{parsed}`: not done, the change could not be read from the host ({exc})", False)
        decision = await self._decide(key, event, parsed, actor, head)
        done = decision is not None and decision.desired is not None
        reason = decision.reason if decision is not None else "nothing to do"
        self._log(
            key,
            parsed,
            actor,
            reason if done else f"not done: {reason}",
            reported,
            allowed=True,
            account=_account(event),
        )
        return Answer(f"`{parsed}`: {reason}" if done else f"`{parsed}`: not done: {reason}", accepted=done)

    async def _decide(
        self, key: EnvKey, event: LifecycleEvent, command: Command, actor: str, head: Head | None
    ) -> Decision | None:
        now = self.clock()
        request = Request(command=command, actor=actor, head=head, now=now)
        reservations: list[Reservation] = []

        async def guard(desired: Desired) -> str | None:
            if command.name != Name.PRESERVE or desired.preserved_until is None:
                return None
            reservation = await self.preserved.reserve(key, desired.preserved_until, now)
            if not reservation.granted:
                return (
                    f"{reservation.live} environments of this repository are preserved already, the most "
                    f"allowed (K8S_EE_MAX_PRESERVED_PER_REPOSITORY={self.preserved.limit})"
                )
            reservations.append(reservation)
            return None

        decision = await self.apply(
            key, event, lambda current: decide_command(current, request, event, self.rules), guard
        )
        saved = decision is not None and decision.desired is not None
        if reservations and not saved:
            await self.preserved.undo(key, reservations[0])
        if saved and command.name == Name.UNPRESERVE:
            await self.preserved.release(key)
        return decision

    async def _head(self, host: Host | None, key: EnvKey) -> Head | None:
        if host is None:
            return None
        truth = await asyncio.to_thread(host.change, key.repository, key.number)
        return Head(
            sha=truth.head_sha,
            ref=truth.head_ref,
            base_ref=truth.base_ref,
            fork=truth.fork,
            draft=truth.draft,
            open=truth.state == "open",
        )

    def _help(self) -> str:
        return help_text(self.settings.preserve_hours)

    # -- who asked -------------------------------------------------------------------------------

    async def _is_own(self, host: Host, comment: Comment) -> bool:
        try:
            identity = await asyncio.to_thread(host.identity)
        except HostError as exc:
            # The markers still keep the gateway's own answers from commanding anything.
            logger.warning("could not read the gateway's own %s account: %s", host.provider.value, exc)
            return False
        return identity.is_self(comment.author, comment.author_id)

    async def _permission(
        self, host: Host, event: LifecycleEvent, comment: Comment
    ) -> tuple[Permission | None, str | None]:
        try:
            return await self.permissions.of(host, event.provider, event.repository, comment), None
        except HostError as exc:
            logger.warning(
                "could not read the permission of %s on %s: %s",
                comment.author,
                event.repository,
                exc,
                extra={"actor": comment.author, "repository": event.repository},
            )
            return None, f"{host.name} did not say ({exc})"

    def _log(
        self,
        key: EnvKey,
        command: Command,
        actor: str,
        outcome: str,
        reported: str,
        *,
        allowed: bool,
        account: str | None = None,
    ) -> None:
        logger.info(
            "command %s by %s on %s: %s (the host reports %s)",
            command,
            actor,
            key,
            outcome,
            reported,
            extra={
                "command": str(command),
                "actor": actor,
                # The account the host was asked about, where it is not the name shown.
                "actor_id": account,
                "permission": reported,
                "allowed": allowed,
                "repository": key.repository,
            },
        )

    # -- the answer ------------------------------------------------------------------------------

    async def _answer(
        self, host: Host, event: LifecycleEvent, comment: Comment, answers: list[Answer]
    ) -> None:
        assert event.number is not None
        answered = self.keys.answered(event.provider, event.repository, comment.id)
        if await self.redis.exists(answered):
            return  # a retried job: answered already
        if host.can_react and all(answer.accepted and not answer.words for answer in answers):
            await asyncio.to_thread(host.react, event.repository, event.number, comment.id)
        else:
            body = "\n\n".join([ANSWER_MARKER, *(answer.text for answer in answers)])
            await asyncio.to_thread(
                host.reply, event.repository, event.number, comment.id, body, comment.thread_id
            )
        await self.redis.set(answered, "1", ex=ANSWERED_TTL_S)


def _account(event: LifecycleEvent) -> str | None:
    comment = event.comment
    return (comment.author_id or comment.author) if comment is not None else None


def _mention(comment: Comment | None, actor: str) -> str:
    if comment is None:
        return actor
    return f"@{comment.author_name or comment.author}"


__all__ = ["ANSWER_MARKER", "Answer", "Applier", "Chat", "Guard", "Invalid"]
