"""Render a preview environment's manifests: a pure function of its inputs.

`render_environment` reads no clock, no cluster and no randomness: the same
target, configuration, settings and passwords give the same manifests, in the
order they are to be applied (server-side, under one field manager, so a
re-apply is a no-op). Namespace first, then its guard rails (quota, limits,
network policies), the generated-credential Secrets, the databases, and the app
last, so that everything the app refers to exists before it starts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from handlers import naming
from handlers.config import RepoConfig
from handlers.render import app, databases, namespace, policies, security
from handlers.render.context import Context, Manifest
from handlers.render.credentials import (
    CREDENTIALS,
    MissingPasswords,
    PasswordError,
    UnusablePasswords,
    check_passwords,
    generated_secrets,
    new_password,
    passwords_from_secrets,
    required_passwords,
)
from handlers.render.models import RenderSettings, RenderTarget

__all__ = [
    "CREDENTIALS",
    "Manifest",
    "MissingPasswords",
    "PasswordError",
    "RenderSettings",
    "RenderTarget",
    "UnusablePasswords",
    "new_password",
    "passwords_from_secrets",
    "render_environment",
    "required_passwords",
]


def render_environment(
    target: RenderTarget,
    config: RepoConfig,
    settings: RenderSettings,
    passwords: Mapping[str, str],
) -> list[Manifest]:
    """Every object of the environment, in apply order.

    `passwords` must hold every name `required_passwords(config)` lists:
    `MissingPasswords` / `UnusablePasswords` (ValueErrors) name the ones that are
    not there or not usable, never a value. Extra names are ignored. A ValueError
    also comes when the app's image cannot be derived from the repository's name.
    """
    check_passwords(config, passwords)
    namespace_name = naming.namespace_name(config.project_id, target.number)
    naming.check_app_name(namespace_name)
    ctx = Context(
        target=target,
        config=config,
        settings=settings,
        passwords=dict(passwords),
        namespace=namespace_name,
    )
    security.check_levels(ctx)
    enabled = config.enabled_databases()
    config_map = app.config_map(ctx)
    contents: list[Manifest] = [
        *generated_secrets(ctx),
        *(obj for db in enabled for obj in databases.database_objects(ctx, db)),
        config_map,
        app.deployment(ctx, config_map),
        app.service(ctx),
    ]
    if config.ingress.enabled:
        contents.append(app.ingress(ctx))
    if config.metrics.enabled:
        contents.append(app.service_monitor(ctx))
    manifests: list[Manifest] = [
        namespace.namespace(ctx),
        # Sized from what the namespace will run.
        policies.resource_quota(ctx, contents),
        policies.limit_range(ctx),
        *policies.network_policies(ctx),
        *contents,
    ]
    # Plain JSON data, no dict or list shared between two places: callers may change what they get.
    fresh: list[Manifest] = json.loads(json.dumps(manifests))
    return fresh
