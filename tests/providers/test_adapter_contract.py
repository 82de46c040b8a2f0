"""The contract every inbound adapter keeps, whatever arrives.

`parse` answers an Outcome (Accepted, Ignored or Pong) or raises a Refusal with a 400 or 415
and a reason, and never anything else; a body sent as JSON is never a 415. `verify` passes or
raises Refusal(401). Each adapter is fuzzed in its own vocabulary (its event names, the keys
and values of its payloads) and through its own recorded deliveries, mutated.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from providers import bitbucket_cloud, bitbucket_server, generic, github, gitlab
from providers.verdicts import Accepted, Ignored, Outcome, Pong, Refusal
from tests.support.senders import Fixture, load_fixtures

RECEIVED_AT = datetime(2025, 3, 10, 18, 30, tzinfo=UTC)
NOW = RECEIVED_AT.timestamp()
SECRET = b"contract-webhook-secret"
WHSEC = b"whsec_" + base64.b64encode(hashlib.sha256(b"contract").digest())

# A body sent as application/json is read as JSON: refusing it can only be a 400.
JSON_CONTENT_TYPES = ["application/json", "application/json; charset=UTF-8"]
CONTENT_TYPES = [
    *JSON_CONTENT_TYPES,
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/vnd.x+json",
    "",
]

printable = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a decoded JSON document, the document itself (`()`) first."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*prefix, index))


def vocabulary(fixtures: list[Fixture]) -> tuple[list[str], list[str]]:
    """The keys, and the short text values, of the recorded deliveries' bodies."""
    keys: set[str] = set()
    words: set[str] = set()
    for fixture in fixtures:
        data = json.loads(fixture.body)
        for path in paths(data):
            if path and isinstance(path[-1], str):
                keys.add(path[-1])
            value = value_at(data, path)
            if isinstance(value, str) and len(value) <= 40:
                words.add(value)
    return sorted(keys), sorted(words)


def value_at(data: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        data = data[step]
    return data


@dataclass(frozen=True)
class Adapter:
    name: str
    parse: Callable[[Headers, bytes, str, datetime], Outcome]
    # `verify` with credentials of every kind the adapter takes configured.
    verify: Callable[[Headers, bytes], None]
    event_header: str | None
    events: list[str]  # event names it knows (and a few it does not)
    keys: list[str]  # the keys of its payloads
    words: list[str]  # text values its payloads carry
    fixtures: list[Fixture]  # recorded deliveries to mutate
    credential_headers: list[str]
    # Keys the mutations leave alone, so that they land on what the adapter reads (GitHub's
    # deliveries are mostly links it never looks at).
    unread: Callable[[Any], bool] = field(default=lambda key: False)

    def changeable(self, document: Any) -> list[tuple[Any, ...]]:
        """The places in `document` a change may land on."""
        return [path for path in paths(document) if not path or not self.unread(path[-1])]

    @cached_property
    def places(self) -> dict[str, list[tuple[Any, ...]]]:
        return {fixture.name: self.changeable(json.loads(fixture.body)) for fixture in self.fixtures}

    def headers(self, event: str, content_type: str) -> Headers:
        headers = {"Content-Type": content_type}
        if self.event_header is not None:
            headers[self.event_header] = event
        return Headers(headers=headers)

    @cached_property
    def scalars(self) -> st.SearchStrategy[Any]:
        return (
            st.none()
            | st.booleans()
            | st.integers(min_value=-(2**70), max_value=2**70)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=20)
            | st.sampled_from(self.words)
        )

    @cached_property
    def values(self) -> st.SearchStrategy[Any]:
        """JSON values: scalars with the adapter's words, lists, and objects with its keys."""
        keys = st.sampled_from(self.keys) | st.text(max_size=12)
        return st.recursive(
            self.scalars,
            lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
            max_leaves=30,
        )

    @cached_property
    def bodies(self) -> st.SearchStrategy[Any]:
        """Whole bodies: objects of its keys, nested too (so that parsing reaches past the first
        field), and objects and other JSON values with any keys."""
        shaped = st.recursive(
            self.scalars,
            lambda inner: st.dictionaries(st.sampled_from(self.keys), inner, max_size=8),
            max_leaves=40,
        )
        top = st.dictionaries(st.sampled_from(self.keys) | st.text(max_size=8), self.values, max_size=9)
        return shaped | top | self.values


def fixtures(provider: str, names: list[str] | None = None) -> list[Fixture]:
    found = load_fixtures(provider)
    return [f for f in found if f.name in names] if names else found


