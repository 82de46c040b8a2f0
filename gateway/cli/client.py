"""Talking to a running gateway: its admin API (`/api/v1`, the admin token) and its generic trigger."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from gateway.cli.output import CliError, UsageError
from gateway.cli.settings import Settings

TIMEOUT = 15.0


def gateway_url(given: str | None, settings: Settings) -> str:
    url = (given or settings.cli.gateway_url or "").rstrip("/")
    if not url:
        raise UsageError("where is the gateway? pass --gateway URL or set K8S_EE_GATEWAY_URL")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--gateway must be an http:// or https:// URL (got {url!r})")
    return url


def environment_path(key: str) -> str:
    """`/api/v1/environments/{provider}/{repository}/{number}` of `provider:repository:number`."""
    provider, _, rest = key.partition(":")
    repository, _, number = rest.rpartition(":")
    if not provider or not repository or not number.isdigit():
        raise UsageError(f"{key!r} is not an environment: give provider:repository:number or a namespace")
    return f"/api/v1/environments/{quote(provider, safe='')}/{quote(repository, safe='/')}/{number}"


def admin_gateway(given: str | None) -> Gateway:
    """The admin API of the gateway at `--gateway` (else K8S_EE_GATEWAY_URL), with K8S_EE_ADMIN_TOKEN."""
    from gateway.cli.settings import load_settings

    settings = load_settings()
    return Gateway(gateway_url(given, settings), settings.first("admin_token"))


class Gateway:
    """The admin API of one gateway. Errors become `CliError` with the gateway's own reason."""

    def __init__(self, url: str, token: str | None, *, timeout: float = TIMEOUT) -> None:
        self.url = url
        self._token = token
        self._client = httpx.Client(base_url=url, timeout=timeout, headers={"User-Agent": "k8s-ee-cli"})

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def _auth(self) -> dict[str, str]:
        if not self._token:
            raise UsageError("the admin API needs its token: set K8S_EE_ADMIN_TOKEN")
        return {"Authorization": f"Bearer {self._token}"}

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        allow: tuple[int, ...] = (),
    ) -> tuple[int, Any]:
        """The status and JSON answer; an error answer not in `allow` raises `CliError`."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            answer = self._client.request(
                method, path, params=clean, json=json, headers={**self._auth(), **(headers or {})}
            )
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the gateway at {self.url}: {type(exc).__name__}") from None
        try:
            body = answer.json()
        except ValueError:
            body = {"error": answer.text[:300]}
        if answer.status_code >= 400 and answer.status_code not in allow:
            reason = body.get("error") or body.get("reason") if isinstance(body, dict) else None
            if answer.status_code == 401:
                raise CliError(f"the gateway refused the admin token ({reason}); check K8S_EE_ADMIN_TOKEN")
            raise CliError(f"the gateway answered {answer.status_code}: {reason or answer.text[:300]}")
        return answer.status_code, body

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)[1]

    def find(self, path: str, **params: Any) -> Any | None:
        """Like `get`, but None for a 404."""
        status, body = self.request("GET", path, params=params, allow=(404,))
        return None if status == 404 else body

    def environment(self, target: str) -> dict[str, Any]:
        """An environment by `provider:repository:number`, or by its namespace."""
        path = environment_path(target) if ":" in target else f"/api/v1/environments/{quote(target, safe='')}"
        found = self.find(path)
        if found is None:
            raise CliError(f"the gateway knows no environment {target}")
        return dict(found)

    def pages(self, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
        """Items of a paged listing, following `next_cursor`, up to `limit` of them."""
        found: list[dict[str, Any]] = []
        cursor = None
        while len(found) < limit:
            page = self.get(path, **params, limit=min(500, limit - len(found)), cursor=cursor)
            found += page.get("items") or []
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found[:limit]
