"""What a fork's change may have of its repository's configuration. Pure.

A fork's code is not trusted with the repository's secrets: the `envFrom` entries that name a
Secret are dropped before rendering (ConfigMaps stay). The configuration itself is read from the
change's base branch, never from the fork's own k8s-ee.yaml (handlers.reconcile), and only an
approved commit is deployed (handlers.policy).
"""

from __future__ import annotations

from handlers.config import RepoConfig


def without_secrets(config: RepoConfig) -> RepoConfig:
    kept = tuple(source for source in config.env_from if source.secret_ref is None)
    return config.model_copy(update={"env_from": kept})