GITHUB_KEYS = [
    *["action", "pull_request", "issue", "comment", "workflow_run", "check_suite", "head", "base"],
    *["repo", "repository", "full_name", "number", "sha", "ref", "after", "deleted", "merged"],
    *["merged_at", "draft", "conclusion", "head_sha", "head_branch", "pull_requests", "id", "user"],
    *["login", "body", "sender", "updated_at", "closed_at", "created_at", "pushed_at"],
    *["head_repository", "head_commit", "timestamp"],
]
GITHUB_ACTIONS = [
    "opened",
    "reopened",
    "synchronize",
    "ready_for_review",
    "closed",
    "created",
    "completed",
    "labeled",
]
GITLAB_KEYS = [
    *["object_attributes", "action", "iid", "id", "last_commit", "source_branch", "target_branch"],
    *["project", "path_with_namespace", "changes", "draft", "work_in_progress", "previous", "current"],
    *["title", "oldrev", "state", "noteable_type", "note", "merge_request", "user", "username"],
    *["status", "ref", "sha", "tag", "after", "object_kind", "updated_at", "created_at", "finished_at"],
    *["source_project_id", "target_project_id", "system", "url", "user_username"],
]
GITLAB_WORDS = [
    *["open", "update", "merge", "close", "reopen", "MergeRequest", "success", "failed", "skipped"],
    *["refs/heads/main", "refs/merge-requests/1/head", "merge_request", "push", "create", "0" * 40],
    *["2024-05-14 09:12:44 UTC", "Draft: x"],
]
BITBUCKET_FIXTURES = fixtures("bitbucket-cloud") + fixtures("bitbucket-server")
BITBUCKET_KEYS, BITBUCKET_WORDS = vocabulary(BITBUCKET_FIXTURES)
# Either product's event keys go to either adapter: a delivery may claim to be anything.
BITBUCKET_EVENTS = [
    *bitbucket_cloud._HANDLERS,
    "pullrequest:approved",
    "issue:created",
    *bitbucket_server._HANDLERS,
    "diagnostics:ping",
    "pr:reviewer:approved",
]
GENERIC_KEYS = ["action", "repository", "number", "sha", "branch", "image", "config", "occurred_at"]


def bitbucket(name: str, module: Any) -> Adapter:
    """Cloud or Data Center: the same signature, event keys from either, its own deliveries."""
    return Adapter(
        name=name,
        parse=module.parse,
        verify=lambda headers, body: module.verify(headers, body, [SECRET]),
        event_header="X-Event-Key",
        events=BITBUCKET_EVENTS,
        keys=BITBUCKET_KEYS,
        words=BITBUCKET_WORDS,
        fixtures=fixtures(name),
        credential_headers=["X-Hub-Signature"],
    )


ADAPTERS = [
    Adapter(
        name="github",
        parse=github.parse,
        verify=lambda headers, body: github.verify(headers, body, [SECRET]),
        event_header="X-GitHub-Event",
        events=["pull_request", "issue_comment", "workflow_run", "check_suite", "push", "ping", "star"],
        keys=GITHUB_KEYS,
        words=[*GITHUB_ACTIONS, "refs/heads/main", "refs/tags/v1", "0" * 40, "2025-03-10T14:02:11Z"],
        # The smaller delivery of every event kind: the larger ones have the same parse-relevant
        # structure, and many more links.
        fixtures=fixtures(
            "github",
            [
                "pull_request.opened.fork",
                "issue_comment.created",
                "workflow_run.completed.success",
                "check_suite.completed",
                "push.branch",
                "ping",
            ],
        ),
        credential_headers=["X-Hub-Signature-256"],
        unread=lambda key: "_url" in str(key),
    ),
    Adapter(
        name="gitlab",
        parse=gitlab.parse,
        verify=lambda headers, body: gitlab.verify(headers, body, [SECRET], [WHSEC], NOW),
        event_header="X-Gitlab-Event",
        events=[
            *["Merge Request Hook", "Note Hook", "Confidential Note Hook", "Pipeline Hook", "Push Hook"],
            *["Tag Push Hook", "System Hook", "Job Hook", "Issue Hook"],
        ],
        keys=GITLAB_KEYS,
        words=GITLAB_WORDS,
        fixtures=fixtures("gitlab"),
        credential_headers=["X-Gitlab-Token", "webhook-id", "webhook-timestamp", "webhook-signature"],
    ),
    bitbucket("bitbucket-cloud", bitbucket_cloud),
    bitbucket("bitbucket-server", bitbucket_server),
    Adapter(
        name="generic",
        parse=generic.parse,
        verify=lambda headers, body: generic.verify(headers, body, [SECRET], [WHSEC], NOW),
        event_header=None,  # what happened is the body's `action`
        events=[""],
        keys=GENERIC_KEYS,
        words=["deploy", "destroy", "wake", "a/b", "abcdef1", "main", "2025-03-14T09:26:41Z"],
        fixtures=fixtures("generic"),
        credential_headers=["Authorization", "webhook-id", "webhook-timestamp", "webhook-signature"],
    ),
]

