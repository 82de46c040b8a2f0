"""Bitbucket Cloud and Data Center inbound adapters: flavour, signature, fixtures, robustness."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import Headers

from providers import bitbucket, bitbucket_cloud, bitbucket_server
from providers.events import BuildStatus, EventType, Provider
from providers.verdicts import Accepted, Ignored, Outcome, Pong
from tests.support.refusals import refusal
from tests.support.senders import hub_signature

FIXTURES = Path(__file__).parents[1] / "fixtures"
RECEIVED_AT = datetime(2024, 3, 20, 8, 30, tzinfo=UTC)
SECRET = b"bitbucket-webhook-secret"
OLD_SECRET = b"the-secret-before-rotation"

FLAVOURS: dict[str, tuple[Provider, Any, str]] = {
    "bitbucket-cloud": (Provider.BITBUCKET_CLOUD, bitbucket_cloud, "X-Request-UUID"),
    "bitbucket-server": (Provider.BITBUCKET_SERVER, bitbucket_server, "X-Request-Id"),
}


def cases(folder: str) -> list[str]:
    return sorted(p.name.removesuffix(".expected.json") for p in (FIXTURES / folder).glob("*.expected.json"))


ALL_CASES = [(folder, name) for folder in FLAVOURS for name in cases(folder)]


def load(folder: str, name: str) -> tuple[dict[str, str], bytes, dict[str, Any]]:
    directory = FIXTURES / folder
    headers = json.loads((directory / f"{name}.headers.json").read_text())
    body = (directory / f"{name}.json").read_bytes()
    expected = json.loads((directory / f"{name}.expected.json").read_text())
    return headers, body, expected


def signed(headers: dict[str, str], body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    return {**headers, "X-Hub-Signature": hub_signature(secret.decode(), body)}


def conclusion(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Accepted):
        event = outcome.event.model_dump(mode="json", exclude={"delivery_id", "received_at"})
        return {"status": "accepted", "event": event}
    if isinstance(outcome, Ignored):
        return {"status": "ignored"}
    return {"status": "pong"}


def cloud_headers(key: str, **extra: str) -> Headers:
    return Headers(
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Bitbucket-Webhooks/2.0",
            "X-Event-Key": key,
            "X-Request-UUID": "4b1e7d2a-9c3f-4e85-a6b0-1d2c3e4f5a6b",
            **extra,
        }
    )


def server_headers(key: str, **extra: str) -> Headers:
    return Headers(
        headers={
            "Content-Type": "application/json; charset=UTF-8",
            "X-Event-Key": key,
            "X-Request-Id": "0f8a6c2e-1b3d-4e5f-8a9b-c0d1e2f3a4b5",
            **extra,
        }
    )


def fixture_json(folder: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / folder / f"{name}.json").read_text())
    return data


def parse_cloud(key: str, data: Any, **extra: str) -> Outcome:
    body = json.dumps(data).encode()
    return bitbucket_cloud.parse(cloud_headers(key, **extra), body, "delivery-1", RECEIVED_AT)


def parse_server(key: str, data: Any, **extra: str) -> Outcome:
    body = json.dumps(data).encode()
    return bitbucket_server.parse(server_headers(key, **extra), body, "delivery-1", RECEIVED_AT)


def accepted(outcome: Outcome) -> Any:
    assert isinstance(outcome, Accepted), outcome
    return outcome.event


# --- fixtures: what Bitbucket sends, and what the gateway concludes ----------------------------------


def test_every_required_fixture_is_present() -> None:
    assert set(cases("bitbucket-cloud")) >= {
        "pullrequest.created",
        "pullrequest.created.fork",
        "pullrequest.updated",
        "pullrequest.fulfilled",
        "pullrequest.rejected",
        "pullrequest.comment_created",
        "pullrequest.approved",
        "repo.commit_status_updated.successful",
        "repo.commit_status_updated.inprogress",
        "repo.push.branch",
        "repo.push.tag",
    }
    assert set(cases("bitbucket-server")) >= {
        "pr.opened",
        "pr.from_ref_updated",
        "pr.merged",
        "pr.declined",
        "pr.deleted",
        "pr.comment.added",
        "pr.modified",
        "pr.reviewer.approved",
        "diagnostics.ping",
        "repo.refs_changed.branch",
        "repo.refs_changed.tag",
    }


@pytest.mark.parametrize(("folder", "name"), ALL_CASES)
def test_fixture_parses_to_expected(folder: str, name: str) -> None:
    provider, module, delivery_header = FLAVOURS[folder]
    raw_headers, body, expected = load(folder, name)
    # Fixtures leave out the delivery id and the signature: the sender adds them per delivery.
    assert delivery_header.lower() not in {h.lower() for h in raw_headers}
    assert "x-hub-signature" not in {h.lower() for h in raw_headers}
    headers = Headers(headers=signed({**raw_headers, delivery_header: f"{name}-delivery"}, body))

    assert bitbucket.flavour(headers) is provider
    bitbucket.verify(headers, body, [SECRET])
    assert module.delivery_id(headers) == f"{name}-delivery"
    outcome = module.parse(headers, body, f"{name}-delivery", RECEIVED_AT)

    assert conclusion(outcome) == expected
    if isinstance(outcome, Accepted):
        assert outcome.event.provider is provider
        assert outcome.event.delivery_id == f"{name}-delivery"
        assert outcome.event.received_at == RECEIVED_AT


@pytest.mark.parametrize(("folder", "name"), ALL_CASES)
def test_fixture_flavour_is_told_by_event_key_alone(folder: str, name: str) -> None:
    # The end-to-end test posts fixtures without delivery ids: the event key must suffice.
    raw_headers, _, _ = load(folder, name)
    only_key = Headers(headers={"X-Event-Key": raw_headers["X-Event-Key"]})
    assert bitbucket.flavour(only_key) is FLAVOURS[folder][0]


@pytest.mark.parametrize("name", cases("bitbucket-server"))
def test_server_fixture_body_names_the_same_event_as_its_header(name: str) -> None:
    raw_headers, body, _ = load("bitbucket-server", name)
    data = json.loads(body)
    if name != "diagnostics.ping":
        assert data["eventKey"] == raw_headers["X-Event-Key"]


def test_cloud_keeps_abbreviated_hashes_as_sent() -> None:
    headers, body, _ = load("bitbucket-cloud", "pullrequest.created")
    event = accepted(bitbucket_cloud.parse(Headers(headers=headers), body, "d", RECEIVED_AT))
    assert event.head_sha == "3d5c9a7e1f20"
    data = fixture_json("bitbucket-cloud", "pullrequest.created")
    data["pullrequest"]["source"]["commit"]["hash"] = "3d5c9a7"
    assert accepted(parse_cloud("pullrequest:created", data)).head_sha == "3d5c9a7"


# --- flavour -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "provider"),
    [
        ("pullrequest:created", Provider.BITBUCKET_CLOUD),
        ("pullrequest:comment_created", Provider.BITBUCKET_CLOUD),
        ("repo:push", Provider.BITBUCKET_CLOUD),
        ("repo:commit_status_updated", Provider.BITBUCKET_CLOUD),
        ("repo:commit_status_created", Provider.BITBUCKET_CLOUD),
        ("repo:fork", Provider.BITBUCKET_CLOUD),
        ("issue:created", Provider.BITBUCKET_CLOUD),
        ("pr:opened", Provider.BITBUCKET_SERVER),
        ("pr:comment:added", Provider.BITBUCKET_SERVER),
        ("pr:reviewer:approved", Provider.BITBUCKET_SERVER),
        ("diagnostics:ping", Provider.BITBUCKET_SERVER),
        ("repo:refs_changed", Provider.BITBUCKET_SERVER),
        ("repo:forked", Provider.BITBUCKET_SERVER),
        ("repo:comment:added", Provider.BITBUCKET_SERVER),
        ("mirror:repo_synchronized", Provider.BITBUCKET_SERVER),
    ],
)
def test_flavour_from_event_key(key: str, provider: Provider) -> None:
    assert bitbucket.flavour(Headers(headers={"X-Event-Key": key})) is provider


def test_event_key_outweighs_an_id_header_a_proxy_may_add() -> None:
    # ingress-nginx adds X-Request-Id to requests it forwards; a Cloud push must stay Cloud.
    headers = Headers(headers={"X-Event-Key": "repo:push", "X-Request-Id": "added-by-proxy"})
    assert bitbucket.flavour(headers) is Provider.BITBUCKET_CLOUD


@pytest.mark.parametrize(
    ("extra", "provider"),
    [
        ({"X-Request-UUID": "4b1e7d2a-9c3f-4e85-a6b0-1d2c3e4f5a6b"}, Provider.BITBUCKET_CLOUD),
        ({"X-Hook-UUID": "8f2c5d1e-4b7a-4e0f-9c3d-6a1b2e7f9d40"}, Provider.BITBUCKET_CLOUD),
        ({"X-Attempt-Number": "2"}, Provider.BITBUCKET_CLOUD),
        ({"User-Agent": "Bitbucket-Webhooks/2.0"}, Provider.BITBUCKET_CLOUD),
        # Cloud's own headers win over an X-Request-Id a proxy added.
        ({"X-Request-UUID": "4b1e7d2a", "X-Request-Id": "from-proxy"}, Provider.BITBUCKET_CLOUD),
        ({"X-Request-Id": "0f8a6c2e-1b3d-4e5f-8a9b-c0d1e2f3a4b5"}, Provider.BITBUCKET_SERVER),
    ],
)
def test_flavour_of_an_unknown_event_key_from_headers(extra: dict[str, str], provider: Provider) -> None:
    headers = Headers(headers={"X-Event-Key": "repo:something_new", **extra})
    assert bitbucket.flavour(headers) is provider


def test_flavour_refuses_when_nothing_tells() -> None:
    error = refusal(lambda: bitbucket.flavour(Headers(headers={"X-Event-Key": "repo:something_new"})))
    assert error.status == 400
    assert "X-Request-UUID" in error.reason and "X-Request-Id" in error.reason


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_event_key_is_refused_naming_the_header(value: str | None) -> None:
    raw = {"X-Request-UUID": "4b1e7d2a"} if value is None else {"X-Event-Key": value}
    headers = Headers(headers=raw)
    for call in (
        lambda: bitbucket.flavour(headers),
        lambda: bitbucket_cloud.parse(headers, b"{}", "d", RECEIVED_AT),
        lambda: bitbucket_server.parse(headers, b"{}", "d", RECEIVED_AT),
    ):
        error = refusal(call)
        assert error.status == 400
        assert "X-Event-Key" in error.reason


def test_delivery_ids() -> None:
    assert bitbucket_cloud.delivery_id(cloud_headers("repo:push")) == "4b1e7d2a-9c3f-4e85-a6b0-1d2c3e4f5a6b"
    assert bitbucket_server.delivery_id(server_headers("pr:opened")) == "0f8a6c2e-1b3d-4e5f-8a9b-c0d1e2f3a4b5"
    # Each flavour reads only its own header.
    assert bitbucket_cloud.delivery_id(Headers(headers={"X-Request-Id": "x"})) is None
    assert bitbucket_server.delivery_id(Headers(headers={"X-Request-UUID": "x"})) is None
    assert bitbucket_cloud.delivery_id(Headers(headers={"X-Request-UUID": "  "})) is None


# --- signature ---------------------------------------------------------------------------------------


BODY = (FIXTURES / "bitbucket-cloud" / "pullrequest.created.json").read_bytes()


def test_signature_good() -> None:
    bitbucket.verify(Headers(headers=signed({}, BODY)), BODY, [SECRET])


def test_signature_matches_the_documented_test_vector() -> None:
    # SPEC 7 (GitHub's documentation): the same sha256=<hex HMAC> scheme Bitbucket uses.
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    bitbucket.verify(
        Headers(headers={"X-Hub-Signature": header}), b"Hello, World!", [b"It's a Secret to Everybody"]
    )


@pytest.mark.parametrize(
    "header",
    [
        hub_signature("some other secret", BODY),
        hub_signature(SECRET.decode(), BODY + b" "),
        "sha256=" + "0" * 64,
        "sha256=not-hex",
    ],
)
def test_signature_bad(header: str) -> None:
    error = refusal(lambda: bitbucket.verify(Headers(headers={"X-Hub-Signature": header}), BODY, [SECRET]))
    assert error.status == 401
    assert "X-Hub-Signature" in error.reason
    assert SECRET.decode() not in error.reason


def test_signature_of_a_tampered_body_is_refused() -> None:
    headers = Headers(headers=signed({}, BODY))
    tampered = BODY.replace(b"Rate-limit", b"Rate-limlt")
    assert refusal(lambda: bitbucket.verify(headers, tampered, [SECRET])).status == 401


@pytest.mark.parametrize("header", [None, "", "sha1=" + "a" * 40, "sha256=", "justhex"])
def test_signature_missing_or_malformed(header: str | None) -> None:
    headers = Headers(headers={} if header is None else {"X-Hub-Signature": header})
    error = refusal(lambda: bitbucket.verify(headers, BODY, [SECRET]))
    assert error.status == 401
    assert "X-Hub-Signature" in error.reason


@pytest.mark.parametrize("sender_secret", [SECRET, OLD_SECRET])
def test_signature_rotated_secrets_either_passes(sender_secret: bytes) -> None:
    headers = Headers(headers=signed({}, BODY, sender_secret))
    bitbucket.verify(headers, BODY, [SECRET, OLD_SECRET])
    bitbucket.verify(headers, BODY, [OLD_SECRET, SECRET])


def test_signature_with_no_configured_secret_is_refused() -> None:
    assert refusal(lambda: bitbucket.verify(Headers(headers=signed({}, BODY)), BODY, [])).status == 401


def test_flavour_modules_verify_like_the_shared_one() -> None:
    headers = Headers(headers=signed({}, BODY))
    bitbucket_cloud.verify(headers, BODY, [SECRET])
    bitbucket_server.verify(headers, BODY, [SECRET])
    assert refusal(lambda: bitbucket_server.verify(headers, BODY, [OLD_SECRET])).status == 401


# --- Bitbucket Cloud: behaviour beyond the fixtures ---------------------------------------------------


def test_cloud_pullrequest_push_is_an_update() -> None:
    data = fixture_json("bitbucket-cloud", "pullrequest.updated")
    event = accepted(parse_cloud("pullrequest:push", data))
    assert event.type is EventType.CHANGE_UPDATED
    assert event.head_sha == "e07b2d4c9a13"


def test_cloud_draft_is_reported() -> None:
    data = fixture_json("bitbucket-cloud", "pullrequest.created")
    data["pullrequest"]["draft"] = True
    assert accepted(parse_cloud("pullrequest:created", data)).draft is True
    del data["pullrequest"]["draft"]
    assert accepted(parse_cloud("pullrequest:created", data)).draft is False


def test_cloud_pull_request_from_a_deleted_fork_counts_as_fork() -> None:
    data = fixture_json("bitbucket-cloud", "pullrequest.rejected")
    data["pullrequest"]["source"]["repository"] = None
    event = accepted(parse_cloud("pullrequest:rejected", data))
    assert event.fork is True
    assert event.merged is False


def test_cloud_close_without_source_commit_is_still_a_close() -> None:
    data = fixture_json("bitbucket-cloud", "pullrequest.fulfilled")
    data["pullrequest"]["source"]["commit"] = None
    event = accepted(parse_cloud("pullrequest:fulfilled", data))
    assert (event.type, event.merged, event.head_sha) == (EventType.CHANGE_CLOSED, True, None)


def test_cloud_opened_without_source_commit_is_refused() -> None:
    data = fixture_json("bitbucket-cloud", "pullrequest.created")
    data["pullrequest"]["source"]["commit"] = None
    error = refusal(lambda: parse_cloud("pullrequest:created", data))
    assert (error.status, error.reason) == (400, "missing field pullrequest.source.commit")


def test_cloud_comment_author_is_the_account_id() -> None:
    data = fixture_json("bitbucket-cloud", "pullrequest.comment_created")
    event = accepted(parse_cloud("pullrequest:comment_created", data))
    assert event.comment.author == data["comment"]["user"]["account_id"]
    assert event.actor == "tferreira"
    del data["comment"]["user"]["account_id"]
    assert (
        accepted(parse_cloud("pullrequest:comment_created", data)).comment.author
        == (data["comment"]["user"]["uuid"])
    )
    data["comment"]["user"] = {"type": "user"}
    data["actor"] = {"display_name": "Ghost"}
    error = refusal(lambda: parse_cloud("pullrequest:comment_created", data))
    assert (error.status, error.reason) == (400, "missing field comment.user.account_id")


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("SUCCESSFUL", BuildStatus.SUCCESS),
        ("FAILED", BuildStatus.FAILURE),
        ("STOPPED", BuildStatus.CANCELLED),
    ],
)
@pytest.mark.parametrize("key", ["repo:commit_status_updated", "repo:commit_status_created"])
def test_cloud_final_build_states(key: str, state: str, status: BuildStatus) -> None:
    data = fixture_json("bitbucket-cloud", "repo.commit_status_updated.successful")
    data["commit_status"]["state"] = state
    event = accepted(parse_cloud(key, data))
    assert (event.type, event.build_status) == (EventType.BUILD_COMPLETED, status)
    assert event.number is None


def test_cloud_build_commit_from_the_commit_link_when_no_commit_object() -> None:
    data = fixture_json("bitbucket-cloud", "repo.commit_status_updated.successful")
    del data["commit_status"]["commit"]
    event = accepted(parse_cloud("repo:commit_status_updated", data))
    assert event.head_sha == "e07b2d4c9a1358f6c2a0d7e41b9f3c8a5d2e6f70"
    del data["commit_status"]["links"]
    error = refusal(lambda: parse_cloud("repo:commit_status_updated", data))
    assert (error.status, error.reason) == (400, "missing field commit_status.commit.hash")


def test_cloud_push_takes_the_last_branch_change() -> None:
    data = fixture_json("bitbucket-cloud", "repo.push.branch")
    first = copy.deepcopy(data["push"]["changes"][0])
    tag = fixture_json("bitbucket-cloud", "repo.push.tag")["push"]["changes"][0]
    deletion = {**copy.deepcopy(first), "new": None, "closed": True}
    other = copy.deepcopy(first)
    other["new"]["name"] = "hotfix/vat"
    other["new"]["target"]["hash"] = "ab" * 20
    data["push"]["changes"] = [first, other, tag, deletion]
    event = accepted(parse_cloud("repo:push", data))
    assert (event.head_ref, event.head_sha) == ("hotfix/vat", "ab" * 20)


def test_cloud_push_of_a_branch_deletion_is_ignored() -> None:
    data = fixture_json("bitbucket-cloud", "repo.push.branch")
    data["push"]["changes"][0]["new"] = None
    outcome = parse_cloud("repo:push", data)
    assert isinstance(outcome, Ignored)
    assert (outcome.repository, outcome.type) == ("northwind/storefront", "repo:push")


def test_cloud_ignored_events_say_why_and_where() -> None:
    outcome = parse_cloud("pullrequest:approved", fixture_json("bitbucket-cloud", "pullrequest.approved"))
    assert outcome == Ignored(
        reason="Bitbucket Cloud event 'pullrequest:approved' does not affect environments",
        repository="northwind/storefront",
        type="pullrequest:approved",
    )
    # An ignored event is not refused for a payload it does not need.
    outcome = parse_cloud("issue:created", {"repository": {"full_name": 7}})
    assert outcome == Ignored(
        reason="Bitbucket Cloud event 'issue:created' does not affect environments",
        repository=None,
        type="issue:created",
    )


# --- Bitbucket Data Center: behaviour beyond the fixtures ---------------------------------------------


def test_server_ping_is_answered_whatever_the_body() -> None:
    assert parse_server("diagnostics:ping", {"test": True}) == Pong()
    headers = server_headers("diagnostics:ping")
    assert bitbucket_server.parse(headers, b"", "d", RECEIVED_AT) == Pong()


def test_server_leaving_draft_is_ready_and_other_edits_are_ignored() -> None:
    data = fixture_json("bitbucket-server", "pr.modified.ready")
    assert accepted(parse_server("pr:modified", data)).type is EventType.CHANGE_READY
    data["pullRequest"]["draft"] = True  # still a draft: only the title changed
    assert isinstance(parse_server("pr:modified", data), Ignored)
    data = fixture_json("bitbucket-server", "pr.modified")
    del data["previousDraft"]  # a Data Center without drafts
    assert isinstance(parse_server("pr:modified", data), Ignored)


def test_server_draft_is_reported() -> None:
    data = fixture_json("bitbucket-server", "pr.opened")
    data["pullRequest"]["draft"] = True
    assert accepted(parse_server("pr:opened", data)).draft is True
    del data["pullRequest"]["draft"]
    assert accepted(parse_server("pr:opened", data)).draft is False


def test_server_fork_without_repository_ids_compares_project_and_slug() -> None:
    data = fixture_json("bitbucket-server", "pr.declined")
    del data["pullRequest"]["fromRef"]["repository"]["id"]
    assert accepted(parse_server("pr:declined", data)).fork is True
    data = fixture_json("bitbucket-server", "pr.opened")
    del data["pullRequest"]["toRef"]["repository"]["id"]
    assert accepted(parse_server("pr:opened", data)).fork is False


def test_server_time_falls_back_to_updated_date() -> None:
    data = fixture_json("bitbucket-server", "pr.opened")
    del data["date"]
    event = accepted(parse_server("pr:opened", data))
    assert event.occurred_at == datetime(2024, 3, 14, 9, 21, 7, 412000, tzinfo=UTC)


def test_server_push_takes_the_last_branch_update_or_creation() -> None:
    data = fixture_json("bitbucket-server", "repo.refs_changed.branch")
    created = {
        "ref": {"id": "refs/heads/feature/gift-cards", "displayId": "feature/gift-cards", "type": "BRANCH"},
        "refId": "refs/heads/feature/gift-cards",
        "fromHash": "0" * 40,
        "toHash": "cd" * 20,
        "type": "ADD",
    }
    deleted = {**created, "refId": "refs/heads/old-branch", "toHash": "0" * 40, "type": "DELETE"}
    data["changes"] = [data["changes"][0], created, data["changes"][1], deleted]
    event = accepted(parse_server("repo:refs_changed", data))
    assert (event.head_ref, event.head_sha) == ("feature/gift-cards", "cd" * 20)


def test_server_push_of_only_deletions_is_ignored() -> None:
    data = fixture_json("bitbucket-server", "repo.refs_changed.branch")
    data["changes"] = [{**data["changes"][0], "type": "DELETE", "toHash": "0" * 40}]
    outcome = parse_server("repo:refs_changed", data)
    assert isinstance(outcome, Ignored)
    assert outcome.repository == "SHOP/checkout-service"


def test_server_ignored_event_names_the_repository() -> None:
    outcome = parse_server("pr:reviewer:approved", fixture_json("bitbucket-server", "pr.reviewer.approved"))
    assert outcome == Ignored(
        reason="Bitbucket Data Center event 'pr:reviewer:approved' does not affect environments",
        repository="SHOP/checkout-service",
        type="pr:reviewer:approved",
    )


# --- refusals ----------------------------------------------------------------------------------------


def test_server_body_replayed_under_another_event_key_is_refused() -> None:
    # The signature does not cover X-Event-Key; the body's own eventKey does.
    data = fixture_json("bitbucket-server", "pr.opened")
    error = refusal(lambda: parse_server("pr:merged", data))
    assert error.status == 400
    assert "eventKey" in error.reason
    del data["eventKey"]  # a payload without its own key is taken at the header's word
    assert accepted(parse_server("pr:merged", data)).merged is True


@pytest.mark.parametrize(
    ("name", "key", "merged"),
    [
        ("pullrequest.created", "pullrequest:fulfilled", True),
        ("pullrequest.created", "pullrequest:rejected", False),
        ("pullrequest.fulfilled", "pullrequest:rejected", False),
    ],
)
def test_cloud_close_event_key_wins_over_the_body_state(name: str, key: str, merged: bool) -> None:
    # The event key alone says what happened: a body whose state lags is still a close.
    event = accepted(parse_cloud(key, fixture_json("bitbucket-cloud", name)))
    assert event.type is EventType.CHANGE_CLOSED
    assert event.merged is merged


@pytest.mark.parametrize("module", [bitbucket_cloud, bitbucket_server])
def test_non_json_content_type_is_refused(module: Any) -> None:
    key = "repo:push" if module is bitbucket_cloud else "pr:opened"
    headers = Headers(headers={"X-Event-Key": key, "Content-Type": "application/x-www-form-urlencoded"})
    assert refusal(lambda: module.parse(headers, b"payload=%7B%7D", "d", RECEIVED_AT)).status == 415


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b""])
def test_malformed_body_is_refused(body: bytes) -> None:
    assert (
        refusal(lambda: bitbucket_cloud.parse(cloud_headers("repo:push"), body, "d", RECEIVED_AT)).status
        == 400
    )
    assert (
        refusal(lambda: bitbucket_server.parse(server_headers("pr:opened"), body, "d", RECEIVED_AT)).status
        == 400
    )


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d["pullrequest"].pop("id"), "missing field pullrequest.id"),
        (lambda d: d["pullrequest"].update(id="42"), "field pullrequest.id must be an integer"),
        (lambda d: d["pullrequest"].update(id=True), "field pullrequest.id must be an integer"),
        (lambda d: d.pop("repository"), "missing field repository"),
        (lambda d: d["pullrequest"].update(updated_on="yesterday"), "not an ISO-8601 time"),
    ],
)
def test_cloud_broken_fields_are_named(mutate: Callable[[dict[str, Any]], object], reason: str) -> None:
    data = fixture_json("bitbucket-cloud", "pullrequest.created")
    mutate(data)
    error = refusal(lambda: parse_cloud("pullrequest:created", data))
    assert error.status == 400
    assert reason in error.reason


def test_cloud_push_changes_are_checked_item_by_item() -> None:
    data = fixture_json("bitbucket-cloud", "repo.push.branch")
    data["push"]["changes"] = ["not an object"]
    assert (
        refusal(lambda: parse_cloud("repo:push", data)).reason
        == "field push.changes.0 must be of type object"
    )
    data = fixture_json("bitbucket-cloud", "repo.push.branch")
    del data["push"]["changes"][0]["new"]["target"]["hash"]
    assert (
        refusal(lambda: parse_cloud("repo:push", data)).reason
        == "missing field push.changes.0.new.target.hash"
    )


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda d: d["pullRequest"]["toRef"]["repository"]["project"].pop("key"),
            "missing field pullRequest.toRef.repository.project.key",
        ),
        (
            lambda d: d["pullRequest"]["fromRef"].pop("latestCommit"),
            "missing field pullRequest.fromRef.latestCommit",
        ),
        (
            lambda d: d["pullRequest"]["links"].update(self=[7]),
            "field pullRequest.links.self.0 must be of type object",
        ),
        (
            lambda d: d.update(date=None, pullRequest={**d["pullRequest"], "updatedDate": 10**18}),
            "field pullRequest.updatedDate ",
        ),
        # In range as written, out of range once turned into UTC.
        (lambda d: d.update(date="9999-12-31T23:59:59-2359"), "field date "),
    ],
)
def test_server_broken_fields_are_named(mutate: Callable[[dict[str, Any]], object], reason: str) -> None:
    data = fixture_json("bitbucket-server", "pr.opened")
    mutate(data)
    error = refusal(lambda: parse_server("pr:opened", data))
    assert error.status == 400
    assert reason in error.reason


def test_server_refs_changed_items_are_checked() -> None:
    data = fixture_json("bitbucket-server", "repo.refs_changed.branch")
    del data["changes"][0]["toHash"]
    assert refusal(lambda: parse_server("repo:refs_changed", data)).reason == "missing field changes.0.toHash"
