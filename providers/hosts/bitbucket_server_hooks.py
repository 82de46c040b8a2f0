"""Bitbucket Data Center webhooks (repository and project), and the open pull requests, through `atlassian.Bitbucket`.

`BitbucketServerHookHost` is the worker's `BitbucketServerHost` that also manages hooks, with the
same session, pacing and errors. Repository hooks go through the SDK's webhook calls
(`get_webhooks` reads every page); it has none for project hooks (inherited by every repository of
the project), which go through the client's own paged `get` and `post`/`put`/`delete`, under the
same policy. Data Center keeps any number of hooks for one URL (duplicates are removed by
`ensure`), never shows a secret, and has no delivery log to replay from: missed deliveries are
recovered by reading the open pull requests (`open_changes`, the host client's own). `test` is Data Center's own
connection test (`POST …/webhooks/test`), which reports the gateway's answer.
"""

from __future__ import annotations

from typing import Any

from providers.hosts.base import HostError
from providers.hosts.bitbucket_server import NAME, BitbucketServerHost, _key_and_slug
from providers.hosts.hooks import Hook, HookScope, HookSpec, changes, parse_time


class BitbucketServerHookHost(BitbucketServerHost):
    # -- HookHost ----------------------------------------------------------------------------------

    def list_hooks(self, scope: HookScope) -> list[Hook]:
        def read() -> list[Hook]:
            if scope.kind == "repository":
                key, slug = _key_and_slug(scope.name)
                found = self._server.get_webhooks(key, slug)
            else:
                found = self._server._get_paged(self._project_hooks(scope), params={"limit": self.per_page})
            return [_hook(h) for h in found if isinstance(h, dict)]

        return self._request(read, f"the webhooks of {scope}")

    def create_hook(self, scope: HookScope, spec: HookSpec) -> Hook:
        def write() -> Hook:
            if scope.kind == "repository":
                key, slug = _key_and_slug(scope.name)
                answer = self._server.create_webhook(
                    key,
                    slug,
                    spec.name,
                    list(spec.events),
                    spec.url,
                    spec.active,
                    secret=spec.secret.get_secret_value() if spec.secret is not None else None,
                )
            else:
                answer = self._server.post(self._project_hooks(scope), data=_data(spec))
            return self._answer(answer, scope)

        return self._request(write, f"a webhook of {scope}", write=True)

    def update_hook(self, scope: HookScope, hook: Hook, spec: HookSpec) -> Hook:
        def write() -> Hook:
            if scope.kind == "repository":
                key, slug = _key_and_slug(scope.name)
                answer = self._server.update_webhook(key, slug, hook.id, **_data(spec))
            else:
                answer = self._server.put(f"{self._project_hooks(scope)}/{int(hook.id)}", data=_data(spec))
            return self._answer(answer, scope)

        return self._request(write, f"webhook {hook.id} of {scope}", write=True)

    def delete_hook(self, scope: HookScope, hook: Hook) -> None:
        def write() -> None:
            if scope.kind == "repository":
                key, slug = _key_and_slug(scope.name)
                self._server.delete_webhook(key, slug, hook.id)
            else:
                self._server.delete(f"{self._project_hooks(scope)}/{int(hook.id)}")

        self._request(write, f"webhook {hook.id} of {scope}", write=True)

    def enable_hook(self, scope: HookScope, hook: Hook) -> str:
        return "it was made active"  # Data Center never disables a hook by itself

    def test_hook(self, scope: HookScope, hook: Hook) -> str:
        base = self._repository_hooks(scope) if scope.kind == "repository" else self._project_hooks(scope)
        params = {"url": hook.url, "webhookId": hook.id, "sslVerificationRequired": "true"}
        answer = self._request(
            lambda: self._server.post(f"{base}/test", params=params, data={}),
            f"the test of webhook {hook.id} of {scope}",
            write=True,
        )
        response = (answer or {}).get("response") if isinstance(answer, dict) else None
        status = (response or {}).get("status") if isinstance(response, dict) else None
        if status is None:
            raise HostError(
                f"{NAME}: the test of webhook {hook.id} of {scope} got no answer from the gateway"
            )
        if not 200 <= int(status) < 300:
            raise HostError(f"{NAME}: the gateway answered the test of webhook {hook.id} with {status}")
        return f"{NAME} sent its test request and the gateway answered {status}"

    def hook_changes(self, hook: Hook, spec: HookSpec) -> list[str]:
        return changes(hook, spec)

    def hook_notes(self, scope: HookScope, hook: Hook, spec: HookSpec) -> list[str]:
        return []

    # -- paths -------------------------------------------------------------------------------------

    def _repository_hooks(self, scope: HookScope) -> str:
        key, slug = _key_and_slug(scope.name)
        return str(self._server._url_webhooks(key, slug))

    def _project_hooks(self, scope: HookScope) -> str:
        if scope.kind != "group":
            raise HostError(f"{NAME} has no app webhooks: register the hook on a repository or a project")
        if not scope.name or "/" in scope.name:
            raise HostError(f"{scope.name!r} is not a Bitbucket Data Center project key")
        key, _ = _key_and_slug(f"{scope.name}/x")
        return str(self._server.resource_url(f"projects/{key}/webhooks"))

    def _answer(self, answer: Any, scope: HookScope) -> Hook:
        if not isinstance(answer, dict) or "id" not in answer:
            raise HostError(f"{NAME}: unexpected answer writing a webhook of {scope}")
        return _hook(answer)


def _data(spec: HookSpec) -> dict[str, Any]:
    """A full `RestWebhook`: Data Center's PUT replaces the hook with what it is sent."""
    data: dict[str, Any] = {
        "name": spec.name,
        "url": spec.url,
        "active": spec.active,
        "events": list(spec.events),
        "configuration": {},
        "sslVerificationRequired": True,
    }
    if spec.secret is not None:
        data["configuration"]["secret"] = spec.secret.get_secret_value()
    return data


def _hook(data: dict[str, Any]) -> Hook:
    return Hook(
        id=str(data.get("id")),
        url=str(data.get("url") or ""),
        events=tuple(sorted(data.get("events") or ())),
        active=bool(data.get("active")),
        created_at=parse_time(data.get("createdDate")),
    )
