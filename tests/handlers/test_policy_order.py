"""Order does not matter: every arrival order of a change's events, with repeats, ends where
the events in the order they happened end (the pure policy; e2e samples in tests/e2e)."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.desired import Desired
from handlers.policy import Rules, decide
from providers.events import EventType, LifecycleEvent, Provider

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
A, B, C = "a" * 40, "b" * 40, "c" * 40


def change(
    kind: EventType, minute: int, sha: str, *, received: int | None = None, **fields: Any
) -> LifecycleEvent:
    """An event of pull request acme/web#7 that happened at `minute` (its payload's time)."""
    return LifecycleEvent(
        provider=Provider.GITHUB,
        delivery_id=f"{kind.value}-{minute}",
        type=kind,
        repository="acme/web",
        number=7,
        head_sha=sha,
        head_ref="feature",
        occurred_at=T0 + timedelta(minutes=minute),
        # When it reached us: any time; receipt does not decide the order where the payload has a time.
        received_at=T0 + timedelta(minutes=received if received is not None else 100),
        **fields,
    )


def request(kind: EventType, minute: int, **fields: Any) -> LifecycleEvent:
    """A generic trigger's request that says when it was made (`occurred_at`)."""
    return LifecycleEvent(
        provider=Provider.GENERIC,
        delivery_id=f"{kind.value}-{minute}",
        type=kind,
        repository="acme/web",
        number=7,
        occurred_at=T0 + timedelta(minutes=minute),
        received_at=T0 + timedelta(minutes=100),
        **fields,
    )


RULES = Rules()


def fold(events: Iterable[LifecycleEvent]) -> Desired | None:
    desired: Desired | None = None
    for event in events:
        decision = decide(desired, event, RULES)
        if decision.desired is not None:
            desired = decision.desired
    return desired


def meaning(desired: Desired | None) -> dict[str, Any] | None:
    """Everything but the bookkeeping of which deliveries arrived (and when the last one did)."""
    if desired is None:
        return None
    return desired.model_dump(exclude={"deliveries", "updated_at"})


def arrivals(events: Sequence[LifecycleEvent]) -> Iterable[tuple[LifecycleEvent, ...]]:
    """Every order of `events`, and of `events` with any one of them delivered twice."""
    for repeated in [None, *range(len(events))]:
        indexes = [*range(len(events)), *([] if repeated is None else [repeated])]
        for order in sorted(set(itertools.permutations(indexes))):
            yield tuple(events[i] for i in order)


PULL_REQUEST = [
    change(EventType.CHANGE_OPENED, 1, A),
    change(EventType.CHANGE_UPDATED, 2, B),
    change(EventType.CHANGE_UPDATED, 3, C),
    change(EventType.CHANGE_CLOSED, 4, C),
    change(EventType.CHANGE_REOPENED, 5, C),
]


@pytest.mark.parametrize(
    "history",
    [
        pytest.param(PULL_REQUEST, id="opened-synchronize-synchronize-closed-reopened"),
        pytest.param(
            [
                change(EventType.CHANGE_OPENED, 1, A),
                change(EventType.CHANGE_CLOSED, 2, A),
                change(EventType.CHANGE_REOPENED, 3, A),
                change(EventType.CHANGE_UPDATED, 4, B),
                change(EventType.CHANGE_UPDATED, 5, C),
            ],
            id="updates-after-a-reopen",
        ),
        pytest.param(
            [
                change(EventType.CHANGE_OPENED, 1, A, draft=True),
                change(EventType.CHANGE_READY, 2, A),
                change(EventType.CHANGE_UPDATED, 3, B),
                change(EventType.CHANGE_CLOSED, 4, B, merged=True),
            ],
            id="draft-ready-closed",
        ),
        pytest.param(
            [
                request(EventType.ENV_DEPLOY, 1, head_sha=A, head_ref="main", image="registry/web:1"),
                request(EventType.ENV_DEPLOY, 2, head_sha=B, head_ref="main"),
                request(EventType.ENV_DESTROY, 3),
                request(EventType.ENV_DEPLOY, 4, head_sha=C, head_ref="main", config={"projectId": "web"}),
            ],
            id="generic-deploy-destroy-deploy",
        ),
        pytest.param(
            [
                request(EventType.ENV_DEPLOY, 1, head_sha=A, head_ref="main"),
                request(EventType.ENV_DEPLOY, 2, head_sha=B, head_ref="main"),
                request(EventType.ENV_DESTROY, 3),
            ],
            id="generic-deploy-deploy-destroy",
        ),
    ],
)
def test_every_arrival_order_ends_as_the_order_of_events(history: list[LifecycleEvent]) -> None:
    expected = meaning(fold(history))
    assert expected is not None
    tried = 0
    for order in arrivals(history):
        assert meaning(fold(order)) == expected, [f"{e.type.value}@{e.occurred_at:%M}" for e in order]
        tried += 1
    assert tried >= math.factorial(len(history))


