"""The webhooks of the fake Bitbucket Data Center: repository and project hooks (`RestWebhook`).

Mixed into `FakeBitbucketServer`. As on Data Center: any number of hooks may share a URL; create
answers 200 with the hook; PUT replaces the hook with what it is sent; `name`, `url` and at least
one known event are required (400, Data Center's error shape); `configuration.secret` is kept but
never shown. Pages are `start`/`limit`. `POST …/webhooks/test?url=…` sends a test request through
`receiver(url, headers, body)` (the HTTP status, None for no answer; 200 by default) and answers
what the gateway said. Project hooks need the project (`add_project`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .base import Failure, Request, Response

if TYPE_CHECKING:
    from .bitbucket_server import ServerRepository

JSON = "application/json;charset=UTF-8"
Receiver = Callable[[str, dict[str, str], bytes], int | None]
EVENTS = frozenset(
    {
        "pr:opened",
        "pr:from_ref_updated",
        "pr:to_ref_updated",
        "pr:modified",
        "pr:merged",
        "pr:declined",
        "pr:deleted",
        "pr:reviewer:approved",
        "pr:reviewer:unapproved",
        "pr:reviewer:needs_work",
        "pr:comment:added",
        "pr:comment:edited",
        "pr:comment:deleted",
        "repo:refs_changed",
        "repo:modified",
        "repo:forked",
        "repo:comment:added",
        "mirror:repo_synchronized",
    }
)


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class ServerHook:
    id: int
    name: str
    url: str
    events: list[str]
    active: bool
    secret: str | None
    ssl_verification: bool = True
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))


class BitbucketServerHooks:
    """Handlers for the webhook endpoints; `FakeBitbucketServer` provides the rest."""

    # Provided by FakeBitbucketServer.
    lock: Any
    repositories: dict[tuple[str, str], ServerRepository]
    _repository: Callable[[Request], ServerRepository]
    _body: Callable[[Request], dict[str, Any]]
    error: Callable[..., Response]

    _hook_ids = itertools.count(1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.projects: dict[str, dict[int, ServerHook]] = {}
        self.receiver: Receiver = lambda url, headers, body: 200
        super().__init__(*args, **kwargs)

    def hook_routes(self, add: Callable[[str, str, Callable[[Request], Response]], None]) -> None:
        for base in ("/projects/{key}/repos/{slug}/webhooks", "/projects/{key}/webhooks"):
            add("GET", base, self.list_hooks)
            add("POST", base, self.create_hook)
            add("POST", f"{base}/test", self.test_hook)
            add("GET", f"{base}/{{hook_id}}", self.get_hook)
            add("PUT", f"{base}/{{hook_id}}", self.update_hook)
            add("DELETE", f"{base}/{{hook_id}}", self.delete_hook)

    # -- state, for tests ----------------------------------------------------------------------

    def add_project(self, key: str) -> None:
        with self.lock:
            self.projects.setdefault(key.upper(), {})

    def hooks_of(self, where: str) -> list[ServerHook]:
        """A repository's hooks (`KEY/slug`) or a project's (`KEY`), oldest first."""
        with self.lock:
            return sorted(self._hooks_named(where).values(), key=lambda h: h.id)

    def add_hook(self, where: str, url: str, events: list[str] | None = None) -> ServerHook:
        with self.lock:
            hook = ServerHook(
                next(self._hook_ids), "added by a test", url, events or ["repo:refs_changed"], True, None
            )
            self._hooks_named(where)[hook.id] = hook
            return hook

    def _hooks_named(self, where: str) -> dict[int, ServerHook]:
        if "/" in where:
            key, slug = where.split("/")
            return self.repositories[key.upper(), slug.lower()].hooks
        return self.projects[where.upper()]

    # -- routes --------------------------------------------------------------------------------

    def _hooks(self, request: Request) -> tuple[dict[int, ServerHook], str]:
        if "slug" in request.params:
            return self._repository(request).hooks, "REPOSITORY"
        key = request.params["key"]
        found = self.projects.get(key.upper())
        if found is None:
            raise Failure(404, f"Project {key} does not exist.")
        return found, "PROJECT"

    def _hook(self, request: Request) -> tuple[dict[int, ServerHook], str, ServerHook]:
        hooks, scope = self._hooks(request)
        wanted = request.params["hook_id"]
        hook = hooks.get(int(wanted)) if wanted.isdigit() else None
        if hook is None:
            raise Failure(404, f"Webhook {wanted} does not exist.")
        return hooks, scope, hook

    def _valid(self, data: dict[str, Any]) -> Response | None:
        for name in ("name", "url"):
            if not isinstance(data.get(name), str) or not data[name].strip():
                return self.error(
                    400,
                    f"{name} must be provided",
                    "com.atlassian.bitbucket.validation.ArgumentValidationException",
                )
        events = data.get("events")
        if not isinstance(events, list) or not events or any(e not in EVENTS for e in events):
            return self.error(
                400,
                "At least one valid event must be provided",
                "com.atlassian.bitbucket.validation.ArgumentValidationException",
            )
        return None

    def list_hooks(self, request: Request) -> Response:
        hooks, scope = self._hooks(request)
        ordered = sorted(hooks.values(), key=lambda h: h.id)
        start = request.int_param("start", 0)
        limit = max(1, min(1000, request.int_param("limit", 25)))
        values = ordered[start : start + limit]
        last = start + limit >= len(ordered)
        body: dict[str, Any] = {
            "size": len(values),
            "limit": limit,
            "isLastPage": last,
            "values": [self.hook_json(h, scope) for h in values],
            "start": start,
        }
        if not last:
            body["nextPageStart"] = start + limit
        return Response(200, body, content_type=JSON)

    def get_hook(self, request: Request) -> Response:
        _, scope, hook = self._hook(request)
        return Response(200, self.hook_json(hook, scope), content_type=JSON)

    def create_hook(self, request: Request) -> Response:
        hooks, scope = self._hooks(request)
        data = self._body(request)
        refused = self._valid(data)
        if refused is not None:
            return refused
        hook = ServerHook(next(self._hook_ids), "", "", [], True, None)
        self._set(hook, data)
        hooks[hook.id] = hook
        return Response(200, self.hook_json(hook, scope), content_type=JSON)

    def update_hook(self, request: Request) -> Response:
        _, scope, hook = self._hook(request)
        data = self._body(request)
        refused = self._valid(data)
        if refused is not None:
            return refused
        self._set(hook, data)
        hook.updated = datetime.now(UTC)
        return Response(200, self.hook_json(hook, scope), content_type=JSON)

    def delete_hook(self, request: Request) -> Response:
        hooks, _, hook = self._hook(request)
        del hooks[hook.id]
        return Response(204)

    def test_hook(self, request: Request) -> Response:
        self._hooks(request)
        url = request.query.get("url")
        if not url:
            return self.error(400, "url must be provided")
        headers = {
            "X-Event-Key": "diagnostics:ping",
            "X-Request-Id": "test",
            "Content-Type": "application/json",
        }
        body = json.dumps({"test": True}).encode()
        status = self.receiver(url, headers, body)
        answer: dict[str, Any] = {"request": {"url": url, "method": "POST", "headers": headers}}
        answer["response"] = {"status": status, "headers": {}, "body": ""} if status is not None else None
        return Response(200, answer, content_type=JSON)

    # -- helpers -------------------------------------------------------------------------------

    def _set(self, hook: ServerHook, data: dict[str, Any]) -> None:
        # PUT replaces the hook: what is left out is reset.
        hook.name, hook.url = data["name"], data["url"]
        hook.events = list(dict.fromkeys(data["events"]))
        hook.active = bool(data.get("active", True))
        configuration = data.get("configuration") or {}
        hook.secret = configuration.get("secret") if isinstance(configuration, dict) else None
        hook.ssl_verification = bool(data.get("sslVerificationRequired", True))

    def hook_json(self, hook: ServerHook, scope: str) -> dict[str, Any]:
        return {
            "id": hook.id,
            "name": hook.name,
            "createdDate": millis(hook.created),
            "updatedDate": millis(hook.updated),
            "events": list(hook.events),
            "configuration": {},
            "url": hook.url,
            "active": hook.active,
            "scopeType": scope.lower(),
            "sslVerificationRequired": hook.ssl_verification,
        }
