"""What each provider adds to a delivery: its signature or token and its delivery id.

Written independently of providers/signing.py, from the providers' documentation,
so that a mistake in our verification cannot be mirrored here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

GITHUB_SECRET = "gh-secret-new"
GITHUB_OLD_SECRET = "gh-secret-old"
GITLAB_TOKEN = "gl-token"
GITLAB_SIGNING = "whsec_" + base64.b64encode(b"gitlab-signing-key-32-bytes-long").decode()
BITBUCKET_SECRET = "bb-secret"
GENERIC_TOKEN = "generic-token"
GENERIC_SECRET = "whsec_" + base64.b64encode(b"generic-signing-key-32-bytes-lon").decode()
ADMIN_TOKEN = "admin-token"

SECRET_SETTINGS = {
    "github_webhook_secret": f"{GITHUB_OLD_SECRET},{GITHUB_SECRET}",
    "gitlab_webhook_token": GITLAB_TOKEN,
    "gitlab_signing_token": GITLAB_SIGNING,
    "bitbucket_webhook_secret": BITBUCKET_SECRET,
    "generic_token": GENERIC_TOKEN,
    "generic_secret": GENERIC_SECRET,
    "admin_token": ADMIN_TOKEN,
}

ENDPOINTS = {
    "github": "/webhooks/github",
    "gitlab": "/webhooks/gitlab",
    "bitbucket-cloud": "/webhooks/bitbucket",
    "bitbucket-server": "/webhooks/bitbucket",
    "generic": "/webhooks/generic",
}


def hub_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def auth_headers(
    provider: str, body: bytes, delivery_id: str | None = None, now: float | None = None
) -> dict[str, str]:
    """The authentication and delivery-id headers a real sender would add."""
    delivery_id = delivery_id or str(uuid.uuid4())
    match provider:
        case "github":
            return {
                "X-Hub-Signature-256": hub_signature(GITHUB_SECRET, body),
                "X-GitHub-Delivery": delivery_id,
            }
        case "gitlab":
            return {
                "X-Gitlab-Token": GITLAB_TOKEN,
                "Idempotency-Key": delivery_id,
                "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
            }
        case "bitbucket-cloud":
            return {"X-Hub-Signature": hub_signature(BITBUCKET_SECRET, body), "X-Request-UUID": delivery_id}
        case "bitbucket-server":
            return {"X-Hub-Signature": hub_signature(BITBUCKET_SECRET, body), "X-Request-Id": delivery_id}
        case "generic":
            ts = int(now if now is not None else time.time())
            return {
                "webhook-id": delivery_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": standard_signature(GENERIC_SECRET, delivery_id, ts, body),
            }
    raise ValueError(provider)


@dataclass(frozen=True)
class Fixture:
    provider: str
    name: str
    body: bytes
    headers: dict[str, str]
    expected: dict[str, object]

    @property
    def endpoint(self) -> str:
        return ENDPOINTS[self.provider]

    def signed(self, delivery_id: str | None = None) -> dict[str, str]:
        return {**self.headers, **auth_headers(self.provider, self.body, delivery_id)}


def load_fixtures(provider: str | None = None) -> list[Fixture]:
    found = []
    for folder in sorted(FIXTURES.iterdir()):
        if not folder.is_dir() or folder.name not in ENDPOINTS or (provider and folder.name != provider):
            continue
        for headers_file in sorted(folder.glob("*.headers.json")):
            name = headers_file.name.removesuffix(".headers.json")
            raw = folder / f"{name}.body"
            body = raw.read_bytes() if raw.exists() else (folder / f"{name}.json").read_bytes()
            found.append(
                Fixture(
                    folder.name,
                    name,
                    body,
                    json.loads(headers_file.read_text()),
                    json.loads((folder / f"{name}.expected.json").read_text()),
                )
            )
    return found
