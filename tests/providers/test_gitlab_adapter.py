"""The GitLab adapter: fixtures against expected outcomes, proving a delivery, robustness."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import Headers

from providers import gitlab
from providers.events import BuildStatus, EventType
from providers.verdicts import Accepted, Ignored, Pong, Refusal
from tests.support.refusals import refusal

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gitlab"
RECEIVED = datetime(2024, 5, 14, 9, 12, 45, tzinfo=UTC)
NOW = 1_715_677_965.0  # 2024-05-14T09:12:45Z


def fixture_names() -> list[str]:
    return sorted(
        path.name.removesuffix(".json")
        for path in FIXTURES.glob("*.json")
        if not path.name.endswith((".headers.json", ".expected.json"))
    )


def load(name: str) -> tuple[dict[str, str], bytes, dict[str, Any]]:
    headers = json.loads((FIXTURES / f"{name}.headers.json").read_text())
    body = (FIXTURES / f"{name}.json").read_bytes()
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    return headers, body, expected


def parse(headers: dict[str, str], body: bytes) -> Any:
    return gitlab.parse(Headers(headers=headers), body, "delivery-1", RECEIVED)


def parse_fixture(name: str, edit: Any = None, **header_changes: str) -> Any:
    headers, body, _ = load(name)
    headers.update(header_changes)
    if edit is not None:
        data = json.loads(body)
        edit(data)
        body = json.dumps(data).encode()
    return parse(headers, body)


# -- fixtures ---------------------------------------------------------------------


def test_every_required_fixture_is_present() -> None:
    required = set(
        [
            "merge_request.open",
            "merge_request.open.subgroup",
            "merge_request.open.fork",
            "merge_request.open.draft",
            "merge_request.reopen",
            "merge_request.update.push",
            "merge_request.update.title",
            "merge_request.update.ready",
            "merge_request.close",
            "merge_request.merge",
            "merge_request.approved",
            "note.merge_request",
            "note.commit",
            "note.issue",
            "pipeline.success",
            "pipeline.failed",
            "pipeline.running",
            "push.branch",
            "push.deleted",
            "tag_push",
        ]
    )
    assert required <= set(fixture_names())


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_parses_to_expected(name: str) -> None:
    headers, body, expected = load(name)
    outcome = parse(headers, body)
    if expected["status"] == "accepted":
        assert isinstance(outcome, Accepted), outcome
        assert outcome.event.delivery_id == "delivery-1"
        assert outcome.event.received_at == RECEIVED
        got = outcome.event.model_dump(mode="json", exclude={"delivery_id", "received_at"})
        assert got == expected["event"]
    elif expected["status"] == "ignored":
        assert isinstance(outcome, Ignored), outcome
        assert outcome.reason
        assert outcome.repository == "acme/web"
        assert outcome.type
    else:
        assert expected["status"] == "pong"
        assert isinstance(outcome, Pong)


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_headers_leave_authentication_and_delivery_id_to_the_tests(name: str) -> None:
    headers = {key.lower() for key in load(name)[0]}
    assert headers.isdisjoint(
        {
            "x-gitlab-token",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "idempotency-key",
            "x-gitlab-webhook-uuid",
        }
    )
    assert {"content-type", "x-gitlab-event", "user-agent"} <= headers


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("merge_request.update.title", ["!42", "without new commits", "title"]),
        ("merge_request.approved", ["'approved'"]),
        ("note.commit", ["Commit"]),
        ("note.issue", ["Issue"]),
        ("pipeline.running", ["'running'"]),
        ("push.deleted", ["'feature/login-form'", "deleted"]),
        ("tag_push", ["tag"]),
    ],
)
def test_ignored_fixtures_say_why(name: str, words: list[str]) -> None:
    outcome = parse_fixture(name)
    assert isinstance(outcome, Ignored)
    for word in words:
        assert word in outcome.reason


# -- merge requests ---------------------------------------------------------------


def test_number_is_the_project_scoped_iid_not_the_global_id() -> None:
    outcome = parse_fixture("merge_request.open")
    assert outcome.event.number == 42
    assert json.loads(load("merge_request.open")[1])["object_attributes"]["id"] == 1187


def test_both_gitlab_time_formats_are_read() -> None:
    assert parse_fixture("merge_request.open").event.occurred_at == datetime(
        2024, 5, 14, 9, 12, 44, tzinfo=UTC
    )
    iso = parse_fixture("merge_request.open.subgroup").event.occurred_at
    assert iso == datetime(2024, 6, 3, 14, 5, 11, 482000, tzinfo=UTC)


def test_an_unreadable_time_is_a_400_naming_the_field() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["object_attributes"]["updated_at"] = "yesterday"

    refused = refusal(lambda: parse_fixture("merge_request.open", edit), 400)
    assert "object_attributes.updated_at" in refused.reason


def test_older_gitlab_ready_via_work_in_progress_change() -> None:
    def edit(data: dict[str, Any]) -> None:
        attrs = data["object_attributes"]
        del attrs["draft"]
        attrs["work_in_progress"] = False
        data["changes"] = {"work_in_progress": {"previous": True, "current": False}}

    outcome = parse_fixture("merge_request.update.ready", edit)
    assert outcome.event.type is EventType.CHANGE_READY
    assert outcome.event.draft is False


def test_older_gitlab_ready_via_title_prefix_only() -> None:
    def edit(data: dict[str, Any]) -> None:
        attrs = data["object_attributes"]
        del attrs["draft"]
        del attrs["work_in_progress"]
        data["changes"] = {"title": {"previous": "WIP: Add search API", "current": "Add search API"}}

    assert parse_fixture("merge_request.update.ready", edit).event.type is EventType.CHANGE_READY


def test_a_draft_that_stays_a_draft_is_not_ready() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["object_attributes"]["draft"] = True
        data["changes"] = {"title": {"previous": "Draft: Add search API", "current": "[Draft] Add search"}}

    outcome = parse_fixture("merge_request.update.ready", edit)
    assert isinstance(outcome, Ignored)


def test_marking_a_change_as_draft_again_is_ignored() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["object_attributes"]["draft"] = True
        data["changes"] = {"draft": {"previous": False, "current": True}}

    assert isinstance(parse_fixture("merge_request.update.ready", edit), Ignored)


def test_update_with_new_commits_to_a_merged_change_is_ignored() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["object_attributes"]["state"] = "merged"

    outcome = parse_fixture("merge_request.update.push", edit)
    assert isinstance(outcome, Ignored)
    assert "merged" in outcome.reason


@pytest.mark.parametrize("action", ["unapproved", "approval", "unapproval", "some_future_action"])
def test_other_merge_request_actions_are_ignored(action: str) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["object_attributes"]["action"] = action

    outcome = parse_fixture("merge_request.approved", edit)
    assert isinstance(outcome, Ignored)
    assert outcome.type == f"Merge Request Hook/{action}"


def test_a_close_without_last_commit_is_still_accepted() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["object_attributes"]["last_commit"] = None

    outcome = parse_fixture("merge_request.close", edit)
    assert outcome.event.type is EventType.CHANGE_CLOSED
    assert outcome.event.head_sha is None


@pytest.mark.parametrize(
    ("name", "path", "missing"),
    [
        ("merge_request.open", ("object_attributes", "iid"), "object_attributes.iid"),
        ("merge_request.open", ("object_attributes", "last_commit"), "object_attributes.last_commit"),
        ("merge_request.open", ("project",), "project"),
        ("merge_request.open", ("object_attributes", "action"), "object_attributes.action"),
        ("note.merge_request", ("merge_request",), "merge_request"),
        ("pipeline.success", ("object_attributes", "sha"), "object_attributes.sha"),
        ("push.branch", ("after",), "after"),
    ],
)
def test_missing_fields_are_a_400_naming_them(name: str, path: tuple[str, ...], missing: str) -> None:
    def edit(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    refused = refusal(lambda: parse_fixture(name, edit), 400)
    assert f"missing field {missing}" in refused.reason


def test_a_blank_repository_path_is_refused() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["project"]["path_with_namespace"] = " "

    refusal(lambda: parse_fixture("merge_request.open", edit), 400)


# -- comments ---------------------------------------------------------------------


def test_an_edited_comment_is_ignored() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["object_attributes"]["action"] = "update"

    outcome = parse_fixture("note.merge_request", edit)
    assert isinstance(outcome, Ignored)
    assert "'update'" in outcome.reason


def test_a_comment_from_gitlab_before_16_11_has_no_action_and_counts_as_new() -> None:
    def edit(data: dict[str, Any]) -> None:
        del data["object_attributes"]["action"]

    assert parse_fixture("note.merge_request", edit).event.type is EventType.COMMENT_CREATED


def test_a_system_note_is_ignored() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["object_attributes"]["system"] = True

    assert isinstance(parse_fixture("note.merge_request", edit), Ignored)


def test_comment_url_falls_back_to_the_note_url_without_its_anchor() -> None:
    def edit(data: dict[str, Any]) -> None:
        del data["merge_request"]["url"]

    outcome = parse_fixture("note.merge_request", edit)
    assert outcome.event.url == "https://gitlab.example.com/acme/web/-/merge_requests/42"


def test_a_confidential_comment_on_a_merge_request_is_a_comment() -> None:
    outcome = parse_fixture("note.merge_request", **{"X-Gitlab-Event": "Confidential Note Hook"})
    assert outcome.event.type is EventType.COMMENT_CREATED


# -- pipelines --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("canceled", BuildStatus.CANCELLED),
        ("skipped", BuildStatus.CANCELLED),
        ("failed", BuildStatus.FAILURE),
    ],
)
def test_finished_pipeline_statuses(status: str, expected: BuildStatus) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["object_attributes"]["status"] = status

    assert parse_fixture("pipeline.success", edit).event.build_status is expected


@pytest.mark.parametrize(
    "status", ["created", "waiting_for_resource", "preparing", "pending", "manual", "scheduled", "canceling"]
)
def test_unfinished_pipeline_statuses_are_ignored(status: str) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["object_attributes"]["status"] = status

    outcome = parse_fixture("pipeline.success", edit)
    assert isinstance(outcome, Ignored)
    assert outcome.type == f"Pipeline Hook/{status}"


def test_a_tag_pipeline_is_ignored() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["object_attributes"].update(tag=True, ref="v1.4.0")

    assert isinstance(parse_fixture("pipeline.failed", edit), Ignored)


def test_a_merge_request_pipeline_on_its_merge_request_ref_reports_the_source_branch() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["object_attributes"]["ref"] = "refs/merge-requests/42/head"

    assert parse_fixture("pipeline.success", edit).event.head_ref == "feature/login-form"


# -- pushes and other events ------------------------------------------------------


def test_a_push_of_a_non_branch_ref_is_ignored() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["ref"] = "refs/tags/v1.4.0"

    assert isinstance(parse_fixture("push.branch", edit), Ignored)


def test_a_new_branch_is_a_push() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["before"] = "0" * 40

    assert parse_fixture("push.branch", edit).event.type is EventType.PUSH


def test_an_unknown_event_is_ignored_naming_it() -> None:
    outcome = parse_fixture("merge_request.open", **{"X-Gitlab-Event": "Wiki Page Hook"})
    assert isinstance(outcome, Ignored)
    assert "Wiki Page Hook" in outcome.reason
    assert outcome.repository == "acme/web"


def test_a_system_hook_merge_request_event_is_read_like_a_project_one() -> None:
    system = parse_fixture("merge_request.open", **{"X-Gitlab-Event": "System Hook"})
    project = parse_fixture("merge_request.open")
    assert system.event == project.event


def test_a_system_hook_push_is_read_like_a_project_one() -> None:
    assert parse_fixture("push.branch", **{"X-Gitlab-Event": "System Hook"}).event.type is EventType.PUSH


def test_other_system_hook_events_are_ignored() -> None:
    body = {
        "event_name": "project_create",
        "name": "web",
        "path_with_namespace": "acme/web",
        "project_id": 204,
    }
    outcome = parse(
        {"Content-Type": "application/json", "X-Gitlab-Event": "System Hook"}, json.dumps(body).encode()
    )
    assert isinstance(outcome, Ignored)
    assert "project_create" in outcome.reason


# -- request shape ----------------------------------------------------------------


def test_a_missing_event_header_is_a_400_naming_it() -> None:
    headers, body, _ = load("merge_request.open")
    del headers["X-Gitlab-Event"]
    refused = refusal(lambda: parse(headers, body), 400)
    assert "X-Gitlab-Event" in refused.reason


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", ""])
def test_only_json_is_accepted(content_type: str) -> None:
    refusal(lambda: parse_fixture("merge_request.open", **{"Content-Type": content_type}), 415)


def test_json_with_a_charset_is_accepted() -> None:
    outcome = parse_fixture("merge_request.open", **{"Content-Type": "application/json; charset=utf-8"})
    assert isinstance(outcome, Accepted)


@pytest.mark.parametrize("body", [b"", b"{", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_a_400(body: bytes) -> None:
    refusal(lambda: parse({"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook"}, body), 400)


# -- delivery id ------------------------------------------------------------------


def test_delivery_id_prefers_the_idempotency_key_which_survives_retries() -> None:
    headers = Headers(
        headers={
            "Idempotency-Key": "f5e5f430-f57b-4e6e-9fac-d9128cd7232f",
            "X-Gitlab-Webhook-UUID": "02affd2d-2cba-4033-917d-ec22d5dc4b38",
            "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e",
        }
    )
    assert gitlab.delivery_id(headers) == "f5e5f430-f57b-4e6e-9fac-d9128cd7232f"


def test_delivery_id_falls_back_to_the_webhook_uuid() -> None:
    headers = Headers(headers={"X-Gitlab-Webhook-UUID": "02affd2d-2cba-4033-917d-ec22d5dc4b38"})
    assert gitlab.delivery_id(headers) == "02affd2d-2cba-4033-917d-ec22d5dc4b38"


def test_delivery_id_never_uses_the_event_uuid() -> None:
    headers = Headers(headers={"X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e"})
    assert gitlab.delivery_id(headers) is None
    assert gitlab.delivery_id(Headers(headers={"Idempotency-Key": "  "})) is None


# -- secret token -----------------------------------------------------------------

BODY = load("merge_request.open")[1]
TOKEN = b"s3cr3t-token-for-the-hook"
OLD_TOKEN = b"previous-token-still-valid"


def verify(
    headers: dict[str, str],
    *,
    tokens: list[bytes] | None = None,
    signing: list[bytes] | None = None,
    body: bytes = BODY,
    now: float = NOW,
) -> None:
    gitlab.verify(Headers(headers=headers), body, tokens or [], signing or [], now)


def verify_refusal(headers: dict[str, str], **kwargs: Any) -> Refusal:
    return refusal(lambda: verify(headers, **kwargs), 401)


def test_the_right_token_passes() -> None:
    verify({"X-Gitlab-Token": TOKEN.decode()}, tokens=[TOKEN])


def test_a_wrong_token_is_refused_without_echoing_any_token() -> None:
    refused = verify_refusal({"X-Gitlab-Token": "guess"}, tokens=[TOKEN])
    assert "X-Gitlab-Token" in refused.reason
    assert TOKEN.decode() not in refused.reason
    assert "guess" not in refused.reason


def test_a_missing_token_is_refused_naming_the_header() -> None:
    assert "X-Gitlab-Token" in verify_refusal({}, tokens=[TOKEN]).reason


@pytest.mark.parametrize("sent", [TOKEN, OLD_TOKEN])
def test_either_of_two_rotated_tokens_passes(sent: bytes) -> None:
    verify({"X-Gitlab-Token": sent.decode()}, tokens=[TOKEN, OLD_TOKEN])


def test_a_token_that_is_a_prefix_of_the_real_one_is_refused() -> None:
    verify_refusal({"X-Gitlab-Token": TOKEN.decode()[:-1]}, tokens=[TOKEN])


def test_nothing_configured_refuses_everything() -> None:
    refused = verify_refusal({"X-Gitlab-Token": TOKEN.decode()})
    assert "configured" in refused.reason


# -- signing token ----------------------------------------------------------------

SIGNING_KEY = bytes(range(32))
SIGNING = b"whsec_" + base64.b64encode(SIGNING_KEY)
OLD_SIGNING_KEY = hashlib.sha256(b"old").digest()
OLD_SIGNING = b"whsec_" + base64.b64encode(OLD_SIGNING_KEY)
MSG_ID = "f5e5f430-f57b-4e6e-9fac-d9128cd7232f"


def signed(
    key: bytes = SIGNING_KEY, *, timestamp: int = int(NOW), body: bytes = BODY, msg_id: str = MSG_ID
) -> dict[str, str]:
    """Headers as GitLab sends them with a signing token, computed here from the raw 32-byte key."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        "Idempotency-Key": msg_id,
    }


