"""Bitbucket Data Center (Server), through atlassian-python-api's `atlassian.Bitbucket`.

Authenticates with an HTTP access token (Bearer). Repositories are `PROJECTKEY/repo-slug`;
personal repositories (`~USER/repo`) work the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from atlassian import Bitbucket
from pydantic import SecretStr

from gateway.events import Provider
from providers.hosts import (
    ChangeState,
    HostError,
    HttpPolicy,
    NotFound,
    decode_text,
    owner_and_name,
    requests_error,
)

NAME = "Bitbucket Data Center"
# atlassian-python-api's functions carry no annotations: its client is used as `Any`.
_Client: Any = Bitbucket
_STATES = {"OPEN": "open", "MERGED": "merged", "DECLINED": "closed"}


class BitbucketServerHost:
    provider: Provider = Provider.BITBUCKET_SERVER

    def __init__(self, url: str, token: SecretStr, policy: HttpPolicy) -> None:
        self.url = url.rstrip("/")
        self._secrets = (token.get_secret_value(),)
        self._server = _Client(
            url=self.url,
            token=token.get_secret_value(),
            session=policy.session(),
            timeout=policy.timeout_seconds,
            backoff_and_retry=False,
            retry_with_header=False,
        )

    def change(self, repository: str, number: int) -> ChangeState:
        what = f"pull request {repository}#{number}"
        key, slug = _key_and_slug(repository)
        pull = self._request(lambda: self._server.get_pull_request(key, slug, number), what)
        if not isinstance(pull, dict):
            raise HostError(f"{NAME}: unexpected answer reading {what}")
        source = pull.get("fromRef") or {}
        head_sha = source.get("latestCommit")
        if not head_sha:
            raise HostError(f"{NAME}: {what} has no source commit")
        updated = pull.get("updatedDate")
        links = (pull.get("links") or {}).get("self") or [{}]
        return ChangeState.model_validate(
            {
                "state": _STATES.get(str(pull.get("state")), "closed"),
                "head_sha": head_sha,
                "head_ref": _branch(source),
                "base_ref": _branch(pull.get("toRef") or {}) or None,
                "draft": bool(pull.get("draft")),
                # Data Center gives epoch milliseconds.
                "updated_at": datetime.fromtimestamp(updated / 1000, UTC)
                if isinstance(updated, int)
                else None,
                "title": pull.get("title"),
                "url": links[0].get("href"),
            }
        )

    def read_file(self, repository: str, path: str, ref: str) -> str | None:
        what = f"{path} at {ref} in {repository}"
        key, slug = _key_and_slug(repository)
        # The SDK puts the path into the URL as given: quote it, so that `#`, `?` and `%` survive.
        quoted = quote(path.strip("/"))
        try:
            data = self._request(lambda: self._server.get_content_of_file(key, slug, quoted, at=ref), what)
        except NotFound:
            return None
        return decode_text(data if isinstance(data, bytes) else b"", what)

    def repository_exists(self, repository: str) -> bool:
        key, slug = _key_and_slug(repository)
        try:
            self._request(lambda: self._server.get_repo(key, slug), f"repository {repository}")
        except NotFound:
            return False
        return True

    def close(self) -> None:
        self._server.close()

    def _request(self, call: Callable[[], Any], what: str) -> Any:
        try:
            return call()
        except requests.RequestException as exc:
            raise requests_error(
                NAME, self.url, exc, what, self._secrets, "K8S_EE_BITBUCKET_SERVER_TOKEN"
            ) from exc


def _key_and_slug(repository: str) -> tuple[str, str]:
    key, slug = owner_and_name(repository, "PROJECTKEY/repo-slug")
    # A personal project's key is `~USER`. The SDK would send that to `/users/~USER/repos`, which
    # Data Center does not serve; `%7E` keeps it on `/projects/~USER/repos` (requests turns it
    # back into `~` on the wire).
    return quote(key, safe="").replace("~", "%7E"), quote(slug, safe="")


def _branch(ref: dict[str, Any]) -> str:
    return str(ref.get("displayId") or str(ref.get("id") or "").removeprefix("refs/heads/"))
