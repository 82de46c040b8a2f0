"""Reading only the fields an adapter needs (payload.Fields) ends every delivery as the full
parse (payload.load_json_object, also Fields' fallback) would: the same event, the same
ignored reason, the same refusal. Checked on every recorded delivery and on mutations of
them that land on what the adapters read: wrong types, nulls, missing and extra fields,
huge numbers, unicode, invalid bytes, duplicate keys, deep nesting.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from providers import bitbucket_cloud, bitbucket_server, github, gitlab
from providers.payload import Fields, describe, load_json_object
from providers.verdicts import Accepted, Ignored, Outcome, Pong, Refusal
from tests.providers.test_adapter_contract import RECEIVED_AT, paths, value_at
from tests.support.senders import Fixture, load_fixtures


@dataclass(frozen=True)
class Adapter:
    """An adapter module: `fields_for(event)` and `read(event, data, delivery_id, received_at)`."""

    module: Any
    event_header: str
    # Its recorded JSON deliveries.
    fixtures: list[Fixture]

    @property
    def events(self) -> list[str]:
        """The events it reads fields of, and one it does not know."""
        return [*self.module._FIELDS, "no such event"]

    def event(self, fixture: Fixture) -> str:
        return fixture.headers[self.event_header]

    def endings(self, event: str, body: bytes) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """(with only the fields read, with the whole body parsed) for a delivery of `event`."""
        module = self.module
        sparse = ending(lambda: module.read(event, module.fields_for(event).load(body), "d-1", RECEIVED_AT))
        full = ending(lambda: module.read(event, load_json_object(body), "d-1", RECEIVED_AT))
        return sparse, full


def json_fixtures(provider: str) -> list[Fixture]:
    return [
        f for f in load_fixtures(provider) if f.headers.get("Content-Type", "").startswith("application/json")
    ]


ADAPTERS = [
    Adapter(github, "X-GitHub-Event", json_fixtures("github")),
    Adapter(gitlab, "X-Gitlab-Event", json_fixtures("gitlab")),
    Adapter(bitbucket_cloud, "X-Event-Key", json_fixtures("bitbucket-cloud")),
    Adapter(bitbucket_server, "X-Event-Key", json_fixtures("bitbucket-server")),
]
each_adapter = pytest.mark.parametrize("adapter", ADAPTERS, ids=[a.module.__name__ for a in ADAPTERS])
RECORDED = [(a, f) for a in ADAPTERS for f in a.fixtures]


def ending(run: Callable[[], Outcome]) -> tuple[Any, ...]:
    """How a delivery ends, in a form two endings compare by."""
    try:
        outcome = run()
    except Refusal as refused:
        return ("refused", type(refused).__name__, refused.status, refused.reason)
    except ValidationError as exc:  # what payload.adapter makes Unusable
        return ("unusable", describe(exc))
    if isinstance(outcome, Accepted):
        return ("accepted", outcome.event.model_dump(mode="json"))
    if isinstance(outcome, Ignored):
        return ("ignored", outcome.reason, outcome.repository, outcome.type)
    assert isinstance(outcome, Pong)
    return ("pong",)


@pytest.mark.parametrize(
    ("adapter", "fixture"), RECORDED, ids=[f"{f.provider}:{f.name}" for _, f in RECORDED]
)
def test_every_recorded_delivery_reads_the_same_from_its_fields_alone(
    adapter: Adapter, fixture: Fixture
) -> None:
    for event in {adapter.event(fixture), *adapter.events}:
        sparse, full = adapter.endings(event, fixture.body)
        assert sparse == full, event


@each_adapter
def test_the_recorded_deliveries_are_read_and_accepted(adapter: Adapter) -> None:
    # The comparisons mean something only if the deliveries get as far as events.
    accepted = [
        f.name for f in adapter.fixtures if adapter.endings(adapter.event(f), f.body)[0][0] == "accepted"
    ]
    assert len(accepted) >= 5, accepted


# What a field may be changed to: nulls, other types, numbers orjson reads as floats (beyond
# 64 bits) or that msgspec bounds, unicode, nested objects and lists.
EDGES = [
    *[None, True, False, 0, -1, 1, 7, 1.0, -0.0, 1.5, 1e300, "", "x", "ünï😀", "\u0000"],
    *[2**53, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30)],
    *["opened", "closed", "created", "completed", "success", "refs/heads/main", "0" * 40, "abc1234"],
    *["2025-03-10T14:02:11Z", "2025-03-10 14:02:11 UTC", "not a time", "acme/web"],
    *[[], {}, [1], [{}], [{"number": 1}], {"full_name": "a/b"}, {"id": 1}, {"repo": None}],
]
scalars = (
    st.sampled_from(EDGES)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
keys = st.sampled_from(["full_name", "number", "sha", "ref", "repo", "id", "login", "x"]) | st.text(
    max_size=8
)
values = st.sampled_from(EDGES) | st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)


def read_places(adapter: Adapter, fixture: Fixture, document: Any) -> list[tuple[Any, ...]]:
    """The places in `document` the adapter reads, most often; the objects on the way to them;
    and a few others."""
    fields = adapter.module.fields_for(adapter.event(fixture))
    wanted = {tuple(p.replace("[]", "").split(".")) for p in fields.paths}
    prefixes = {path[:i] for path in wanted for i in range(len(path))}
    everywhere = list(paths(document))

    def named(place: tuple[Any, ...]) -> tuple[str, ...]:
        return tuple(step for step in place if not isinstance(step, int))

    leaves = [p for p in everywhere if named(p) in wanted]
    on_the_way = [p for p in everywhere if named(p) in prefixes]
    return leaves * 8 + on_the_way + everywhere[:: max(1, len(everywhere) // 20)]


@each_adapter
def test_every_edge_value_on_every_field_read_reads_the_same(adapter: Adapter) -> None:
    """Each value of EDGES in each place each recorded delivery's handler reads, and instead of
    each object on the way there; and each such place dropped."""
    for fixture in adapter.fixtures:
        original = json.loads(fixture.body)
        for path in dict.fromkeys(read_places(adapter, fixture, original)):
            if not path:
                continue
            for replacement in [*EDGES, DROP]:
                document = copy.deepcopy(original)
                parent = value_at(document, path[:-1])
                if replacement is DROP:
                    if not isinstance(parent, dict):
                        continue
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = copy.deepcopy(replacement)
                sparse, full = adapter.endings(adapter.event(fixture), serialise(document, unicode=False))
                assert sparse == full, (fixture.name, path, replacement)


DROP = object()


def serialise(document: Any, unicode: bool) -> bytes:
    # json (not orjson) writes integers of any size, as a sender may.
    return json.dumps(document, ensure_ascii=not unicode).encode()


@each_adapter
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_deliveries_read_the_same_from_their_fields_alone(
    adapter: Adapter, data: st.DataObject
) -> None:
    fixture = data.draw(st.sampled_from(adapter.fixtures), label="fixture")
    document = json.loads(fixture.body)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3), label="changes")):
        places = read_places(adapter, fixture, document) if isinstance(document, dict) else [()]
        path = data.draw(st.sampled_from(places), label="path")
        action = data.draw(st.sampled_from(["replace", "drop", "add"]), label="action")
        # A copy: the edge values are shared, and a later change may land inside this one.
        replacement = copy.deepcopy(data.draw(values, label="replacement"))
        target = value_at(document, path)
        if action == "add" and isinstance(target, dict):
            target[data.draw(keys, label="key")] = replacement
        elif not path:
            document = replacement
        elif action == "drop" and isinstance(value_at(document, path[:-1]), dict):
            del value_at(document, path[:-1])[path[-1]]
        else:
            value_at(document, path[:-1])[path[-1]] = replacement
    body = serialise(document, data.draw(st.booleans(), label="unicode"))
    # Mostly the delivery's own event, whose handler reads the most.
    own = st.just(adapter.event(fixture))
    event = data.draw(own | own | own | st.sampled_from(adapter.events), label="event")
    sparse, full = adapter.endings(event, body)
    assert sparse == full


# Bodies whose bytes a JSON encoder would not write: each is decoded in full, as before.
ODD_BODIES = {
    "invalid UTF-8 in a field nobody reads": b'{"x": "\xff\xfe", "action": "opened"}',
    "an encoded surrogate": b'{"x": "\xed\xa0\x80", "action": "opened"}',
    "a lone surrogate escape": b'{"x": "\\ud800", "action": "opened"}',
    "a duplicate key": b'{"repository": {"full_name": "a/b"}, "repository": {"id": 1}, "action": "x"}',
    "a duplicate key, object then not": b'{"repository": {"full_name": "a/b"}, "repository": 5}',
    "nesting deeper than msgspec goes": b'{"x": ' + b"[" * 1020 + b"]" * 1020 + b', "action": "x"}',
    "nesting deeper than orjson goes": b'{"x": ' + b"[" * 1100 + b"]" * 1100 + b"}",
    "an integer of 30 digits where one is read": (
        b'{"action": "completed", "repository": {"full_name": "a/b", "id": 123456789012345678901234567890},'
        b' "check_suite": {"conclusion": "success", "head_sha": "abc1234", "updated_at": null,'
        b' "pull_requests": [{"number": 1, "base": {"repo": {"id": 5}}}]}}'
    ),
    "an array": b"[1, 2]",
    "not JSON": b"{nope",
    "empty": b"",
    "trailing bytes": b'{"action": "x"} x',
    "a byte order mark": b'\xef\xbb\xbf{"action": "x"}',
}


@pytest.mark.parametrize("body", ODD_BODIES.values(), ids=ODD_BODIES.keys())
@each_adapter
def test_odd_bodies_end_as_the_full_parse_ends_them(adapter: Adapter, body: bytes) -> None:
    for event in adapter.events:
        sparse, full = adapter.endings(event, body)
        assert sparse == full, event


def test_a_number_beyond_a_double_in_an_unread_field_is_skipped() -> None:
    # The one difference, documented in payload.Fields: orjson refuses the whole body as
    # unreadable, the fields read are all there, and a verified delivery is not refused.
    body = b'{"zen": 1e400, "hook_id": 1' + b"0" * 400 + b', "repository": {"full_name": "acme/web"}}'
    sparse, full = ADAPTERS[0].endings("star", body)
    assert full[0] == "refused" and full[3].startswith("body is not valid JSON")
    assert sparse == ("ignored", "GitHub event 'star' does not affect environments", "acme/web", "star")


def test_fields_decode_only_the_paths_asked_for() -> None:
    fields = Fields("a.b", "a.c[].d", "e")
    body = b'{"a": {"b": [1, {"x": 2}], "c": [{"d": 1, "z": 2}], "y": 3}, "e": "\\u00e9", "f": {"g": 1}}'
    assert fields.load(body) == {"a": {"b": [1, {"x": 2}], "c": [{"d": 1}]}, "e": "é"}
    assert load_json_object(body)["f"] == {"g": 1}
