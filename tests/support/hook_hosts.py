"""One fake code host of each kind with a repository and a group, and the real hook client pointed at it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from providers.events import Provider
from providers.hosts.build import build_hook_host
from providers.hosts.hooks import HookHost, HookScope
from providers.hosts.settings import load_host_settings
from tests.fakes.fakehosts import FakeBitbucketCloud, FakeBitbucketServer, FakeGitHub, FakeGitLab, FakeHost

TOKEN = "hook-admin-token"
REPOSITORIES = {
    Provider.GITHUB: "octo/app",
    Provider.GITLAB: "grp/sub/app",
    Provider.BITBUCKET_CLOUD: "ws/app",
    Provider.BITBUCKET_SERVER: "PROJ/app",
}
GROUPS = {
    Provider.GITHUB: "octo",
    Provider.GITLAB: "grp",
    Provider.BITBUCKET_CLOUD: "ws",
    Provider.BITBUCKET_SERVER: "PROJ",
}
HOOK_PROVIDERS = list(REPOSITORIES)


@dataclass
class HookedHost:
    provider: Provider
    fake: Any
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def repository(self) -> str:
        return REPOSITORIES[self.provider]

    @property
    def group(self) -> str:
        return GROUPS[self.provider]

    def scope(self, kind: str = "repository") -> HookScope:
        return HookScope(kind=kind, name=self.repository if kind == "repository" else self.group)  # type: ignore[arg-type]

    def where(self, kind: str = "repository") -> str:
        """How the fake names the scope's hooks."""
        if kind == "repository":
            return self.repository
        return f"group:{self.group}" if self.provider == Provider.GITLAB else self.group

    def host(self, **overrides: Any) -> HookHost:
        return build_hook_host(self.provider, load_host_settings(**{**self.settings, **overrides}))

    def hooks(self, kind: str = "repository") -> list[Any]:
        return list(self.fake.hooks_of(self.where(kind)))

    def add_hook(self, url: str, kind: str = "repository", **kwargs: Any) -> Any:
        return self.fake.add_hook(self.where(kind), url, **kwargs)

    def url_of(self, hook: Any) -> str:
        return str(hook.config.get("url")) if self.provider == Provider.GITHUB else str(hook.url)

    def secret_of(self, hook: Any) -> str | None:
        if self.provider == Provider.GITHUB:
            return hook.config.get("secret")  # type: ignore[no-any-return]
        return hook.token if self.provider == Provider.GITLAB else hook.secret  # type: ignore[no-any-return]

    def events_of(self, hook: Any) -> set[str]:
        if self.provider == Provider.GITLAB:
            return {flag for flag, on in hook.flags.items() if on}
        return set(hook.events)

    def ours(self, url: str, kind: str = "repository") -> list[Any]:
        from providers.hosts.hooks import same_url

        return [hook for hook in self.hooks(kind) if same_url(self.url_of(hook), url)]

    def export(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Set the K8S_EE_* variables that point the command line's host client here, for one test."""
        for name, value in self.settings.items():
            monkeypatch.setenv(f"K8S_EE_{name.upper()}", str(value))


@contextlib.contextmanager
def hooked(provider: Provider) -> Iterator[HookedHost]:
    fake: FakeHost
    if provider == Provider.GITHUB:
        github = FakeGitHub()
        github.add_token(TOKEN)
        github.add_repo(REPOSITORIES[provider])
        github.add_organisation(GROUPS[provider])
        fake = github
        settings: dict[str, Any] = {
            "github_token": TOKEN,
            "github_seconds_between_requests": 0,
            "github_seconds_between_writes": 0,
        }
    elif provider == Provider.GITLAB:
        gitlab = FakeGitLab()
        gitlab.add_token(TOKEN)
        gitlab.add_project(REPOSITORIES[provider])
        gitlab.add_group(GROUPS[provider])
        fake, settings = gitlab, {"gitlab_api_token": TOKEN}
    elif provider == Provider.BITBUCKET_CLOUD:
        cloud = FakeBitbucketCloud()
        cloud.add_bearer(TOKEN)
        cloud.add_repository(REPOSITORIES[provider])
        cloud.add_workspace(GROUPS[provider])
        fake, settings = cloud, {"bitbucket_cloud_token": TOKEN}
    else:
        server = FakeBitbucketServer()
        server.add_token(TOKEN)
        server.add_repository(REPOSITORIES[provider])
        server.add_project(GROUPS[provider])
        fake, settings = server, {"bitbucket_server_token": TOKEN}
    with fake:
        url_setting = {
            Provider.GITHUB: ("github_api_url", fake.url),
            Provider.GITLAB: ("gitlab_url", fake.origin),
            Provider.BITBUCKET_CLOUD: ("bitbucket_cloud_url", fake.origin),
            Provider.BITBUCKET_SERVER: ("bitbucket_server_url", fake.origin),
        }[provider]
        settings[url_setting[0]] = url_setting[1]
        settings["host_retry_backoff"] = 0
        yield HookedHost(provider, fake, settings)