def test_a_good_signature_passes() -> None:
    verify(signed(), signing=[SIGNING])


@pytest.mark.parametrize("key", [SIGNING_KEY, OLD_SIGNING_KEY])
def test_either_of_two_rotated_signing_tokens_passes(key: bytes) -> None:
    verify(signed(key), signing=[SIGNING, OLD_SIGNING])


def test_a_signature_made_with_another_key_is_refused() -> None:
    refused = verify_refusal(signed(OLD_SIGNING_KEY), signing=[SIGNING])
    assert "webhook-signature" in refused.reason
    assert SIGNING.decode() not in refused.reason


def test_a_tampered_body_is_refused() -> None:
    verify_refusal(signed(), signing=[SIGNING], body=BODY.replace(b"Add login form", b"Add login farm"))


def test_a_signature_for_another_delivery_id_is_refused() -> None:
    headers = signed()
    headers["webhook-id"] = "another-id"
    verify_refusal(headers, signing=[SIGNING])


@pytest.mark.parametrize("offset", [-301, 301, -3600])
def test_a_timestamp_outside_five_minutes_is_refused_as_a_replay(offset: int) -> None:
    refused = verify_refusal(signed(timestamp=int(NOW) + offset), signing=[SIGNING])
    assert "webhook-timestamp" in refused.reason


