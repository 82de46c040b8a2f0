"""Build the clients of the code hosts whose credentials are set: above the four clients, so none imports it."""

from __future__ import annotations

from providers.events import Provider
from providers.hosts.base import Host
from providers.hosts.http import HttpPolicy
from providers.hosts.settings import HostSettings


def build_hosts(settings: HostSettings) -> dict[Provider, Host]:
    """One client per provider whose credentials are set. An SDK is imported only when it is used."""
    policy = HttpPolicy.from_settings(settings)
    hosts: dict[Provider, Host] = {}
    if settings.github_token or settings.github_app:
        from providers.hosts.github import GitHubHost

        hosts[Provider.GITHUB] = GitHubHost.from_settings(settings, policy)
    if settings.gitlab_api_token:
        from providers.hosts.gitlab import GitLabHost

        hosts[Provider.GITLAB] = GitLabHost(settings.gitlab_url, settings.gitlab_api_token, policy)
    if settings.bitbucket_cloud_token:
        from providers.hosts.bitbucket_cloud import BitbucketCloudHost

        hosts[Provider.BITBUCKET_CLOUD] = BitbucketCloudHost(
            settings.bitbucket_cloud_url,
            settings.bitbucket_cloud_token,
            policy,
            username=settings.bitbucket_cloud_username,
        )
    if settings.bitbucket_server_url and settings.bitbucket_server_token:
        from providers.hosts.bitbucket_server import BitbucketServerHost

        hosts[Provider.BITBUCKET_SERVER] = BitbucketServerHost(
            settings.bitbucket_server_url, settings.bitbucket_server_token, policy
        )
    return hosts
