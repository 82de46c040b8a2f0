"""GitHub and GitHub Enterprise Server, through PyGithub.

Authenticates with a token, or as a GitHub App: the app's JWT finds the installation of each
repository (cached per repository), and one client per installation holds an installation token
that PyGithub's `AppInstallationAuth` renews shortly before it expires. Clients are lazy, so
reading a pull request is one request.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from github import Auth, Github, GithubException, GithubIntegration, GithubRetry
from github.GithubException import RateLimitExceededExceedsMaxWait, RateLimitExceededException
from github.Repository import Repository
from pydantic import SecretStr

from gateway.events import Provider
from providers.host_settings import HostSettings
from providers.hosts import (
    USER_AGENT,
    ChangeState,
    HostError,
    HostUnavailable,
    HttpPolicy,
    NotFound,
    WaitCappedMixin,
    decode_text,
    owner_and_name,
    redact,
    retry_after,
    status_error,
    unreachable,
)

T = TypeVar("T")
NAME = "GitHub"


class _Retry(WaitCappedMixin, GithubRetry):
    """PyGithub's retry (it knows GitHub's 403 rate-limit answers), bounded like every host's."""


def _retry(policy: HttpPolicy) -> _Retry:
    options = policy.retry_options()
    # GitHub signals rate limits with 403 (and 429); GithubRetry retries a 403 only when it is one.
    options["status_forcelist"] = [*options["status_forcelist"], 403]
    # GithubRetry would also repeat POSTs: a comment must not be posted twice, so only idempotent
    # calls are repeated (a failed token mint surfaces as HostUnavailable, and is tried next time).
    options["allowed_methods"] = GithubRetry.DEFAULT_ALLOWED_METHODS
    # GitHub asks for at least a minute's wait after a secondary rate limit.
    return _Retry(secondary_rate_wait=60, max_rate_limit_wait=policy.max_wait, **options)


