"""GitHub webhooks through PyGithub: repository and organisation hooks, and a GitHub App's own webhook.

`GitHubHookHost` is the worker's `GitHubHost` that also manages hooks, with the same pacing,
retries and errors. Repository and organisation hooks are PyGithub's `Hook` objects (every page of
`get_hooks`); a second hook for one URL is refused with 422 "Hook already exists", raised here as
`HookExists`. PyGithub has no call for redelivery nor for an App's webhook (`/app/hook/*`, which
takes the app's JWT): those go through PyGithub's requester, the client's own, so the same policy
applies. An App's subscribed events are set on its settings page only: `hook_notes` names the
ones missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from github import Github, GithubException
from github.Hook import Hook as GitHubHook
from github.Organization import Organization
from github.Repository import Repository

from providers.hosts.base import HostError, NotFound
from providers.hosts.github import NAME, GitHubHost
from providers.hosts.hooks import Hook, HookAttempt, HookExists, HookScope, HookSpec, changes, parse_time

T = TypeVar("T")
Target = Repository | Organization
APP_HOOK_ID = "app"
_CONFIG = {"content_type": "json", "insecure_ssl": "0"}


class GitHubHookHost(GitHubHost):
    # -- HookHost ----------------------------------------------------------------------------------

    def list_hooks(self, scope: HookScope) -> list[Hook]:
        if scope.kind == "app":
            return [self._app_hook()]
        return self._on(
            scope, f"the webhooks of {scope}", lambda target: [_hook(h) for h in target.get_hooks()]
        )

    def create_hook(self, scope: HookScope, spec: HookSpec) -> Hook:
        if scope.kind == "app":
            return self._set_app_hook(spec)

        def create(target: Target) -> Hook:
            try:
                return _hook(target.create_hook("web", _config(spec), list(spec.events), spec.active))
            except GithubException as exc:
                if exc.status == 422 and "already exists" in str(exc.data).lower():
                    raise HookExists(f"{NAME}: a hook for {spec.url} already exists on {scope}") from exc
                raise

        return self._on(scope, f"a webhook of {scope}", create, write=True)

    def update_hook(self, scope: HookScope, hook: Hook, spec: HookSpec) -> Hook:
        if scope.kind == "app":
            return self._set_app_hook(spec)

        def update(target: Target) -> Hook:
            found = target.get_hook(int(hook.id))
            found.edit("web", _config(spec), events=list(spec.events), active=spec.active)
            return _hook(found)

        return self._on(scope, f"webhook {hook.id} of {scope}", update, write=True)

    def delete_hook(self, scope: HookScope, hook: Hook) -> None:
        if scope.kind == "app":
            raise HostError(
                f"{NAME}: a GitHub App's webhook cannot be removed through the API; "
                "deactivate it on the App's settings page"
            )
        self._on(
            scope, f"webhook {hook.id} of {scope}", lambda t: t.get_hook(int(hook.id)).delete(), write=True
        )

    def enable_hook(self, scope: HookScope, hook: Hook) -> str:
        # GitHub never disables a hook by itself; an inactive one is made active by the update.
        return "it was made active"

    def test_hook(self, scope: HookScope, hook: Hook) -> str:
        if scope.kind == "app":
            raise HostError(f"{NAME} has no test delivery for a GitHub App's webhook")
        self._on(
            scope, f"webhook {hook.id} of {scope}", lambda t: t.get_hook(int(hook.id)).ping(), write=True
        )
        return "ping sent; the gateway's answer is under the hook's Recent Deliveries"

    def hook_changes(self, hook: Hook, spec: HookSpec) -> list[str]:
        # An App's events are not the API's to change (see hook_notes).
        found = (
            changes(hook, spec)
            if hook.id != APP_HOOK_ID
            else changes(hook, spec.model_copy(update={"events": hook.events}))
        )
        for name, wanted in _CONFIG.items():
            if hook.settings.get(name) != wanted:
                found.append(f"{name} {hook.settings.get(name) or '(none)'} -> {wanted}")
        return found

    def hook_notes(self, scope: HookScope, hook: Hook, spec: HookSpec) -> list[str]:
        if scope.kind != "app":
            return []
        missing = sorted(set(spec.events) - set(hook.events))
        if not missing:
            return []
        return [
            "the App is not subscribed to "
            + ", ".join(missing)
            + ": an App's events are chosen on its settings page (Permissions & events), not through the API"
        ]

    # -- DeliveryLog -------------------------------------------------------------------------------

    def hook_attempts(self, scope: HookScope, hook: Hook, since: datetime) -> list[HookAttempt]:
        if scope.kind == "app":
            return self._app_call(
                "the App's webhook deliveries", lambda requester: list(self._app_deliveries(requester, since))
            )

        def read(target: Target) -> list[HookAttempt]:
            found = []
            for delivery in target.get_hook_deliveries(int(hook.id)):
                attempt = _attempt(
                    {
                        "id": delivery.id,
                        "guid": delivery.guid,
                        "delivered_at": delivery.delivered_at,
                        "status_code": delivery.status_code,
                        "event": delivery.event,
                        "action": delivery.action,
                    }
                )
                if attempt.at < since:
                    break  # newest first: the rest are older still
                found.append(attempt)
            return found

        return self._on(scope, f"the deliveries of webhook {hook.id} of {scope}", read)

    def redeliver(self, scope: HookScope, hook: Hook, attempt: HookAttempt) -> None:
        what = f"delivery {attempt.delivery} of {scope}"
        if scope.kind == "app":
            self._app_call(
                what,
                lambda requester: requester.requestJsonAndCheck(
                    "POST", f"/app/hook/deliveries/{int(attempt.id)}/attempts"
                ),
                write=True,
            )
            return
        self._on(
            scope,
            what,
            lambda target: target.requester.requestJsonAndCheck(
                "POST", f"{target.url}/hooks/{int(hook.id)}/deliveries/{int(attempt.id)}/attempts"
            ),
            write=True,
        )

    # -- the App's own webhook ---------------------------------------------------------------------

    def _app_hook(self) -> Hook:
        def read(requester: Any) -> Hook:
            _, config = requester.requestJsonAndCheck("GET", "/app/hook/config")
            _, app = requester.requestJsonAndCheck("GET", "/app")
            return _app_hook(config, app.get("events") or [])

        return self._app_call("the App's webhook", read)

    def _set_app_hook(self, spec: HookSpec) -> Hook:
        if not spec.active:
            raise HostError(
                f"{NAME}: an App's webhook is deactivated on its settings page, not through the API"
            )

        def write(requester: Any) -> Hook:
            _, config = requester.requestJsonAndCheck("PATCH", "/app/hook/config", input=_config(spec))
            _, app = requester.requestJsonAndCheck("GET", "/app")
            return _app_hook(config, app.get("events") or [])

        return self._app_call("the App's webhook", write, write=True)

    def _app_deliveries(self, requester: Any, since: datetime) -> Iterator[HookAttempt]:
        url: str | None = "/app/hook/deliveries"
        params: dict[str, Any] | None = {"per_page": 100}
        while url:
            headers, page = requester.requestJsonAndCheck("GET", url, parameters=params)
            for item in page or []:
                attempt = _attempt(item)
                if attempt.at < since:
                    return
                yield attempt
            url, params = _next_link(headers.get("link") or headers.get("Link") or ""), None

    def _app_call(self, what: str, call: Callable[[Any], T], *, write: bool = False) -> T:
        if self._integration is None:
            raise HostError(
                f"{NAME}: the App's webhook needs the App's credentials "
                "(K8S_EE_GITHUB_APP_ID and K8S_EE_GITHUB_APP_PRIVATE_KEY)"
            )
        requester = self._integration.requester
        action = "writing" if write else "reading"
        return self._pacer.run(
            "app", lambda: self._guarded(lambda: call(requester), what, action), write=write
        )

    # -- organisations -----------------------------------------------------------------------------

    def _on(self, scope: HookScope, what: str, call: Callable[[Target], T], *, write: bool = False) -> T:
        if scope.kind == "repository":
            return self._call(scope.name, what, call, write=write)
        action = "writing" if write else "reading"
        organisation = scope.name
        key = self._guarded(lambda: self._organisation_key(organisation), what, action)

        def attempt() -> T:
            try:
                client = self._organisation_client(organisation)
                return call(client.get_organization(organisation))
            finally:
                self._record(f"org:{organisation}")

        return self._pacer.run(key, lambda: self._guarded(attempt, what, action), write=write)

    def _organisation_key(self, organisation: str) -> str:
        if self._github is not None:
            return "token"
        self._organisation_client(organisation)
        with self._lock:
            return str(self._installations.get(f"org:{organisation}", "app"))

    def _organisation_client(self, organisation: str) -> Github:
        if self._github is not None:
            return self._github
        assert self._integration is not None
        key = f"org:{organisation}"
        with self._lock:
            installation_id = self._installations.get(key)
        if installation_id is None:
            try:
                installation_id = self._integration.get_org_installation(organisation).id
            except GithubException as exc:
                if exc.status == 404:
                    raise NotFound(
                        f"{NAME}: the app is not installed on organisation {organisation}"
                    ) from exc
                raise
        with self._lock:
            self._installations[key] = installation_id
            client = self._clients.get(installation_id)
            if client is None:
                client = self._integration.get_github_for_installation(installation_id)
                self._clients[installation_id] = client
        return client


def _config(spec: HookSpec) -> dict[str, str]:
    config = {"url": spec.url, **_CONFIG}
    if spec.secret is not None:
        config["secret"] = spec.secret.get_secret_value()
    return config


def _hook(hook: GitHubHook) -> Hook:
    return Hook(
        id=str(hook.id),
        url=str((hook.config or {}).get("url") or ""),
        events=tuple(hook.events or ()),
        active=bool(hook.active),
        created_at=parse_time(hook.created_at),
        settings=_settings(hook.config or {}),
    )


def _settings(config: dict[str, Any]) -> dict[str, str]:
    return {name: str(config.get(name) or "") for name in _CONFIG}


def _app_hook(config: dict[str, Any], events: list[str]) -> Hook:
    return Hook(
        id=APP_HOOK_ID,
        url=str(config.get("url") or ""),
        events=tuple(events),
        active=True,
        settings=_settings(config),
    )


def _attempt(item: dict[str, Any]) -> HookAttempt:
    event = item.get("event")
    action = item.get("action")
    return HookAttempt(
        id=str(item["id"]),
        delivery=str(item.get("guid") or item["id"]),
        at=parse_time(item.get("delivered_at")) or datetime.fromtimestamp(0, UTC),
        status=item.get("status_code") or None,
        event=f"{event}.{action}" if event and action else event,
    )


def _next_link(header: str) -> str | None:
    for part in header.split(","):
        target, _, rel = part.partition(";")
        if 'rel="next"' in rel:
            return target.strip().strip("<>")
    return None
