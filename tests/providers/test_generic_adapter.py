"""providers.generic: bearer tokens, Standard Webhooks signatures, and the trigger body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from providers import generic
from providers.events import EventType, Provider
from providers.signing import standard_webhook_signature
from providers.verdicts import Accepted, Refusal
from tests.support.refusals import refusal

FIXTURES = Path(__file__).parents[1] / "fixtures" / "generic"
RECEIVED_AT = datetime(2025, 3, 14, 9, 27, tzinfo=UTC)
NOW = 1_741_944_420.0  # 2025-03-14T09:27:00Z
DELIVERY = "msg_2uFk3bV9cQx7LrT0aW1nYp"

TOKEN = b"ci-trigger-token-7f3e1a"
OLD_TOKEN = b"ci-trigger-token-previous"
SECRET = b"plain signing secret for ci"
# A `whsec_` secret is base64: the HMAC key is what it decodes to.
WHSEC_KEY = b"0123456789abcdef0123456789abcdef"
WHSEC = b"whsec_" + base64.b64encode(WHSEC_KEY)

DEPLOY = {
    "action": "deploy",
    "repository": "northwind-labs/storefront",
    "number": 42,
    "sha": "a93f0e6c1b8d4f2739e5c0a7d1b6f4e8c2a9d053",
    "branch": "feature/gift-card-checkout",
}


def fixture_names() -> list[str]:
    return sorted(p.name.removesuffix(".expected.json") for p in FIXTURES.glob("*.expected.json"))


def signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    # Computed here from the Standard Webhooks definition, not with the code under test.
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    body: bytes,
    key: bytes = SECRET,
    *,
    timestamp: float = NOW,
    msg_id: str = DELIVERY,
    sig: str | None = None,
) -> dict[str, str]:
    ts = str(int(timestamp))
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": sig if sig is not None else signature(key, msg_id, ts, body),
    }


def verify(
    headers: dict[str, str],
    body: bytes = b"{}",
    *,
    tokens: list[bytes] | None = None,
    secrets: list[bytes] | None = None,
    now: float = NOW,
) -> None:
    generic.verify(
        Headers(headers=headers),
        body,
        [TOKEN] if tokens is None else tokens,
        [SECRET] if secrets is None else secrets,
        now,
    )


def refused(headers: dict[str, str], body: bytes = b"{}", **kwargs: Any) -> Refusal:
    hiding = (TOKEN, OLD_TOKEN, SECRET, WHSEC, WHSEC_KEY)
    return refusal(lambda: verify(headers, body, **kwargs), 401, hiding=hiding)


def parse(body: Any, content_type: str = "application/json") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return generic.parse(Headers(headers={"Content-Type": content_type}), raw, DELIVERY, RECEIVED_AT)


def bad(body: Any, content_type: str = "application/json") -> Refusal:
    return refusal(lambda: parse(body, content_type))


# --- fixtures ----------------------------------------------------------------------------------


def test_every_action_has_a_fixture() -> None:
    assert set(fixture_names()) >= {"deploy", "deploy.with-config", "destroy", "hibernate", "wake", "comment"}


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_parses_to_expected(name: str) -> None:
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    headers = json.loads((FIXTURES / f"{name}.headers.json").read_text())
    assert headers == {"Content-Type": "application/json"}
    body = (FIXTURES / f"{name}.json").read_bytes()

    verify({**headers, "Authorization": f"Bearer {TOKEN.decode()}"}, body)
    verify(signed_headers(body), body)

    outcome = generic.parse(Headers(headers=headers), body, DELIVERY, RECEIVED_AT)
    assert expected["status"] == "accepted"
    assert isinstance(outcome, Accepted)
    assert outcome.event.model_dump(mode="json", exclude={"delivery_id", "received_at"}) == expected["event"]
    assert outcome.event.delivery_id == DELIVERY
    assert outcome.event.received_at == RECEIVED_AT
    assert outcome.event.provider is Provider.GENERIC


# --- bearer token ------------------------------------------------------------------------------


def test_bearer_token_good() -> None:
    verify({"Authorization": f"Bearer {TOKEN.decode()}"})


def test_bearer_scheme_is_case_insensitive() -> None:
    verify({"authorization": f"bearer {TOKEN.decode()}"})


@pytest.mark.parametrize("token", [TOKEN, OLD_TOKEN])
def test_rotated_tokens_either_passes(token: bytes) -> None:
    verify({"Authorization": f"Bearer {token.decode()}"}, tokens=[TOKEN, OLD_TOKEN])


def test_bearer_token_bad() -> None:
    error = refused({"Authorization": "Bearer ci-trigger-token-guess"})
    assert error.reason == "Authorization bearer token does not match any configured token"


def test_bearer_token_prefix_of_the_real_one_is_refused() -> None:
    refused({"Authorization": f"Bearer {TOKEN.decode()[:-1]}"})


def test_missing_credentials() -> None:
    error = refused({"Content-Type": "application/json"})
    assert error.reason == "missing Authorization bearer token or webhook-signature header"


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", TOKEN.decode(), "Token abc"])
def test_malformed_authorization_header(value: str) -> None:
    error = refused({"Authorization": value})
    assert error.reason == "Authorization header must be 'Bearer <token>'"


def test_bearer_token_without_configured_tokens() -> None:
    error = refused({"Authorization": f"Bearer {TOKEN.decode()}"}, tokens=[])
    assert "no token is configured" in error.reason


def test_nothing_configured_refuses_everything() -> None:
    body = b"{}"
    for headers in ({"Authorization": f"Bearer {TOKEN.decode()}"}, signed_headers(body), {}):
        error = refused(headers, body, tokens=[], secrets=[])
        assert error.reason == "the generic trigger has no bearer token or webhook signing secret configured"


# --- Standard Webhooks signature ---------------------------------------------------------------


def test_standard_webhooks_reference_vector() -> None:
    # The example from the Standard Webhooks / Svix documentation.
    body = b'{"test": 2432232314}'
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    verify(headers, body, tokens=[], secrets=[b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], now=1614265330)


def test_signature_good() -> None:
    body = json.dumps(DEPLOY).encode()
    verify(signed_headers(body), body)


def test_signature_without_bearer_tokens_configured() -> None:
    body = json.dumps(DEPLOY).encode()
    verify(signed_headers(body), body, tokens=[])


def test_whsec_secret_signs_with_its_decoded_key() -> None:
    body = json.dumps(DEPLOY).encode()
    verify(signed_headers(body, WHSEC_KEY), body, secrets=[WHSEC])
    # Signing with the literal "whsec_..." text is not the same key.
    refused(signed_headers(body, WHSEC), body, secrets=[WHSEC])


def test_senders_own_signature_function_agrees() -> None:
    body = json.dumps(DEPLOY).encode()
    ts = str(int(NOW))
    assert standard_webhook_signature(WHSEC, DELIVERY, ts, body) == signature(WHSEC_KEY, DELIVERY, ts, body)


@pytest.mark.parametrize("secret", [SECRET, WHSEC])
def test_rotated_secrets_either_passes(secret: bytes) -> None:
    body = json.dumps(DEPLOY).encode()
    key = WHSEC_KEY if secret == WHSEC else secret
    verify(signed_headers(body, key), body, secrets=[SECRET, WHSEC])


def test_signature_bad() -> None:
    body = json.dumps(DEPLOY).encode()
    error = refused(signed_headers(body, b"some other secret"), body)
    assert error.reason == "webhook-signature does not match the payload for any configured secret"


def test_signature_over_another_body_is_refused() -> None:
    body = json.dumps(DEPLOY).encode()
    tampered = json.dumps({**DEPLOY, "number": 43}).encode()
    refused(signed_headers(body), tampered)


def test_signature_for_another_message_id_is_refused() -> None:
    body = json.dumps(DEPLOY).encode()
    headers = signed_headers(body)
    headers["webhook-id"] = "msg_replayed_under_a_new_id"
    refused(headers, body)


def test_multiple_signatures_in_the_header() -> None:
    # A sender rotating its secret signs with both; one match is enough, in any position.
    body = json.dumps(DEPLOY).encode()
    ts = str(int(NOW))
    good = signature(SECRET, DELIVERY, ts, body)
    other = signature(b"the sender's new secret", DELIVERY, ts, body)
    verify(signed_headers(body, sig=f"{other} {good}"), body)
    verify(signed_headers(body, sig=f"{good} {other}"), body)
    # Signatures of other schemes are skipped, not errors.
    verify(signed_headers(body, sig=f"v1a,bm90IGEgdjEgc2lnbmF0dXJl {good}"), body)
    refused(signed_headers(body, sig=f"{other} v1,AAAA"), body)


@pytest.mark.parametrize("offset", [-301, 301, -3600, 86_400])
def test_timestamp_outside_five_minutes_is_refused(offset: int) -> None:
    body = json.dumps(DEPLOY).encode()
    # Correctly signed, but too old (replay) or too far in the future.
    error = refused(signed_headers(body, timestamp=NOW + offset), body)
    assert error.reason == "webhook-timestamp is more than 300 s from the gateway's clock"


@pytest.mark.parametrize("offset", [-300, -60, 0, 60, 300])
def test_timestamp_within_five_minutes_is_accepted(offset: int) -> None:
    body = json.dumps(DEPLOY).encode()
    verify(signed_headers(body, timestamp=NOW + offset), body)


def test_non_numeric_timestamp_is_refused() -> None:
    body = json.dumps(DEPLOY).encode()
    headers = signed_headers(body)
    headers["webhook-timestamp"] = "2025-03-14T09:27:00Z"
    error = refused(headers, body)
    assert error.reason.startswith("webhook-timestamp must be whole seconds since the epoch")


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp"])
def test_signature_without_its_companion_headers_is_refused(missing: str) -> None:
    body = json.dumps(DEPLOY).encode()
    headers = signed_headers(body)
    del headers[missing]
    assert refused(headers, body).reason == f"missing {missing} header"


def test_signature_header_wins_over_a_valid_token() -> None:
    # A request that is signed is judged by its signature; a good token does not rescue a bad one.
    body = json.dumps(DEPLOY).encode()
    headers = signed_headers(body, b"wrong secret")
    headers["Authorization"] = f"Bearer {TOKEN.decode()}"
    refused(headers, body)


def test_signature_header_without_configured_secrets() -> None:
    body = json.dumps(DEPLOY).encode()
    error = refused(signed_headers(body), body, secrets=[])
    assert error.reason.startswith(
        "webhook-signature header sent, but no webhook signing secret is configured"
    )


def test_delivery_id() -> None:
    assert generic.delivery_id(Headers(headers={"webhook-id": DELIVERY})) == DELIVERY
    assert generic.delivery_id(Headers(headers={"Webhook-Id": DELIVERY})) == DELIVERY
    assert generic.delivery_id(Headers(headers={"Authorization": "Bearer x"})) is None


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "event_type"),
    [
        ("deploy", EventType.ENV_DEPLOY),
        ("destroy", EventType.ENV_DESTROY),
        ("hibernate", EventType.ENV_HIBERNATE),
        ("wake", EventType.ENV_WAKE),
    ],
)
def test_actions(action: str, event_type: EventType) -> None:
    outcome = parse({**DEPLOY, "action": action})
    assert isinstance(outcome, Accepted)
    assert outcome.event.type is event_type
    assert outcome.event.key == "generic:northwind-labs/storefront:42"


@pytest.mark.parametrize("action", ["destroy", "hibernate", "wake"])
def test_sha_and_branch_are_optional_except_for_deploy(action: str) -> None:
    outcome = parse({"action": action, "repository": "northwind-labs/storefront", "number": 42})
    assert isinstance(outcome, Accepted)
    assert (outcome.event.head_sha, outcome.event.head_ref) == (None, None)


def test_a_comment_carries_commands_from_the_trigger_itself() -> None:
    outcome = parse(
        {
            "action": "comment",
            "repository": "northwind-labs/storefront",
            "number": 42,
            "comment": "/wake-preview",
        }
    )
    assert isinstance(outcome, Accepted) and outcome.event.type is EventType.COMMENT_CREATED
    assert outcome.event.comment is not None
    assert (outcome.event.comment.body, outcome.event.comment.author) == (
        "/wake-preview",
        generic.COMMENT_AUTHOR,
    )


def test_comment_goes_with_the_comment_action_only() -> None:
    error = bad({"action": "comment", "repository": "northwind-labs/storefront", "number": 42})
    assert (error.status, error.reason) == (400, "field comment: required when action is 'comment'")
    error = bad({**DEPLOY, "comment": "/preserve"})
    assert (error.status, error.reason) == (400, "field comment: only with action 'comment'")


@pytest.mark.parametrize("missing", ["sha", "branch"])
def test_deploy_needs_sha_and_branch(missing: str) -> None:
    body = {key: value for key, value in DEPLOY.items() if key != missing}
    error = bad(body)
    assert (error.status, error.reason) == (400, f"field {missing}: required when action is 'deploy'")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"number": "42"}, "field number: Input should be a valid integer"),
        ({"number": 4.2}, "field number: Input should be a valid integer"),
        ({"number": True}, "field number: Input should be a valid integer"),
        ({"number": 0}, "field number: Input should be greater than or equal to 1"),
        ({"number": -3}, "field number: Input should be greater than or equal to 1"),
        (
            {"action": "redeploy"},
            "field action: Input should be 'deploy', 'destroy', 'hibernate', 'wake' or 'comment'",
        ),
        ({"repository": 7}, "field repository: Input should be a valid string"),
        ({"sha": "xyz1234"}, "field sha: must be a commit hash of 7 to 64 hexadecimal characters"),
        ({"sha": "abc123"}, "field sha: must be a commit hash of 7 to 64 hexadecimal characters"),
        ({"sha": "a" * 65}, "field sha: must be a commit hash of 7 to 64 hexadecimal characters"),
        ({"branch": ""}, "field branch: must name a branch"),
        ({"branch": "refs/heads/"}, "field branch: must name a branch"),
        ({"branch": "my branch"}, "field branch: must not contain whitespace or control characters"),
        ({"image": ""}, "field image: String should have at least 1 character"),
        (
            {"image": "ghcr.io/acme/web:v1 --privileged"},
            "field image: must be an image reference such as "
            "registry.example.com/org/app:tag (path in lower case, no whitespace)",
        ),
        (
            {"image": "ghcr.io/acme/web:v1\n"},
            "field image: must be an image reference such as "
            "registry.example.com/org/app:tag (path in lower case, no whitespace)",
        ),
        (
            {"occurred_at": "0001-01-01T00:00:00+05:00"},
            "field occurred_at: must be a time from 1970-01-01 to before 9000-01-01 (UTC)",
        ),
        (
            {"occurred_at": "9999-12-31T23:59:59-05:00"},
            "field occurred_at: must be a time from 1970-01-01 to before 9000-01-01 (UTC)",
        ),
        (
            {"occurred_at": "1969-12-31T23:59:59Z"},
            "field occurred_at: must be a time from 1970-01-01 to before 9000-01-01 (UTC)",
        ),
        ({"config": ["projectId", "storefront"]}, "field config: Input should be a valid dictionary"),
        ({"config": "projectId: storefront"}, "field config: Input should be a valid dictionary"),
        (
            {"occurred_at": "last tuesday"},
            "field occurred_at: Input should be a valid datetime or date, invalid character in year",
        ),
        ({"env": "staging"}, "field env: Extra inputs are not permitted"),
    ],
)
def test_bad_fields_are_named(change: dict[str, Any], reason: str) -> None:
    error = bad({**DEPLOY, **change})
    assert (error.status, error.reason) == (400, reason)


@pytest.mark.parametrize(
    "repository",
    [
        "storefront",
        "",
        "/storefront",
        "northwind-labs/",
        "northwind labs/storefront",
        "a//b",
        "a/../b",
        "a/./b",
        "https://github.com/a/b",
        "a/b?x=1",
        "ä/b",
        " northwind-labs/storefront",
        "northwind-labs/storefront ",
        "northwind-labs/storefront/",
        "northwind-labs/store\nfront",
        "\u212aelvin/storefront",
    ],
)
def test_repository_must_be_a_path(repository: str) -> None:
    error = bad({**DEPLOY, "repository": repository})
    assert error.status == 400
    assert error.reason.startswith("field repository: must look like owner/repo")


@pytest.mark.parametrize(
    "repository",
    ["northwind-labs/storefront", "platform/payments/ledger-api", "a/b/c/d.e_f", "Org.Name/repo.js"],
)
def test_repository_paths_with_subgroups_are_accepted(repository: str) -> None:
    outcome = parse({**DEPLOY, "repository": repository})
    assert isinstance(outcome, Accepted)
    assert outcome.event.repository == repository


def test_missing_fields_are_named() -> None:
    error = bad({"action": "deploy"})
    assert error.status == 400
    assert error.reason == "field repository: Field required; field number: Field required"


def test_many_errors_are_summarised() -> None:
    body = {f"extra{i}": i for i in range(9)}
    error = bad({**DEPLOY, **body})
    assert error.reason.count("Extra inputs are not permitted") == 5
    assert error.reason.endswith("; and 4 more")


def test_short_sha_is_kept_and_lowercased() -> None:
    outcome = parse({**DEPLOY, "sha": "A93F0E6"})
    assert isinstance(outcome, Accepted)
    assert outcome.event.head_sha == "a93f0e6"


def test_full_ref_is_cut_to_the_branch() -> None:
    outcome = parse({**DEPLOY, "branch": "refs/heads/release/2025.03"})
    assert isinstance(outcome, Accepted)
    assert outcome.event.head_ref == "release/2025.03"


def test_config_object_is_carried_through() -> None:
    config = {"projectId": "storefront", "databases": {"postgresql": True, "redis": {"enabled": False}}}
    outcome = parse({**DEPLOY, "config": config, "image": "ghcr.io/northwind-labs/storefront:a93f0e6"})
    assert isinstance(outcome, Accepted)
    assert outcome.event.config == config
    assert outcome.event.image == "ghcr.io/northwind-labs/storefront:a93f0e6"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-14T09:26:41Z", datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC)),
        ("2025-03-14T10:26:41+01:00", datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC)),
        ("2025-03-14T09:26:41", datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC)),
        (1741944401, datetime(2025, 3, 14, 9, 26, 41, tzinfo=UTC)),
        (None, None),
    ],
)
def test_occurred_at(value: Any, expected: datetime | None) -> None:
    outcome = parse({**DEPLOY, "occurred_at": value})
    assert isinstance(outcome, Accepted)
    assert outcome.event.occurred_at == expected
    if expected is not None:
        assert (
            outcome.event.occurred_at is not None
            and outcome.event.occurred_at.utcoffset().total_seconds() == 0
        )


def test_json_null_for_optional_fields() -> None:
    outcome = parse(
        {
            "action": "destroy",
            "repository": "a/b",
            "number": 1,
            "sha": None,
            "branch": None,
            "image": None,
            "config": None,
            "occurred_at": None,
        }
    )
    assert isinstance(outcome, Accepted)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_content_type_must_be_json(content_type: str) -> None:
    error = bad(DEPLOY, content_type)
    assert error.status == 415


def test_json_content_type_variants() -> None:
    assert isinstance(parse(DEPLOY, "application/json; charset=utf-8"), Accepted)
    assert isinstance(parse(DEPLOY, "application/vnd.k8s-ee.trigger+json"), Accepted)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "body is not valid JSON"),
        (b"action=deploy", "body is not valid JSON"),
        (b"[]", "body must be a JSON object, got list"),
        (b'"deploy"', "body must be a JSON object, got str"),
    ],
)
def test_malformed_body(body: bytes, reason: str) -> None:
    error = bad(body)
    assert error.status == 400
    assert error.reason.startswith(reason)


# --- one field changed in a good body --------------------------------------------------------

KEYS = ["action", "repository", "number", "sha", "branch", "image", "config", "occurred_at"]
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["deploy", "destroy", "wake", "a/b", "abcdef1", "main", "2025-03-14T09:26:41Z"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(field=st.sampled_from(KEYS), value=values)
def test_one_bad_field_in_a_good_body(field: str, value: Any) -> None:
    try:
        outcome = parse({**DEPLOY, field: value})
    except Refusal as error:
        assert error.status == 400
        # The reason names the field that was changed.
        assert f"field {field}" in error.reason
        return
    assert isinstance(outcome, Accepted)