class GitHubHost:
    provider: Provider = Provider.GITHUB

    def __init__(
        self,
        api_url: str,
        policy: HttpPolicy,
        *,
        token: SecretStr | None = None,
        app_id: str | None = None,
        private_key: SecretStr | None = None,
        seconds_between_requests: float | None = 0.25,
        seconds_between_writes: float | None = 1.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        options: dict[str, Any] = {
            "base_url": self.api_url,
            "timeout": policy.timeout_seconds,
            "user_agent": USER_AGENT,
            "retry": _retry(policy),
            "seconds_between_requests": seconds_between_requests or None,
            "seconds_between_writes": seconds_between_writes or None,
            "lazy": True,
        }
        self._lock = threading.Lock()
        self._github: Github | None = None
        self._integration: GithubIntegration | None = None
        self._installations: dict[str, int] = {}  # "owner/repo" -> installation id
        self._clients: dict[int, Github] = {}  # installation id -> client holding its token
        if token is not None:
            self._secrets = (token.get_secret_value(),)
            self._credentials = "K8S_EE_GITHUB_TOKEN"
            self._github = Github(auth=Auth.Token(token.get_secret_value()), **options)
        elif app_id and private_key is not None:
            self._secrets = (private_key.get_secret_value(),)
            self._credentials = "K8S_EE_GITHUB_APP_ID and K8S_EE_GITHUB_APP_PRIVATE_KEY"
            auth = Auth.AppAuth(app_id, private_key.get_secret_value())
            self._integration = GithubIntegration(auth=auth, **options)
        else:
            raise ValueError("GitHubHost needs a token, or an app id and private key")

    @classmethod
    def from_settings(cls, settings: HostSettings, policy: HttpPolicy) -> GitHubHost:
        if settings.github_app:
            credentials: dict[str, Any] = {
                "app_id": settings.github_app_id,
                "private_key": settings.github_app_private_key,
            }
        else:
            credentials = {"token": settings.github_token}
        return cls(
            settings.github_api_url,
            policy,
            seconds_between_requests=settings.github_seconds_between_requests,
            seconds_between_writes=settings.github_seconds_between_writes,
            **credentials,
        )

    # -- the Host interface ------------------------------------------------------------------------

    def change(self, repository: str, number: int) -> ChangeState:
        what = f"pull request {repository}#{number}"

        def read(repo: Repository) -> ChangeState:
            pull = repo.get_pull(number)
            pull.complete()
            return ChangeState(
                state="merged" if pull.merged else "open" if pull.state == "open" else "closed",
                head_sha=pull.head.sha,
                head_ref=pull.head.ref,
                base_ref=pull.base.ref,
                draft=bool(pull.draft),
                updated_at=pull.updated_at,
                title=pull.title,
                url=pull.html_url,
            )

        return self._call(repository, what, read)

    def read_file(self, repository: str, path: str, ref: str) -> str | None:
        what = f"{path} at {ref} in {repository}"

        def read(repo: Repository) -> str | None:
            content = repo.get_contents(path.strip("/"), ref=ref)
            if isinstance(content, list) or content.type != "file":
                return None  # a directory (or a submodule) is not the file asked for
            if content.encoding == "base64":
                return decode_text(content.decoded_content, what)
            # Over 1 MB the contents API leaves `content` empty: read the blob instead.
            blob = repo.get_git_blob(content.sha)
            return decode_text(base64.b64decode(blob.content), what)

        try:
            return self._call(repository, what, read)
        except NotFound:
            return None

    def repository_exists(self, repository: str) -> bool:
        def read(repo: Repository) -> bool:
            repo.complete()
            return True

        try:
            return self._call(repository, f"repository {repository}", read)
        except NotFound:
            return False

    def close(self) -> None:
        with self._lock:
            clients = [*self._clients.values(), *([self._github] if self._github else [])]
            self._clients.clear()
        for client in clients:
            client.close()
        if self._integration is not None:
            self._integration.close()

    # -- clients -----------------------------------------------------------------------------------

    def _call(self, repository: str, what: str, read: Callable[[Repository], T]) -> T:
        owner_and_name(repository)
        try:
            try:
                return read(self._client(repository).get_repo(repository))
            except GithubException as exc:
                if exc.status != 401 or self._integration is None:
                    raise
                # The app was uninstalled or its token revoked: look the installation up afresh,
                # once.
                self._forget(repository)
                return read(self._client(repository).get_repo(repository))
        except GithubException as exc:
            raise self._error(exc, what) from exc
        except requests.RequestException as exc:
            raise unreachable(NAME, self.api_url, exc) from exc

    def _client(self, repository: str) -> Github:
        if self._github is not None:
            return self._github
        assert self._integration is not None
        with self._lock:
            installation_id = self._installations.get(repository)
        if installation_id is None:
            owner, name = owner_and_name(repository)
            try:
                installation_id = self._integration.get_repo_installation(owner, name).id
            except GithubException as exc:
                if exc.status == 404:
                    raise NotFound(
                        f"{NAME}: the app is not installed on {repository}, or it does not exist"
                    ) from exc
                raise
        with self._lock:
            self._installations[repository] = installation_id
            client = self._clients.get(installation_id)
            if client is None:
                client = self._integration.get_github_for_installation(installation_id)
                self._clients[installation_id] = client
        try:
            # Mint (or reuse) the installation token now, so that a failure to mint one is not
            # taken for the answer to the call itself (a 404 here means the installation is gone).
            auth = client.requester.auth
            if auth is not None:
                auth.token  # noqa: B018
        except GithubException as exc:
            self._forget(repository)
            if exc.status == 404:
                raise NotFound(f"{NAME}: the app is no longer installed on {repository}") from exc
            raise
        return client

    def _forget(self, repository: str) -> None:
        with self._lock:
            installation_id = self._installations.pop(repository, None)
            if installation_id is not None:
                self._clients.pop(installation_id, None)

    def _error(self, exc: GithubException, what: str) -> HostError:
        data = exc.data if isinstance(exc.data, dict) else {}
        detail = redact(str(data.get("message") or exc.message or ""), self._secrets)
        headers = {str(k): str(v) for k, v in (exc.headers or {}).items()}
        if isinstance(exc, RateLimitExceededException):
            wait = exc.wait if isinstance(exc, RateLimitExceededExceedsMaxWait) else None
            return HostUnavailable(
                f"{NAME} rate limit reached reading {what} ({exc.status} {detail})",
                status=exc.status,
                retry_after=wait if wait is not None else retry_after(headers),
            )
        return status_error(NAME, exc.status, detail, what, headers=headers, credentials=self._credentials)
