"""Bitbucket Cloud, through atlassian-python-api's `atlassian.bitbucket.Cloud`.

The calls go through the `Cloud` client's own REST methods rather than its object model: objects
it creates (repositories, pull requests) get a fresh timeout (75 s) and retry settings of their
own, while the client keeps the bounded ones given here. A pull request's payload names its head
commit by a 12-character hash; the full SHA is read from the commit endpoint.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests
from atlassian.bitbucket.cloud import Cloud
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

NAME = "Bitbucket Cloud"
_STATES = {"OPEN": "open", "MERGED": "merged", "DECLINED": "closed", "SUPERSEDED": "closed"}
FULL_SHA_LENGTH = 40
# atlassian-python-api's functions carry no annotations: its client is used as `Any`.
_Client: Any = Cloud


class BitbucketCloudHost:
    provider: Provider = Provider.BITBUCKET_CLOUD

    def __init__(
        self, url: str, token: SecretStr, policy: HttpPolicy, *, username: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._secrets = (token.get_secret_value(),)
        # A user name means HTTP Basic (an API token or app password); without one the token is a
        # workspace, project or repository access token, sent as a Bearer token.
        credentials: dict[str, Any] = (
            {"username": username, "password": token.get_secret_value()}
            if username
            else {"token": token.get_secret_value()}
        )
        self._credentials = (
            "K8S_EE_BITBUCKET_CLOUD_USERNAME and K8S_EE_BITBUCKET_CLOUD_TOKEN"
            if username
            else "K8S_EE_BITBUCKET_CLOUD_TOKEN"
        )
        self._cloud = _Client(
            url=self.url,
            session=policy.session(),
            timeout=policy.timeout_seconds,
            backoff_and_retry=False,
            retry_with_header=False,
            **credentials,
        )

    def change(self, repository: str, number: int) -> ChangeState:
        what = f"pull request {repository}#{number}"
        base = _repository_path(repository)
        pull = self._get_json(f"{base}/pullrequests/{number}", what)
        source = pull.get("source") or {}
        head_sha = str((source.get("commit") or {}).get("hash") or "")
        if not head_sha:
            raise HostError(f"{NAME}: {what} has no source commit")
        if len(head_sha) < FULL_SHA_LENGTH:
            commit = self._get_json(f"{base}/commit/{quote(head_sha, safe='')}", f"commit {head_sha}")
            head_sha = str(commit.get("hash") or "")
            if len(head_sha) != FULL_SHA_LENGTH:
                raise HostError(f"{NAME}: commit of {what} has no full hash")
        return ChangeState.model_validate(
            {
                "state": _STATES.get(str(pull.get("state")), "closed"),
                "head_sha": head_sha,
                "head_ref": (source.get("branch") or {}).get("name") or "",
                "base_ref": ((pull.get("destination") or {}).get("branch") or {}).get("name"),
                "draft": bool(pull.get("draft")),
                "updated_at": pull.get("updated_on"),
                "title": pull.get("title"),
                "url": ((pull.get("links") or {}).get("html") or {}).get("href"),
            }
        )

    def read_file(self, repository: str, path: str, ref: str) -> str | None:
        what = f"{path} at {ref} in {repository}"
        endpoint = f"{_repository_path(repository)}/src/{quote(ref, safe='')}/{quote(path.strip('/'))}"
        try:
            data = self._request(lambda: self._cloud.get(endpoint, not_json_response=True), what)
        except NotFound:
            return None
        return decode_text(data if isinstance(data, bytes) else b"", what)

    def repository_exists(self, repository: str) -> bool:
        try:
            self._get_json(_repository_path(repository), f"repository {repository}")
        except NotFound:
            return False
        return True

    def close(self) -> None:
        self._cloud.close()

    def _get_json(self, endpoint: str, what: str) -> dict[str, Any]:
        data = self._request(lambda: self._cloud.get(endpoint), what)
        if not isinstance(data, dict):
            raise HostError(f"{NAME}: unexpected answer reading {what}")
        return data

    def _request(self, call: Any, what: str) -> Any:
        try:
            return call()
        except requests.RequestException as exc:
            raise requests_error(NAME, self.url, exc, what, self._secrets, self._credentials) from exc


def _repository_path(repository: str) -> str:
    workspace, slug = owner_and_name(repository, "workspace/repo_slug")
    return f"repositories/{quote(workspace, safe='')}/{quote(slug, safe='')}"
