"""Build the clients of the code hosts whose credentials are set: above the four clients, so none imports it."""

from __future__ import annotations

from typing import cast

from providers.events import Provider
from providers.hosts.base import Host, HostError
from providers.hosts.gate import WriteGate
from providers.hosts.hooks import HookHost
from providers.hosts.http import HttpPolicy
from providers.hosts.settings import HostSettings

# The variables that enable each provider's client.
CREDENTIALS = {
    Provider.GITHUB: "K8S_EE_GITHUB_TOKEN (or K8S_EE_GITHUB_APP_ID and K8S_EE_GITHUB_APP_PRIVATE_KEY)",
    Provider.GITLAB: "K8S_EE_GITLAB_API_TOKEN",
    Provider.BITBUCKET_CLOUD: "K8S_EE_BITBUCKET_CLOUD_TOKEN",
    Provider.BITBUCKET_SERVER: "K8S_EE_BITBUCKET_SERVER_URL and K8S_EE_BITBUCKET_SERVER_TOKEN",
}


def configured(provider: Provider, settings: HostSettings) -> bool:
    if provider == Provider.GITHUB:
        return bool(settings.github_token or settings.github_app)
    if provider == Provider.GITLAB:
        return settings.gitlab_api_token is not None
    if provider == Provider.BITBUCKET_CLOUD:
        return settings.bitbucket_cloud_token is not None
    if provider == Provider.BITBUCKET_SERVER:
        return bool(settings.bitbucket_server_url and settings.bitbucket_server_token)
    return False


def build_hosts(settings: HostSettings, write_gate: WriteGate | None = None) -> dict[Provider, Host]:
    """One client per provider whose credentials are set. An SDK is imported only when it is used.
    `write_gate` paces the writes of each credential (the worker's is shared through Redis); without
    one, each client paces its writes in its own process."""
    policy = HttpPolicy.from_settings(settings)
    return {
        provider: _build(provider, settings, policy, hooks=False, write_gate=write_gate)
        for provider in Provider
        if configured(provider, settings)
    }


def build_hook_host(provider: Provider, settings: HostSettings, policy: HttpPolicy | None = None) -> HookHost:
    """The client that also manages `provider`'s webhooks (the command line's `hooks` and `deliveries`)."""
    if provider not in CREDENTIALS:
        raise HostError(f"{provider.value} has no webhooks to manage")
    if not configured(provider, settings):
        raise HostError(f"no credentials for {provider.value}: set {CREDENTIALS[provider]}")
    return cast(
        HookHost, _build(provider, settings, policy or HttpPolicy.from_settings(settings), hooks=True)
    )


def _build(
    provider: Provider,
    settings: HostSettings,
    policy: HttpPolicy,
    *,
    hooks: bool,
    write_gate: WriteGate | None = None,
) -> Host:
    if provider == Provider.GITHUB:
        from providers.hosts.github import GitHubHost
        from providers.hosts.github_hooks import GitHubHookHost

        return (GitHubHookHost if hooks else GitHubHost).from_settings(settings, policy, write_gate)
    if provider == Provider.GITLAB:
        from providers.hosts.gitlab import GitLabHost
        from providers.hosts.gitlab_hooks import GitLabHookHost

        assert settings.gitlab_api_token is not None
        return (GitLabHookHost if hooks else GitLabHost)(
            settings.gitlab_url, settings.gitlab_api_token, policy
        )
    if provider == Provider.BITBUCKET_CLOUD:
        from providers.hosts.bitbucket_cloud import BitbucketCloudHost
        from providers.hosts.bitbucket_cloud_hooks import BitbucketCloudHookHost

        assert settings.bitbucket_cloud_token is not None
        return (BitbucketCloudHookHost if hooks else BitbucketCloudHost)(
            settings.bitbucket_cloud_url,
            settings.bitbucket_cloud_token,
            policy,
            username=settings.bitbucket_cloud_username,
        )
    from providers.hosts.bitbucket_server import BitbucketServerHost
    from providers.hosts.bitbucket_server_hooks import BitbucketServerHookHost

    assert settings.bitbucket_server_url is not None and settings.bitbucket_server_token is not None
    return (BitbucketServerHookHost if hooks else BitbucketServerHost)(
        settings.bitbucket_server_url, settings.bitbucket_server_token, policy
    )