@pytest.mark.parametrize("offset", [-300, 300])
def test_a_timestamp_at_the_edge_of_the_window_passes(offset: int) -> None:
    verify(signed(timestamp=int(NOW) + offset), signing=[SIGNING])


def test_a_replayed_delivery_is_refused_once_the_window_has_passed() -> None:
    headers = signed()
    verify(headers, signing=[SIGNING], now=NOW)
    verify_refusal(headers, signing=[SIGNING], now=NOW + 301)


def test_one_good_signature_among_several_passes() -> None:
    headers = signed()
    headers["webhook-signature"] = f"v1,{base64.b64encode(b'x' * 32).decode()} {headers['webhook-signature']}"
    verify(headers, signing=[SIGNING])


def test_a_wrong_signature_is_refused_even_when_the_token_is_right() -> None:
    headers = signed(OLD_SIGNING_KEY) | {"X-Gitlab-Token": TOKEN.decode()}
    verify_refusal(headers, tokens=[TOKEN], signing=[SIGNING])


def test_a_signature_with_missing_companion_headers_is_refused_even_when_the_token_is_right() -> None:
    headers = signed() | {"X-Gitlab-Token": TOKEN.decode()}
    del headers["webhook-timestamp"]
    assert "webhook-timestamp" in verify_refusal(headers, tokens=[TOKEN], signing=[SIGNING]).reason


def test_a_token_only_delivery_passes_when_both_are_configured() -> None:
    verify({"X-Gitlab-Token": TOKEN.decode()}, tokens=[TOKEN], signing=[SIGNING])


def test_a_signature_is_not_judged_when_no_signing_token_is_configured() -> None:
    verify(signed(OLD_SIGNING_KEY) | {"X-Gitlab-Token": TOKEN.decode()}, tokens=[TOKEN])


def test_without_signature_a_signing_only_gateway_names_what_it_expected() -> None:
    refused = verify_refusal({"X-Gitlab-Token": TOKEN.decode()}, signing=[SIGNING])
    assert "webhook-signature" in refused.reason


def test_with_neither_credential_the_reason_names_both() -> None:
    refused = verify_refusal({}, tokens=[TOKEN], signing=[SIGNING])
    assert "X-Gitlab-Token" in refused.reason
    assert "webhook-signature" in refused.reason
