"""providers.github: signature checks, and what each recorded delivery normalises to."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.datastructures import Headers

from providers import github
from providers.events import BuildStatus, EventType, Provider
from providers.verdicts import Accepted, Ignored, Pong, Refusal
from tests.support.refusals import refusal

FIXTURES = Path(__file__).parents[1] / "fixtures" / "github"
RECEIVED_AT = datetime(2025, 3, 10, 18, 30, tzinfo=UTC)
DELIVERY = "6f0c2a10-fd8b-11ef-8a5e-3c1d9e0b7a42"
SECRET = b"k8s-ee webhook secret, current"
OLD_SECRET = b"k8s-ee webhook secret, previous"

# Every case the adapter must have a recorded delivery for.
REQUIRED_FIXTURES = {
    "pull_request.opened",
    "pull_request.reopened",
    "pull_request.synchronize",
    "pull_request.ready_for_review",
    "pull_request.closed.merged",
    "pull_request.closed.unmerged",
    "pull_request.opened.fork",
    "pull_request.opened.draft",
    "pull_request.labeled",
    "pull_request.edited",
    "pull_request.assigned",
    "pull_request.review_requested",
    "issue_comment.created",
    "issue_comment.created.issue",
    "issue_comment.edited",
    "workflow_run.completed.success",
    "workflow_run.completed.failure",
    "check_suite.completed",
    "push.branch",
    "push.tag",
    "push.deleted",
    "ping",
    "pull_request.opened.form",
}


def fixture_names() -> list[str]:
    return sorted(p.name.removesuffix(".expected.json") for p in FIXTURES.glob("*.expected.json"))


def raw_body(name: str) -> bytes:
    # A form-encoded delivery is stored as the raw body; everything else as its JSON.
    form = FIXTURES / f"{name}.body"
    return form.read_bytes() if form.exists() else (FIXTURES / f"{name}.json").read_bytes()


def fixture_headers(name: str, **extra: str) -> dict[str, str]:
    headers = json.loads((FIXTURES / f"{name}.headers.json").read_text())
    headers.update(extra)
    return headers


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def parse(headers: dict[str, str], body: bytes) -> Any:
    return github.parse(Headers(headers=headers), body, DELIVERY, RECEIVED_AT)


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def parse_payload(event: str, data: dict[str, Any]) -> Any:
    return parse({"Content-Type": "application/json", "X-GitHub-Event": event}, json.dumps(data).encode())


# --- fixtures ----------------------------------------------------------------------------------


def test_every_required_case_has_a_fixture() -> None:
    assert set(fixture_names()) >= REQUIRED_FIXTURES


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_is_complete(name: str) -> None:
    assert (FIXTURES / f"{name}.json").exists() != (FIXTURES / f"{name}.body").exists()
    headers = fixture_headers(name)
    lowered = {key.lower() for key in headers}
    # Authentication and the delivery id are added by whoever replays the fixture.
    assert not lowered & {"x-hub-signature", "x-hub-signature-256", "x-github-delivery"}
    assert {"content-type", "x-github-event", "user-agent"} <= lowered
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_parses_to_expected(name: str) -> None:
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    body = raw_body(name)
    headers = Headers(headers=fixture_headers(name, **{"X-GitHub-Delivery": DELIVERY}))
    github.verify(Headers(headers={**headers, "X-Hub-Signature-256": sign(body)}), body, [SECRET])
    assert github.delivery_id(headers) == DELIVERY

    outcome = github.parse(headers, body, DELIVERY, RECEIVED_AT)

    if expected["status"] == "accepted":
        assert isinstance(outcome, Accepted), outcome
        event = outcome.event
        assert event.model_dump(mode="json", exclude={"delivery_id", "received_at"}) == expected["event"]
        assert event.delivery_id == DELIVERY
        assert event.received_at == RECEIVED_AT
    elif expected["status"] == "ignored":
        assert isinstance(outcome, Ignored), outcome
        assert outcome.reason
        assert outcome.repository == "northwind-labs/storefront"
        assert outcome.type is not None and outcome.type.startswith(name.split(".")[0])
    else:
        assert expected == {"status": "pong"}
        assert isinstance(outcome, Pong)


def test_the_full_opened_fixture_is_realistically_large() -> None:
    # The whole pull request object, as GitHub sends it, not a trimmed sample.
    assert len(raw_body("pull_request.opened")) > 25_000
    data = load("pull_request.opened")
    assert data["pull_request"]["head"]["repo"]["full_name"] == data["repository"]["full_name"]


def test_ignored_reasons_say_what_was_ignored() -> None:
    outcome = parse(fixture_headers("pull_request.labeled"), raw_body("pull_request.labeled"))
    assert isinstance(outcome, Ignored)
    assert outcome.reason == "pull_request action 'labeled' does not affect environments"
    assert outcome.type == "pull_request.labeled"

    outcome = parse(fixture_headers("issue_comment.created.issue"), raw_body("issue_comment.created.issue"))
    assert isinstance(outcome, Ignored)
    assert outcome.reason == "comment on an issue, not on a pull request"

    outcome = parse(fixture_headers("push.tag"), raw_body("push.tag"))
    assert isinstance(outcome, Ignored)
    assert "refs/tags/v1.8.0" in outcome.reason


# --- verification ------------------------------------------------------------------------------


def test_githubs_documented_test_vector() -> None:
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    github.verify(
        Headers(headers={"X-Hub-Signature-256": header}), b"Hello, World!", [b"It's a Secret to Everybody"]
    )


def test_vector_refused_for_another_body() -> None:
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    refusal(
        lambda: github.verify(
            Headers(headers={"X-Hub-Signature-256": header}),
            b"Hello, World?",
            [b"It's a Secret to Everybody"],
        ),
        401,
    )


def test_signature_over_a_real_delivery() -> None:
    body = raw_body("pull_request.opened")
    github.verify(Headers(headers={"x-hub-signature-256": sign(body)}), body, [SECRET])


def test_signature_hex_case_does_not_matter() -> None:
    body = raw_body("ping")
    algorithm, _, digest = sign(body).partition("=")
    github.verify(Headers(headers={"X-Hub-Signature-256": f"{algorithm}={digest.upper()}"}), body, [SECRET])


@pytest.mark.parametrize("secret", [SECRET, OLD_SECRET])
def test_rotated_secrets_either_passes(secret: bytes) -> None:
    body = raw_body("push.branch")
    github.verify(Headers(headers={"X-Hub-Signature-256": sign(body, secret)}), body, [SECRET, OLD_SECRET])


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing X-Hub-Signature-256 header"),
        ("", "missing X-Hub-Signature-256 header"),
        (
            "sha1=0b5a1f0e6c1d2f3a4b5c6d7e8f9a0b1c2d3e4f5a",
            "X-Hub-Signature-256 must be 'sha256=<hex digest>'",
        ),
        ("757107ea0eb2509fc211221cce984b8a", "X-Hub-Signature-256 must be 'sha256=<hex digest>'"),
        ("sha256=", "X-Hub-Signature-256 must be 'sha256=<hex digest>'"),
        ("sha256=" + "0" * 64, "X-Hub-Signature-256 does not match the payload for any configured secret"),
    ],
)
def test_bad_or_missing_signature_is_refused(header: str | None, reason: str) -> None:
    body = raw_body("pull_request.opened")
    headers = {} if header is None else {"X-Hub-Signature-256": header}
    error = refusal(lambda: github.verify(Headers(headers=headers), body, [SECRET, OLD_SECRET]), 401)
    assert error.reason == reason


def test_signature_with_an_unknown_secret_is_refused() -> None:
    body = raw_body("pull_request.opened")
    headers = Headers(headers={"X-Hub-Signature-256": sign(body, b"guessed")})
    refusal(lambda: github.verify(headers, body, [SECRET]), 401, hiding=[SECRET])


def test_tampered_body_is_refused() -> None:
    body = raw_body("pull_request.opened")
    tampered = body.replace(b'"draft": false', b'"draft": true ', 1)
    assert tampered != body
    with pytest.raises(Refusal):
        github.verify(Headers(headers={"X-Hub-Signature-256": sign(body)}), tampered, [SECRET])


def test_no_secret_configured_is_refused() -> None:
    body = b"{}"
    error = refusal(
        lambda: github.verify(Headers(headers={"X-Hub-Signature-256": sign(body, b"")}), body, []), 401
    )
    assert error.reason == "no GitHub webhook secret is configured"


def test_delivery_id() -> None:
    assert github.delivery_id(Headers(headers={"x-github-delivery": DELIVERY})) == DELIVERY
    assert github.delivery_id(Headers(headers={})) is None
    assert github.delivery_id(Headers(headers={"X-GitHub-Delivery": ""})) is None


# --- refusals ----------------------------------------------------------------------------------


def test_missing_event_header_is_a_400_naming_it() -> None:
    headers = fixture_headers("pull_request.opened")
    del headers["X-GitHub-Event"]
    error = refusal(lambda: parse(headers, raw_body("pull_request.opened")))
    assert (error.status, error.reason) == (400, "missing X-GitHub-Event header")


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x"])
def test_unsupported_content_type_is_a_415(content_type: str) -> None:
    headers = fixture_headers("pull_request.opened", **{"Content-Type": content_type})
    error = refusal(lambda: parse(headers, raw_body("pull_request.opened")))
    assert error.status == 415
    assert "application/json" in error.reason


def test_missing_content_type_is_a_415() -> None:
    headers = fixture_headers("ping")
    del headers["Content-Type"]
    assert refusal(lambda: parse(headers, raw_body("ping"))).status == 415


def test_json_with_charset_is_accepted() -> None:
    headers = fixture_headers("ping", **{"Content-Type": "application/json; charset=utf-8"})
    assert isinstance(parse(headers, raw_body("ping")), Pong)


def test_form_body_without_payload_field_is_a_400() -> None:
    headers = fixture_headers("pull_request.opened.form")
    error = refusal(lambda: parse(headers, urlencode({"data": "{}"}).encode()))
    assert (error.status, error.reason) == (400, "form body has no 'payload' field")


def test_form_body_matches_its_json_form() -> None:
    # The form fixture carries the same kind of payload as a JSON delivery would.
    body = raw_body("pull_request.opened.form")
    assert body.startswith(b"payload=%7B")
    outcome = parse(fixture_headers("pull_request.opened.form"), body)
    assert isinstance(outcome, Accepted)
    assert outcome.event.type is EventType.CHANGE_OPENED


def test_invalid_json_is_a_400() -> None:
    error = refusal(lambda: parse(fixture_headers("pull_request.opened"), b'{"action": "opened",'))
    assert error.status == 400
    assert error.reason.startswith("body is not valid JSON")


def test_json_array_is_a_400() -> None:
    error = refusal(lambda: parse(fixture_headers("pull_request.opened"), b"[]"))
    assert (error.status, error.reason) == (400, "body must be a JSON object, got list")


def test_missing_nested_field_is_named_by_its_path() -> None:
    data = load("pull_request.opened")
    del data["pull_request"]["head"]["sha"]
    error = refusal(lambda: parse(fixture_headers("pull_request.opened"), json.dumps(data).encode()))
    assert (error.status, error.reason) == (400, "missing field pull_request.head.sha")


def test_wrong_type_is_named_by_its_path() -> None:
    data = load("pull_request.synchronize")
    data["pull_request"]["number"] = "42"
    error = refusal(lambda: parse(fixture_headers("pull_request.synchronize"), json.dumps(data).encode()))
    assert (error.status, error.reason) == (400, "field pull_request.number must be an integer")


def test_non_positive_number_is_a_400() -> None:
    data = load("pull_request.opened")
    data["pull_request"]["number"] = 0
    error = refusal(lambda: parse(fixture_headers("pull_request.opened"), json.dumps(data).encode()))
    assert (error.status, error.reason) == (400, "field pull_request.number must be a positive integer")


def test_bad_timestamp_is_a_400_naming_the_field() -> None:
    data = load("pull_request.opened")
    data["pull_request"]["updated_at"] = "yesterday"
    error = refusal(lambda: parse(fixture_headers("pull_request.opened"), json.dumps(data).encode()))
    assert error.status == 400
    assert error.reason.startswith("field pull_request.updated_at is not an ISO-8601 time")


def test_missing_repository_is_a_400() -> None:
    data = load("push.branch")
    del data["repository"]
    error = refusal(lambda: parse(fixture_headers("push.branch"), json.dumps(data).encode()))
    assert (error.status, error.reason) == (400, "missing field repository")


# --- pull_request ------------------------------------------------------------------------------


def test_deleted_fork_counts_as_fork() -> None:
    data = load("pull_request.opened.fork")
    data["pull_request"]["head"]["repo"] = None
    outcome = parse_payload("pull_request", data)
    assert isinstance(outcome, Accepted)
    assert outcome.event.fork is True


def test_same_repository_in_other_case_is_not_a_fork() -> None:
    data = load("pull_request.opened")
    data["pull_request"]["head"]["repo"]["full_name"] = "Northwind-Labs/Storefront"
    outcome = parse_payload("pull_request", data)
    assert isinstance(outcome, Accepted)
    assert outcome.event.fork is False


def test_closed_without_merged_flag_falls_back_to_merged_at() -> None:
    data = load("pull_request.closed.merged")
    del data["pull_request"]["merged"]
    outcome = parse_payload("pull_request", data)
    assert isinstance(outcome, Accepted)
    assert outcome.event.merged is True
    assert outcome.event.occurred_at == datetime(2025, 3, 13, 11, 18, 51, tzinfo=UTC)


@pytest.mark.parametrize(
    "action", ["converted_to_draft", "unlabeled", "locked", "auto_merge_enabled", "milestoned", "enqueued"]
)
def test_other_pull_request_actions_are_ignored(action: str) -> None:
    data = load("pull_request.assigned")
    data["action"] = action
    outcome = parse_payload("pull_request", data)
    assert isinstance(outcome, Ignored)
    assert outcome.type == f"pull_request.{action}"
    assert action in outcome.reason


# --- issue_comment -----------------------------------------------------------------------------


def test_deleted_comment_is_ignored() -> None:
    data = load("issue_comment.created")
    data["action"] = "deleted"
    outcome = parse_payload("issue_comment", data)
    assert isinstance(outcome, Ignored)
    assert outcome.type == "issue_comment.deleted"


def test_comment_id_is_text_and_author_is_the_commenter() -> None:
    outcome = parse(fixture_headers("issue_comment.created"), raw_body("issue_comment.created"))
    assert isinstance(outcome, Accepted)
    comment = outcome.event.comment
    assert comment is not None
    assert (comment.id, comment.author) == ("2712094388", "devin-liu")
    assert outcome.event.head_sha is None


def test_comment_without_id_is_a_400() -> None:
    data = load("issue_comment.created")
    del data["comment"]["id"]
    error = refusal(lambda: parse(fixture_headers("issue_comment.created"), json.dumps(data).encode()))
    assert (error.status, error.reason) == (400, "missing field comment.id")


# --- builds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conclusion", "status"),
    [
        ("success", BuildStatus.SUCCESS),
        ("neutral", BuildStatus.SUCCESS),
        ("failure", BuildStatus.FAILURE),
        ("timed_out", BuildStatus.FAILURE),
        ("startup_failure", BuildStatus.FAILURE),
        ("action_required", BuildStatus.FAILURE),
        ("cancelled", BuildStatus.CANCELLED),
        ("skipped", BuildStatus.CANCELLED),
        ("stale", BuildStatus.CANCELLED),
        (None, BuildStatus.PENDING),
    ],
)
@pytest.mark.parametrize("kind", ["workflow_run", "check_suite"])
def test_build_conclusions(kind: str, conclusion: str | None, status: BuildStatus) -> None:
    data = load("workflow_run.completed.success" if kind == "workflow_run" else "check_suite.completed")
    data[kind]["conclusion"] = conclusion
    outcome = parse_payload(kind, data)
    assert isinstance(outcome, Accepted)
    assert outcome.event.type is EventType.BUILD_COMPLETED
    assert outcome.event.build_status is status
    assert outcome.event.number == 42


def test_unknown_conclusion_is_ignored() -> None:
    data = load("workflow_run.completed.success")
    data["workflow_run"]["conclusion"] = "exploded"
    outcome = parse_payload("workflow_run", data)
    assert isinstance(outcome, Ignored)
    assert "exploded" in outcome.reason


@pytest.mark.parametrize(
    ("kind", "action"),
    [
        ("workflow_run", "requested"),
        ("workflow_run", "in_progress"),
        ("check_suite", "requested"),
        ("check_suite", "rerequested"),
    ],
)
def test_unfinished_builds_are_ignored(kind: str, action: str) -> None:
    data = load("workflow_run.completed.success" if kind == "workflow_run" else "check_suite.completed")
    data["action"] = action
    outcome = parse_payload(kind, data)
    assert isinstance(outcome, Ignored)
    assert outcome.type == f"{kind}.{action}"


def test_build_of_a_fork_pull_request() -> None:
    # GitHub sends an empty pull_requests list and a head repository of the fork.
    data = load("workflow_run.completed.success")
    run = data["workflow_run"]
    run["pull_requests"] = []
    run["head_branch"] = None
    run["head_repository"]["full_name"] = "jpatel-dev/storefront"
    outcome = parse_payload("workflow_run", data)
    assert isinstance(outcome, Accepted)
    event = outcome.event
    assert (event.number, event.fork, event.head_ref) == (None, True, None)


def test_pull_request_of_another_repository_is_not_this_builds_number() -> None:
    data = load("workflow_run.completed.success")
    foreign = copy.deepcopy(data["workflow_run"]["pull_requests"][0])
    foreign["number"] = 7
    foreign["base"]["repo"]["id"] = 1234
    data["workflow_run"]["pull_requests"] = [foreign]
    outcome = parse_payload("workflow_run", data)
    assert isinstance(outcome, Accepted)
    assert outcome.event.number is None

    data["workflow_run"]["pull_requests"].append(
        load("workflow_run.completed.success")["workflow_run"]["pull_requests"][0]
    )
    outcome = parse_payload("workflow_run", data)
    assert isinstance(outcome, Accepted)
    assert outcome.event.number == 42


def test_check_suite_from_fork_pull_request_entry() -> None:
    data = load("check_suite.completed")
    data["check_suite"]["pull_requests"][0]["head"]["repo"]["id"] = 931024577
    outcome = parse_payload("check_suite", data)
    assert isinstance(outcome, Accepted)
    assert outcome.event.fork is True


def test_malformed_pull_request_entry_is_a_400() -> None:
    data = load("workflow_run.completed.success")
    data["workflow_run"]["pull_requests"] = ["42"]
    error = refusal(
        lambda: parse(
            {"Content-Type": "application/json", "X-GitHub-Event": "workflow_run"}, json.dumps(data).encode()
        )
    )
    assert (error.status, error.reason) == (400, "field workflow_run.pull_requests[0] must be of type object")


# --- push --------------------------------------------------------------------------------------


def test_push_with_null_after_but_no_deleted_flag_is_ignored() -> None:
    data = load("push.deleted")
    del data["deleted"]
    outcome = parse_payload("push", data)
    assert isinstance(outcome, Ignored)
    assert "deleted branch" in outcome.reason


def test_push_time_falls_back_to_the_head_commit() -> None:
    data = load("push.branch")
    del data["repository"]["pushed_at"]
    outcome = parse_payload("push", data)
    assert isinstance(outcome, Accepted)
    # "2025-03-10T17:46:21+01:00" in UTC.
    assert outcome.event.occurred_at == datetime(2025, 3, 10, 16, 46, 21, tzinfo=UTC)


def test_push_time_as_text_is_read_too() -> None:
    data = load("push.branch")
    data["repository"]["pushed_at"] = "2025-03-10T16:46:35Z"
    outcome = parse_payload("push", data)
    assert isinstance(outcome, Accepted)
    assert outcome.event.occurred_at == datetime(2025, 3, 10, 16, 46, 35, tzinfo=UTC)


def test_push_actor_falls_back_to_the_pusher() -> None:
    data = load("push.branch")
    del data["sender"]
    outcome = parse_payload("push", data)
    assert isinstance(outcome, Accepted)
    assert outcome.event.actor == "mara-okafor"
    assert outcome.event.provider is Provider.GITHUB
    assert outcome.event.number is None


def test_branch_push_keeps_slashes_in_the_branch() -> None:
    outcome = parse(fixture_headers("push.branch"), raw_body("push.branch"))
    assert isinstance(outcome, Accepted)
    assert outcome.event.head_ref == "feature/gift-card-checkout"


# --- other events ------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["star", "issues", "pull_request_review", "deployment_status", "release"])
def test_other_events_are_ignored_with_repository(event: str) -> None:
    data = load("ping")
    outcome = parse_payload(event, data)
    assert isinstance(outcome, Ignored)
    assert outcome.type == event
    assert outcome.repository == "northwind-labs/storefront"
    assert event in outcome.reason


def test_unknown_event_without_repository_is_still_ignored() -> None:
    outcome = parse_payload("installation", {"action": "created", "repository": {"full_name": 12}})
    assert isinstance(outcome, Ignored)
    assert outcome.repository is None


def test_organization_ping_without_repository_is_a_pong() -> None:
    data = load("ping")
    del data["repository"]
    data["hook"]["type"] = "Organization"
    assert isinstance(parse_payload("ping", data), Pong)


@pytest.mark.parametrize("value", [-1, "3", 2.5, True, None, {"n": 1}])
def test_a_comment_count_that_is_no_count_is_left_out_not_refused(value: object) -> None:
    # The count is only a hint for the reporter: a delivery is never refused for it.
    data = load("pull_request.opened")
    data["pull_request"]["comments"] = value
    outcome = parse_payload("pull_request", data)
    assert isinstance(outcome, Accepted) and outcome.event.comments is None
    assert "comments" not in outcome.event.model_dump(mode="json")


def test_the_comment_count_is_passed_on() -> None:
    data = load("pull_request.opened")
    data["pull_request"]["comments"] = 4
    outcome = parse_payload("pull_request", data)
    assert isinstance(outcome, Accepted) and outcome.event.comments == 4