each_adapter = pytest.mark.parametrize("adapter", ADAPTERS, ids=[a.name for a in ADAPTERS])


def test_every_adapter_has_fixtures_to_mutate() -> None:
    assert all(adapter.fixtures for adapter in ADAPTERS)
    assert len(ADAPTERS[0].fixtures) == 6


def sent_as_json(headers: Headers) -> bool:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower() == "application/json"


def outcome_or_client_error(adapter: Adapter, headers: Headers, body: bytes) -> None:
    try:
        outcome = adapter.parse(headers, body, "delivery-1", RECEIVED_AT)
    except Refusal as refused:
        assert refused.reason
        if sent_as_json(headers):
            assert refused.status == 400, refused.reason
        else:
            assert refused.status in (400, 415), refused.reason
    else:
        assert isinstance(outcome, Accepted | Ignored | Pong)


@each_adapter
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_json_bodies_only_give_outcomes_or_client_errors(
    adapter: Adapter, data: st.DataObject
) -> None:
    event = data.draw(st.sampled_from(adapter.events), label="event")
    content_type = data.draw(st.sampled_from(JSON_CONTENT_TYPES), label="content type")
    body = data.draw(adapter.bodies, label="body")
    outcome_or_client_error(adapter, adapter.headers(event, content_type), json.dumps(body).encode())


@each_adapter
@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_random_bytes_only_give_outcomes_or_client_errors(adapter: Adapter, data: st.DataObject) -> None:
    event = data.draw(st.sampled_from(adapter.events) | printable, label="event")
    content_type = data.draw(st.sampled_from(CONTENT_TYPES), label="content type")
    body = data.draw(st.binary(max_size=200), label="body")
    outcome_or_client_error(adapter, adapter.headers(event, content_type), body)


@each_adapter
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_fixtures_only_give_outcomes_or_client_errors(adapter: Adapter, data: st.DataObject) -> None:
    fixture = data.draw(st.sampled_from(adapter.fixtures), label="fixture")
    document = json.loads(fixture.body)
    places = adapter.places[fixture.name]
    # One to three changes: a value replaced or dropped, or the whole body replaced.
    for change in range(data.draw(st.integers(min_value=1, max_value=3), label="changes")):
        if change:
            places = adapter.changeable(document)
        path = data.draw(st.sampled_from(places), label="path")
        replacement = data.draw(adapter.values, label="replacement")
        if not path:
            document = replacement
            continue
        parent = value_at(document, path[:-1])
        if isinstance(parent, dict) and data.draw(st.booleans(), label="drop"):
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement
    outcome_or_client_error(adapter, Headers(headers=fixture.headers), json.dumps(document).encode())


credentials = (
    printable
    | st.builds(
        lambda prefix, rest: prefix + rest,
        st.sampled_from(["sha256=", "sha1=", "v1,", "v1,a v1,", "Bearer ", "bearer ", "Basic ", "whsec_"]),
        printable,
    )
    | st.binary(min_size=32, max_size=32).map(lambda key: "v1," + base64.b64encode(key).decode())
    | st.binary(min_size=32, max_size=32).map(lambda digest: "sha256=" + digest.hex())
    | st.integers(min_value=int(NOW) - 600, max_value=int(NOW) + 600).map(str)
    | st.just(SECRET.decode())
)


@each_adapter
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_verify_only_passes_or_refuses_with_401(adapter: Adapter, data: st.DataObject) -> None:
    headers = data.draw(
        st.dictionaries(st.sampled_from(adapter.credential_headers), credentials), label="headers"
    )
    body = data.draw(st.binary(max_size=64), label="body")
    try:
        adapter.verify(Headers(headers=headers), body)
    except Refusal as refused:
        assert refused.status == 401
