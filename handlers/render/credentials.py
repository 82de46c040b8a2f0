"""Passwords the gateway generates for the databases, and the Secrets that keep them.

The renderer is pure, so it never invents a password: the worker reads the
existing generated-credential Secrets (one list call, by label), turns them back
into passwords with `passwords_from_secrets`, generates only what is missing with
`new_password`, and passes them all in. Re-applying therefore never rotates a
password under a running database.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from handlers import naming
from handlers.config import Engine, RepoConfig
from handlers.render.context import Context, Manifest


@dataclass(frozen=True, slots=True)
class Credential:
    # The name the worker knows the password by.
    password: str
    engine: Engine
    secret: str
    key: str


def secret_name(engine: Engine) -> str:
    return f"app-{engine.value}-credentials"


CREDENTIALS: tuple[Credential, ...] = (
    Credential("mongodb", Engine.MONGODB, secret_name(Engine.MONGODB), "password"),
    Credential("redis", Engine.REDIS, secret_name(Engine.REDIS), "password"),
    Credential("minio-access-key", Engine.MINIO, secret_name(Engine.MINIO), "accesskey"),
    Credential("minio-secret-key", Engine.MINIO, secret_name(Engine.MINIO), "secretkey"),
    Credential("mariadb", Engine.MARIADB, secret_name(Engine.MARIADB), "password"),
    Credential("mariadb-root", Engine.MARIADB, secret_name(Engine.MARIADB), "root-password"),
)

# Passwords end up in connection URLs (`$(MYSQL_PASSWORD)` in MYSQL_URL) and in
# MinIO's config.env, so only characters that need no escaping anywhere.
_PASSWORD = re.compile(r"^[A-Za-z0-9._-]{8,128}$")
_ALPHABET = string.ascii_letters + string.digits


def required_passwords(config: RepoConfig) -> list[str]:
    """The password names the renderer needs for this configuration, in a fixed order."""
    enabled = {db.engine for db in config.enabled_databases()}
    return [credential.password for credential in CREDENTIALS if credential.engine in enabled]


def new_password(length: int = 32) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


class PasswordError(ValueError):
    """Passwords the renderer needs are missing or unusable; `names` says which (never the values)."""

    def __init__(self, message: str, names: list[str]) -> None:
        super().__init__(f"{message}: {', '.join(names)}")
        self.names = names


class MissingPasswords(PasswordError):
    pass


class UnusablePasswords(PasswordError):
    pass


def check_passwords(config: RepoConfig, passwords: Mapping[str, str]) -> None:
    needed = required_passwords(config)
    missing = [name for name in needed if name not in passwords]
    if missing:
        raise MissingPasswords("missing generated passwords", missing)
    unusable = [name for name in needed if not _PASSWORD.fullmatch(passwords[name])]
    if unusable:
        raise UnusablePasswords("unusable generated passwords (8-128 of A-Z a-z 0-9 . _ -)", unusable)


def passwords_from_secrets(items: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The passwords held by generated-credential Secrets as read from the cluster.

    Takes Secrets as the API returns them (`metadata.name`, base64 `data`); keys it
    does not know, and values that do not decode, are skipped, so they get regenerated.
    """
    by_location = {(c.secret, c.key): c.password for c in CREDENTIALS}
    found: dict[str, str] = {}
    for item in items:
        name = str((item.get("metadata") or {}).get("name"))
        for key, encoded in (item.get("data") or {}).items():
            password = by_location.get((name, key))
            if password is None or not isinstance(encoded, str):
                continue
            try:
                value = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                continue
            if _PASSWORD.fullmatch(value):
                found[password] = value
    return found


def generated_secrets(ctx: Context) -> list[Manifest]:
    enabled = {db.engine for db in ctx.config.enabled_databases()}
    manifests: list[Manifest] = []
    for engine in Engine:
        held = [c for c in CREDENTIALS if c.engine is engine]
        if engine not in enabled or not held:
            # PostgreSQL's credentials are CloudNativePG's to generate.
            continue
        data = {c.key: ctx.passwords[c.password] for c in held}
        if engine is Engine.MINIO:
            # The MinIO operator reads the root credentials from config.env, unquoted.
            data["config.env"] = (
                f"export MINIO_ROOT_USER={data['accesskey']}\n"
                f"export MINIO_ROOT_PASSWORD={data['secretkey']}\n"
            )
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": ctx.metadata(
                    secret_name(engine),
                    labels={
                        # Listed by the worker with naming.GENERATED_CREDENTIALS_SELECTOR.
                        naming.LABEL_GENERATED_CREDENTIALS: "true",
                        "app.kubernetes.io/name": engine.value,
                        "app.kubernetes.io/component": "database",
                    },
                ),
                "type": "Opaque",
                # `data`, not `stringData`: what is applied is what is read back, so a
                # server-side re-apply compares equal and changes nothing.
                "data": {key: _b64(value) for key, value in sorted(data.items())},
            }
        )
    return manifests


def _b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")