def test_the_in_order_result_is_the_right_one() -> None:
    """What the permutations are compared against: deployed at the newest head, open."""
    final = fold(PULL_REQUEST)
    assert final is not None
    assert (final.action, final.head_sha, final.closed) == ("deploy", C, False)
    closed = fold(PULL_REQUEST[:4])
    assert closed is not None and (closed.action, closed.closed) == ("destroy", True)


def test_several_repeats_in_random_orders() -> None:
    expected = meaning(fold(PULL_REQUEST))
    rng = random.Random(8)
    for _ in range(300):
        order = [*PULL_REQUEST, *rng.choices(PULL_REQUEST, k=rng.randint(2, 6))]
        rng.shuffle(order)
        assert meaning(fold(order)) == expected


def test_receipt_orders_events_whose_payload_has_no_time() -> None:
    def untimed(kind: EventType, minute: int, sha: str) -> LifecycleEvent:
        event = change(kind, minute, sha, received=minute)
        return event.model_copy(update={"occurred_at": None})

    # Received in this order, no payload times: the close was last, whatever the events say.
    final = fold(
        [
            untimed(EventType.CHANGE_OPENED, 1, A),
            untimed(EventType.CHANGE_REOPENED, 2, A),
            untimed(EventType.CHANGE_CLOSED, 3, A),
        ]
    )
    assert final is not None and final.action == "destroy"
    final = fold([untimed(EventType.CHANGE_CLOSED, 1, A), untimed(EventType.CHANGE_REOPENED, 2, B)])
    assert final is not None and (final.action, final.head_sha) == ("deploy", B)


def test_a_close_before_anything_else_is_a_tombstone_the_open_cannot_undo() -> None:
    closed = decide(None, change(EventType.CHANGE_CLOSED, 4, C), RULES)
    assert closed.desired is not None and closed.desired.action == "destroy" and not closed.reconcile
    opened = decide(closed.desired, change(EventType.CHANGE_OPENED, 1, A), RULES)
    assert not opened.reconcile and "closed" in opened.reason


def test_the_newest_head_is_kept_while_closed() -> None:
    # The update is delivered while the change is closed; the reopen names an older head.
    final = fold(
        [
            change(EventType.CHANGE_OPENED, 1, A),
            change(EventType.CHANGE_CLOSED, 2, A),
            change(EventType.CHANGE_UPDATED, 4, C),
            change(EventType.CHANGE_REOPENED, 3, A),
        ]
    )
    assert final is not None and (final.action, final.head_sha) == ("deploy", C)


def test_a_repeat_changes_nothing_and_needs_no_reconcile() -> None:
    opened = change(EventType.CHANGE_OPENED, 1, A)
    first = decide(None, opened, RULES)
    again = decide(first.desired, opened, RULES)
    assert first.reconcile and again.desired is None and not again.reconcile


def test_a_newer_request_of_the_same_thing_reconciles_again() -> None:
    """A CI that sends its deploy again (after a failure, say) gets a reconcile."""
    first = decide(None, request(EventType.ENV_DEPLOY, 1, head_sha=A, head_ref="main"), RULES)
    again = decide(first.desired, request(EventType.ENV_DEPLOY, 2, head_sha=A, head_ref="main"), RULES)
    assert again.desired is not None and again.reconcile
