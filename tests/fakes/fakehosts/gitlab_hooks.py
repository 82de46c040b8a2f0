"""The webhooks of the fake GitLab: project and group hooks, their events (the delivery log) and resend.

Mixed into `FakeGitLab`. As on GitLab: any number of hooks may share a URL; `url` is required on
create and update (400 `url is missing`), and an update that changes the URL without a `token`
clears the token; the token is never shown (`token_present` says whether one is set). Deliveries
update the hook as GitLab's `WebHooks::AutoDisabling` does: a success re-enables it, the fourth
failure in a row makes it `temporarily_disabled` with `disabled_until` (one minute, doubling, at
most a day), the fortieth `disabled` for good. An update does not re-enable a hook; a test
(`POST …/hooks/:id/test/:trigger`) is delivered even to a disabled hook (201, or 422 when the
receiver fails) and re-enables it when answered with success. Hook events are listed newest first
(filter `status`: a code, `successful`, `client_failure`, `server_failure`); a resend
(`POST …/events/:id/resend`, 201 `{"response_status": …}`) repeats the logged request, its
Idempotency-Key included, is refused for a disabled hook (422 "Hook disabled") or one whose URL
changed, and is limited to five a minute per hook and user (429, `Retry-After`).

"Delivering" calls `receiver(url, headers, body)`, which answers the HTTP status (None for no
answer); by default every delivery is answered 200.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .base import Failure, Request, Response

if TYPE_CHECKING:
    from .gitlab import GitLabProject

Receiver = Callable[[str, dict[str, str], bytes], int | None]
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
    "feature_flag_events",
    "emoji_events",
    "resource_access_token_events",
)
GROUP_FLAGS = ("subgroup_events", "member_events", "project_events", "milestone_events")
# The hook event names of each trigger (`X-Gitlab-Event`) and how the log names the trigger.
TRIGGERS = {
    "push_events": ("Push Hook", "push_hooks"),
    "tag_push_events": ("Tag Push Hook", "tag_push_hooks"),
    "merge_requests_events": ("Merge Request Hook", "merge_request_hooks"),
    "note_events": ("Note Hook", "note_hooks"),
    "issues_events": ("Issue Hook", "issue_hooks"),
    "pipeline_events": ("Pipeline Hook", "pipeline_hooks"),
    "job_events": ("Job Hook", "job_hooks"),
    "wiki_page_events": ("Wiki Page Hook", "wiki_page_hooks"),
    "releases_events": ("Release Hook", "release_hooks"),
}
TEMPORARY_AFTER = 3  # failures in a row before a hook is temporarily disabled
PERMANENT_AFTER = 39
RESENDS_PER_MINUTE = 5


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


@dataclass
class HookLog:
    id: int
    trigger: str  # e.g. push_hooks
    url: str
    request_headers: dict[str, str]
    request_data: dict[str, Any]
    response_status: str  # "200", or "internal error" when there was no answer
    created_at: datetime = field(default_factory=now)


@dataclass
class GitLabHook:
    id: int
    url: str
    flags: dict[str, bool]
    token: str | None = None
    signing_token: str | None = None
    name: str | None = None
    enable_ssl_verification: bool = True
    recent_failures: int = 0
    disabled_until: datetime | None = None
    created_at: datetime = field(default_factory=now)
    logs: list[HookLog] = field(default_factory=list)  # oldest first
    resends: list[float] = field(default_factory=list)  # monotonic times, for the rate limit

    @property
    def alert_status(self) -> str:
        if self.recent_failures > PERMANENT_AFTER:
            return "disabled"
        if self.recent_failures > TEMPORARY_AFTER and self.disabled_until and self.disabled_until > now():
            return "temporarily_disabled"
        return "executable"


@dataclass
class GitLabGroup:
    id: int
    full_path: str
    hooks: dict[int, GitLabHook] = field(default_factory=dict)


class GitLabHooks:
    """Handlers for the webhook endpoints; `FakeGitLab` provides the rest."""

    # Provided by FakeGitLab.
    url: str
    origin: str
    lock: Any
    projects: dict[str, GitLabProject]
    _project: Callable[[Request], GitLabProject]
    _paged: Callable[[Request, Sequence[Any], Callable[[Any], Any]], Response]

    _hook_ids = itertools.count(700)
    _log_ids = itertools.count(90_000)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.hook_groups: dict[str, GitLabGroup] = {}
        self.receiver: Receiver = lambda url, headers, body: 200
        # Resends a hook takes per window (GitLab: five a minute); tests shorten the window.
        self.resend_limit = RESENDS_PER_MINUTE
        self.resend_window = 60.0
        super().__init__(*args, **kwargs)

    def hook_routes(self, add: Callable[[str, str, Callable[[Request], Response]], None]) -> None:
        for base in ("/projects/{id}", "/groups/{group}"):
            add("GET", f"{base}/hooks", self.list_hooks)
            add("POST", f"{base}/hooks", self.create_hook)
            add("GET", f"{base}/hooks/{{hook_id}}", self.get_hook)
            add("PUT", f"{base}/hooks/{{hook_id}}", self.update_hook)
            add("DELETE", f"{base}/hooks/{{hook_id}}", self.delete_hook)
            add("POST", f"{base}/hooks/{{hook_id}}/test/{{trigger}}", self.test_hook)
            add("GET", f"{base}/hooks/{{hook_id}}/events", self.list_hook_events)
            add("POST", f"{base}/hooks/{{hook_id}}/events/{{event_id}}/resend", self.resend_hook_event)

    # -- state, for tests ----------------------------------------------------------------------

    def add_group(self, path: str) -> GitLabGroup:
        with self.lock:
            group = self.hook_groups[path.lower()] = GitLabGroup(next(self._hook_ids), path)
            return group

    def hooks_of(self, path: str) -> list[GitLabHook]:
        """A project's hooks, or a group's (`group:<path>`), oldest first."""
        with self.lock:
            return sorted(self._hooks_named(path).values(), key=lambda h: h.id)

    def add_hook(
        self, path: str, url: str, flags: Sequence[str] = ("push_events",), **fields: Any
    ) -> GitLabHook:
        with self.lock:
            hook = GitLabHook(next(self._hook_ids), url, {f: f in flags for f in FLAGS}, **fields)
            self._hooks_named(path)[hook.id] = hook
            return hook

    def deliver(
        self, path: str, hook_id: int, trigger: str = "merge_requests_events", *, when: datetime | None = None
    ) -> HookLog:
        """GitLab sends an event to the hook now (through `receiver`), as it would on a change."""
        with self.lock:
            hook = self._hooks_named(path)[hook_id]
            event, _ = TRIGGERS[trigger]
            body = {"object_kind": event.split()[0].lower()}
            return self._execute(hook, trigger, self._headers(hook, event), body, when=when)

    @staticmethod
    def _headers(hook: GitLabHook, event: str) -> dict[str, str]:
        """What GitLab sends with a delivery: its event, the hook's token, a fresh Idempotency-Key."""
        return {
            "Content-Type": "application/json",
            "X-Gitlab-Event": event,
            "X-Gitlab-Token": hook.token or "",
            "Idempotency-Key": str(uuid.uuid4()),
            "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
            "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        }

    def _hooks_named(self, path: str) -> dict[int, GitLabHook]:
        if path.startswith("group:"):
            return self.hook_groups[path.removeprefix("group:").lower()].hooks
        return self.projects[path.lower()].hooks

    # -- routes --------------------------------------------------------------------------------

    def _hooks(self, request: Request) -> dict[int, GitLabHook]:
        if "group" in request.params:
            wanted = request.params["group"]
            for group in self.hook_groups.values():
                if wanted.lower() == group.full_path.lower() or wanted == str(group.id):
                    return group.hooks
            raise Failure(404, "404 Group Not Found")
        return self._project(request).hooks

    def _hook(self, request: Request) -> GitLabHook:
        wanted = request.params["hook_id"]
        hook = self._hooks(request).get(int(wanted)) if wanted.isdigit() else None
        if hook is None:
            raise Failure(404, "404 Not found")
        return hook

    def _fields(self, request: Request) -> dict[str, Any]:
        # python-gitlab sends JSON; GitLab also takes form fields.
        try:
            data = request.json() if request.body else {}
        except ValueError:
            raise Failure(400, "400 Bad request") from None
        if not isinstance(data, dict):
            raise Failure(400, "400 Bad request")
        data.update(request.query)
        if not str(data.get("url") or "").strip():
            raise Failure(400, "url is missing", body={"error": "url is missing"})
        return data

    def _apply(self, hook: GitLabHook, data: dict[str, Any], group: bool) -> None:
        for flag in (*FLAGS, *(GROUP_FLAGS if group else ())):
            if flag in data:
                hook.flags[flag] = _bool(data[flag])
        for name in ("token", "signing_token", "name"):
            if name in data:
                setattr(hook, name, str(data[name]) if data[name] is not None else None)
        if "enable_ssl_verification" in data:
            hook.enable_ssl_verification = _bool(data["enable_ssl_verification"])

    def list_hooks(self, request: Request) -> Response:
        hooks = sorted(self._hooks(request).values(), key=lambda h: h.id)
        return self._paged(request, hooks, lambda h: self.hook_json(request, h))

    def get_hook(self, request: Request) -> Response:
        return Response(200, self.hook_json(request, self._hook(request)))

    def create_hook(self, request: Request) -> Response:
        hooks = self._hooks(request)
        data = self._fields(request)
        hook = GitLabHook(next(self._hook_ids), str(data["url"]), {f: f == "push_events" for f in FLAGS})
        self._apply(hook, data, "group" in request.params)
        hooks[hook.id] = hook
        return Response(201, self.hook_json(request, hook))

    def update_hook(self, request: Request) -> Response:
        hook = self._hook(request)
        data = self._fields(request)
        if str(data["url"]) != hook.url:
            # As GitLab's WebHooks::Hook#reset_token: a new URL without a token clears the token.
            if "token" not in data:
                hook.token = None
            hook.url = str(data["url"])
        self._apply(hook, data, "group" in request.params)
        return Response(200, self.hook_json(request, hook))

    def delete_hook(self, request: Request) -> Response:
        hook = self._hook(request)
        del self._hooks(request)[hook.id]
        return Response(204)

    def test_hook(self, request: Request) -> Response:
        hook = self._hook(request)
        trigger = request.params["trigger"]
        if trigger not in TRIGGERS:
            raise Failure(
                400,
                "trigger does not have a valid value",
                body={"error": "trigger does not have a valid value"},
            )
        event, _ = TRIGGERS[trigger]
        # A test is delivered with force: even to a disabled hook.
        log = self._execute(hook, trigger, self._headers(hook, event), {"object_kind": "push", "test": True})
        if not log.response_status.startswith("2"):
            return Response(422, {"message": f"[Hook execution failed: {log.response_status}]"})
        return Response(201, {"message": "201 Created"})

    def list_hook_events(self, request: Request) -> Response:
        hook = self._hook(request)
        logs = sorted(hook.logs, key=lambda log: (log.created_at, log.id), reverse=True)
        wanted = request.query.get("status")
        if wanted:
            logs = [log for log in logs if _status_matches(log.response_status, wanted)]
        return self._paged(request, logs, self.hook_log_json)

    def resend_hook_event(self, request: Request) -> Response:
        hook = self._hook(request)
        wanted = request.params["event_id"]
        original = next((log for log in hook.logs if str(log.id) == wanted), None)
        if original is None:
            raise Failure(404, "404 Not found")
        moment = time.monotonic()
        hook.resends = [t for t in hook.resends if moment - t < self.resend_window]
        if len(hook.resends) >= self.resend_limit:
            raise Failure(
                429,
                "This endpoint has been requested too many times. Try again later.",
                {"Retry-After": str(max(1, round(self.resend_window - (moment - hook.resends[0]))))},
                body={
                    "message": {"error": "This endpoint has been requested too many times. Try again later."}
                },
            )
        hook.resends.append(moment)
        if hook.alert_status != "executable":
            raise Failure(422, "Hook disabled", body={"message": "Hook disabled"})
        if original.url != hook.url:
            message = "The hook URL has changed, and this log entry cannot be retried"
            raise Failure(422, message, body={"message": message})
        log = self._execute(hook, original.trigger, dict(original.request_headers), original.request_data)
        status = log.response_status
        return Response(201, {"response_status": int(status) if status.isdigit() else status})

    # -- delivering ----------------------------------------------------------------------------

    def _execute(
        self,
        hook: GitLabHook,
        trigger: str,
        headers: dict[str, str],
        data: dict[str, Any],
        *,
        when: datetime | None = None,
    ) -> HookLog:
        trigger_name = TRIGGERS[trigger][1] if trigger in TRIGGERS else trigger
        status = self.receiver(hook.url, headers, json.dumps(data).encode())
        logged = {**headers, "X-Gitlab-Token": "[REDACTED]"} if "X-Gitlab-Token" in headers else dict(headers)
        log = HookLog(
            next(self._log_ids),
            trigger_name,
            hook.url,
            logged,
            data,
            str(status) if status is not None else "internal error",
            when or now(),
        )
        hook.logs.append(log)
        if status is not None and 200 <= status < 400:
            hook.recent_failures, hook.disabled_until = 0, None
        else:
            hook.recent_failures += 1
            if hook.recent_failures > TEMPORARY_AFTER:
                backoff = min(
                    timedelta(days=1), timedelta(minutes=2 ** (hook.recent_failures - TEMPORARY_AFTER - 1))
                )
                hook.disabled_until = now() + backoff
        return log

    # -- JSON shapes ---------------------------------------------------------------------------

    def hook_json(self, request: Request, hook: GitLabHook) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": hook.id,
            "url": hook.url,
            "name": hook.name,
            "description": None,
            **{flag: hook.flags.get(flag, False) for flag in FLAGS},
            "push_events_branch_filter": None,
            "branch_filter_strategy": "wildcard",
            "repository_update_events": False,
            "enable_ssl_verification": hook.enable_ssl_verification,
            "alert_status": hook.alert_status,
            "disabled_until": iso(hook.disabled_until)
            if hook.alert_status == "temporarily_disabled"
            else None,
            "url_variables": [],
            "custom_webhook_template": None,
            "custom_headers": [],
            "token_present": bool(hook.token),
            "signing_token_present": bool(hook.signing_token),
            "created_at": iso(hook.created_at),
        }
        if "group" in request.params:
            data |= {flag: hook.flags.get(flag, False) for flag in GROUP_FLAGS}
            data["group_id"] = next(g.id for g in self.hook_groups.values() if hook.id in g.hooks)
        else:
            data["project_id"] = self._project(request).id
        return data

    def hook_log_json(self, log: HookLog) -> dict[str, Any]:
        return {
            "id": log.id,
            "url": log.url,
            "trigger": log.trigger,
            "request_headers": log.request_headers,
            "request_data": log.request_data,
            "response_headers": {"Content-Type": "application/json"},
            "response_body": "{}",
            "execution_duration": 0.05,
            "response_status": log.response_status,
            "created_at": iso(log.created_at),
        }


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("true", "1", "yes")
    return bool(value)


def _status_matches(status: str, wanted: str) -> bool:
    if wanted.isdigit():
        return status == wanted
    if wanted == "successful":
        return status.startswith("2")
    if wanted == "client_failure":
        return status.startswith("4")
    if wanted == "server_failure":
        return status.startswith("5") or not status.isdigit()
    raise Failure(
        400, "status does not have a valid value", body={"error": "status does not have a valid value"}
    )
