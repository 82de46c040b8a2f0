"""Bitbucket Cloud webhooks (repository and workspace), and the open pull requests, through the `Cloud` client.

`BitbucketCloudHookHost` is the worker's `BitbucketCloudHost` that also manages hooks, with the
same session, pacing and errors. The SDK's `Hooks.create` takes no secret, so hooks are written
with the client's own REST calls (`post`/`put` on `…/hooks`), as the rest of this client is.
Bitbucket keeps any number of hooks for one URL (duplicates are removed by `ensure`), never
disables one, shows whether a secret is set (`secret_set`) but never the secret, and has no API
for a hook's delivery history nor for a test delivery: missed deliveries are recovered by reading
the open pull requests instead (`open_changes`, the host client's own).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from providers.hosts.base import HostError
from providers.hosts.bitbucket_cloud import NAME, BitbucketCloudHost, _repository_path
from providers.hosts.hooks import Hook, HookScope, HookSpec, changes, parse_time


class BitbucketCloudHookHost(BitbucketCloudHost):
    # -- HookHost ----------------------------------------------------------------------------------

    def list_hooks(self, scope: HookScope) -> list[Hook]:
        endpoint = _hooks_path(scope)
        return self._request(
            lambda: [_hook(h) for h in self._pages(endpoint, {"pagelen": self.per_page})],
            f"the webhooks of {scope}",
        )

    def create_hook(self, scope: HookScope, spec: HookSpec) -> Hook:
        endpoint = _hooks_path(scope)
        return self._request(
            lambda: self._answer(self._cloud.post(endpoint, data=_data(spec)), scope),
            f"a webhook of {scope}",
            write=True,
        )

    def update_hook(self, scope: HookScope, hook: Hook, spec: HookSpec) -> Hook:
        endpoint = f"{_hooks_path(scope)}/{quote(hook.id, safe='')}"
        return self._request(
            lambda: self._answer(self._cloud.put(endpoint, data=_data(spec)), scope),
            f"webhook {hook.id} of {scope}",
            write=True,
        )

    def delete_hook(self, scope: HookScope, hook: Hook) -> None:
        endpoint = f"{_hooks_path(scope)}/{quote(hook.id, safe='')}"
        self._request(lambda: self._cloud.delete(endpoint), f"webhook {hook.id} of {scope}", write=True)

    def enable_hook(self, scope: HookScope, hook: Hook) -> str:
        return "it was made active"  # Bitbucket Cloud never disables a hook by itself

    def test_hook(self, scope: HookScope, hook: Hook) -> str:
        raise HostError(
            f"{NAME} has no API for a test delivery: use the hook's 'View requests' page, or push a commit"
        )

    def hook_changes(self, hook: Hook, spec: HookSpec) -> list[str]:
        found = changes(hook, spec)
        if spec.secret is not None and hook.settings.get("secret_set") == "false":
            found.append("secret (none was set)")
        return found

    def hook_notes(self, scope: HookScope, hook: Hook, spec: HookSpec) -> list[str]:
        return []

    def _answer(self, answer: Any, scope: HookScope) -> Hook:
        if not isinstance(answer, dict) or "uuid" not in answer:
            raise HostError(f"{NAME}: unexpected answer writing a webhook of {scope}")
        return _hook(answer)


def _hooks_path(scope: HookScope) -> str:
    if scope.kind == "repository":
        return f"{_repository_path(scope.name)}/hooks"
    if scope.kind == "group":
        if not scope.name or "/" in scope.name:
            raise HostError(f"{scope.name!r} is not a Bitbucket Cloud workspace")
        return f"workspaces/{quote(scope.name, safe='')}/hooks"
    raise HostError(f"{NAME} has no app webhooks: register the hook on a repository or a workspace")


def _data(spec: HookSpec) -> dict[str, Any]:
    data: dict[str, Any] = {
        "description": spec.name,
        "url": spec.url,
        "active": spec.active,
        "events": sorted(spec.events),
    }
    if spec.secret is not None:
        data["secret"] = spec.secret.get_secret_value()
    return data


def _hook(data: dict[str, Any]) -> Hook:
    return Hook(
        id=str(data.get("uuid") or ""),
        url=str(data.get("url") or ""),
        events=tuple(sorted(data.get("events") or ())),
        active=bool(data.get("active")),
        created_at=parse_time(data.get("created_at")),
        settings={"secret_set": str(bool(data.get("secret_set"))).lower()},
    )
