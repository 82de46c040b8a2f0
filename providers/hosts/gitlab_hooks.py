"""GitLab webhooks through python-gitlab: project hooks and group hooks, their delivery log and resend.

`GitLabHookHost` is the worker's `GitLabHost` that also manages hooks, with the same pacing,
retries and errors. GitLab keeps any number of hooks for one URL, so duplicates are removed by
`providers.hosts.hooks.ensure`. Every update sends the URL (GitLab requires it) and the secret
token with it: GitLab clears the token of a hook whose URL changes without one.

GitLab disables a hook that keeps failing (`alert_status` `temporarily_disabled` with
`disabled_until`, then `disabled` for good), and an update does not re-enable it. What does, as
GitLab documents, is a test delivery the receiver answers: `enable_hook` sends the test push event
(`POST …/hooks/:id/test/push_events`, which the gateway treats as any push) and reads the hook
again. python-gitlab has no call for a hook's events (its delivery log, seven days) or their
resend: those go through python-gitlab's own `http_list` and `http_post`, so the same session and
policy apply. A resend is rate limited per hook (five a minute), so each hook's resends are paced
on their own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from providers.hosts.base import HostError
from providers.hosts.gitlab import _CALL, NAME, GitLabHost
from providers.hosts.hooks import Hook, HookAttempt, HookScope, HookSpec, changes, parse_time

T = TypeVar("T")
# The event flags a hook has (group hooks have a few more; any `*_events` flag found is managed too).
FLAGS = (
    "push_events",
    "tag_push_events",
    "merge_requests_events",
    "note_events",
    "confidential_note_events",
    "issues_events",
    "confidential_issues_events",
    "job_events",
    "pipeline_events",
    "wiki_page_events",
    "deployment_events",
    "releases_events",
)
_DISABLED = {"temporarily_disabled": "temporarily disabled", "disabled": "disabled"}
# The test event that re-enables a hook: the one every project with a commit can send.
TEST_TRIGGER = "push_events"


class GitLabHookHost(GitLabHost):
    # -- HookHost ----------------------------------------------------------------------------------

    def list_hooks(self, scope: HookScope) -> list[Hook]:
        def read() -> list[Hook]:
            hooks = self._hooks(scope).list(iterator=True, per_page=self.per_page, **_CALL)
            return [_hook(hook.attributes) for hook in hooks]

        return self._run(f"the webhooks of {scope}", read)

    def create_hook(self, scope: HookScope, spec: HookSpec) -> Hook:
        data = _data(spec, ())
        return self._run(
            f"a webhook of {scope}",
            lambda: _hook(self._hooks(scope).create(data, **_CALL).attributes),
            write=True,
        )

    def update_hook(self, scope: HookScope, hook: Hook, spec: HookSpec) -> Hook:
        data = _data(spec, hook.events)

        def write() -> Hook:
            answer = self._hooks(scope).update(int(hook.id), data, **_CALL)
            if not isinstance(answer, dict):
                raise HostError(f"{NAME}: unexpected answer updating webhook {hook.id} of {scope}")
            return _hook(answer)

        return self._run(f"webhook {hook.id} of {scope}", write, write=True)

    def delete_hook(self, scope: HookScope, hook: Hook) -> None:
        self._run(
            f"webhook {hook.id} of {scope}",
            lambda: self._hooks(scope).delete(int(hook.id), **_CALL),
            write=True,
        )

    def enable_hook(self, scope: HookScope, hook: Hook) -> str:
        self.test_hook(scope, hook)
        again = self._run(
            f"webhook {hook.id} of {scope}",
            lambda: _hook(self._hooks(scope).get(int(hook.id), **_CALL).attributes),
        )
        if again.disabled is not None:
            raise HostError(
                f"{NAME}: webhook {hook.id} of {scope} is still {again.disabled} after a test delivery"
            )
        return "re-enabled: GitLab's test push event was answered by the gateway"

    def test_hook(self, scope: HookScope, hook: Hook) -> str:
        path = f"{self._hooks(scope).path}/{int(hook.id)}/test/{TEST_TRIGGER}"
        self._run(
            f"the test of webhook {hook.id} of {scope}",
            lambda: self._gitlab.http_post(path, **_CALL),
            write=True,
        )
        return f"GitLab sent its test {TEST_TRIGGER} delivery and the gateway answered it with success"

    def hook_changes(self, hook: Hook, spec: HookSpec) -> list[str]:
        # No active switch: a hook GitLab disabled is re-enabled instead (see enable_hook).
        found = changes(hook, spec, active=False)
        if hook.settings.get("enable_ssl_verification") == "false":
            found.append("enable_ssl_verification false -> true")
        if spec.secret is not None and hook.settings.get("token_present") == "false":
            found.append("secret token (none was set)")
        return found

    def hook_notes(self, scope: HookScope, hook: Hook, spec: HookSpec) -> list[str]:
        return []

    # -- DeliveryLog -------------------------------------------------------------------------------

    def hook_attempts(self, scope: HookScope, hook: Hook, since: datetime) -> list[HookAttempt]:
        path = f"{self._hooks(scope).path}/{int(hook.id)}/events"

        def read() -> list[HookAttempt]:
            found = []
            for item in self._gitlab.http_list(
                path, query_data={"per_page": self.per_page}, iterator=True, **_CALL
            ):
                attempt = _attempt(item)
                if attempt.at < since:
                    break  # newest first: the rest are older still
                found.append(attempt)
            return found

        return self._run(f"the events of webhook {hook.id} of {scope}", read)

    def redeliver(self, scope: HookScope, hook: Hook, attempt: HookAttempt) -> None:
        path = f"{self._hooks(scope).path}/{int(hook.id)}/events/{int(attempt.id)}/resend"
        # Resends are limited per hook: a pause GitLab asks for holds this hook's resends only.
        self._run(
            f"the resend of event {attempt.id} of {scope}",
            lambda: self._gitlab.http_post(path, **_CALL),
            write=True,
            key=f"resend:{scope.name}:{hook.id}",
        )

    # -- calls -------------------------------------------------------------------------------------

    def _hooks(self, scope: HookScope) -> Any:
        if scope.kind == "repository":
            return self._gitlab.projects.get(scope.name, lazy=True).hooks
        if scope.kind == "group":
            return self._gitlab.groups.get(scope.name, lazy=True).hooks
        raise HostError(f"{NAME} has no app webhooks: register the hook on a project or a group")

    def _run(self, what: str, call: Callable[[], T], *, write: bool = False, key: str = "token") -> T:
        return self._pacer.run(key, lambda: self._guard(what, write, call), write=write)


def _data(spec: HookSpec, current: tuple[str, ...]) -> dict[str, Any]:
    """The hook's fields: the gateway's events on, every other event flag known or present off."""
    data: dict[str, Any] = {flag: flag in spec.events for flag in (*FLAGS, *current, *spec.events)}
    data |= {"url": spec.url, "enable_ssl_verification": True, "name": spec.name}
    if spec.secret is not None:
        data["token"] = spec.secret.get_secret_value()
    if spec.signing_token is not None:
        data["signing_token"] = spec.signing_token.get_secret_value()
    return data


def _hook(attributes: dict[str, Any]) -> Hook:
    status = str(attributes.get("alert_status") or "executable")
    disabled = _DISABLED.get(status)
    until = attributes.get("disabled_until")
    if disabled == "temporarily disabled" and until:
        disabled = f"{disabled} until {until}"
    settings = {"enable_ssl_verification": str(bool(attributes.get("enable_ssl_verification", True))).lower()}
    if "token_present" in attributes:
        settings["token_present"] = str(bool(attributes["token_present"])).lower()
    return Hook(
        id=str(attributes["id"]),
        url=str(attributes.get("url") or ""),
        events=tuple(
            sorted(
                name
                for name, value in attributes.items()
                if name.endswith("_events") and name != "repository_update_events" and value is True
            )
        ),
        active=disabled is None,
        disabled=disabled,
        created_at=parse_time(attributes.get("created_at")),
        settings=settings,
    )


def _attempt(item: dict[str, Any]) -> HookAttempt:
    headers = {str(k).lower(): str(v) for k, v in (item.get("request_headers") or {}).items()}
    status = str(item.get("response_status") or "")
    return HookAttempt(
        id=str(item["id"]),
        # Resends keep the original Idempotency-Key: it names the delivery across attempts.
        delivery=headers.get("idempotency-key") or headers.get("x-gitlab-event-uuid") or str(item["id"]),
        at=parse_time(item.get("created_at")) or datetime.fromtimestamp(0, UTC),
        status=int(status) if status.isdigit() else None,
        event=str(item.get("trigger") or "") or None,
    )
