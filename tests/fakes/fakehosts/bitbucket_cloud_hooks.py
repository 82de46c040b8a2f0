"""The webhooks of the fake Bitbucket Cloud: repository and workspace hooks (`webhook_subscription`).

Mixed into `FakeBitbucketCloud`. As on Bitbucket Cloud: any number of hooks may share a URL; a
hook is named by its brace-wrapped UUID; create answers 201; `url` and at least one known event
are required (400 with the field named); the secret is never shown, `secret_set` says whether one
is; a PUT that leaves `secret` out keeps it, `"secret": null` removes it. Workspace hooks need the
workspace to exist (`add_workspace`). There is no API for a hook's delivery history or a test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .base import Failure, Request, Response

if TYPE_CHECKING:
    from .bitbucket_cloud import CloudRepository

EVENTS = frozenset(
    {
        "repo:push",
        "repo:updated",
        "repo:fork",
        "repo:commit_comment_created",
        "repo:commit_status_created",
        "repo:commit_status_updated",
        "pullrequest:created",
        "pullrequest:updated",
        "pullrequest:push",
        "pullrequest:approved",
        "pullrequest:unapproved",
        "pullrequest:fulfilled",
        "pullrequest:rejected",
        "pullrequest:comment_created",
        "pullrequest:comment_updated",
        "pullrequest:comment_deleted",
        "issue:created",
        "issue:updated",
        "issue:comment_created",
    }
)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CloudHook:
    url: str
    description: str
    events: list[str]
    active: bool = True
    secret: str | None = None
    uuid: str = field(default_factory=lambda: "{" + str(uuid.uuid4()) + "}")
    created_at: datetime = field(default_factory=now)


class BitbucketCloudHooks:
    """Handlers for the webhook endpoints; `FakeBitbucketCloud` provides the rest."""

    # Provided by FakeBitbucketCloud.
    url: str
    lock: Any
    repositories: dict[str, CloudRepository]
    _repository: Callable[[Request], CloudRepository]
    _paged: Callable[[Request, Sequence[Any], Callable[[Any], Any]], Response]
    _body: Callable[[Request], dict[str, Any]]
    _bad_request: Callable[[dict[str, list[str]]], Response]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.workspaces: dict[str, dict[str, CloudHook]] = {}
        super().__init__(*args, **kwargs)

    def hook_routes(self, add: Callable[[str, str, Callable[[Request], Response]], None]) -> None:
        for base in ("/repositories/{workspace}/{slug}/hooks", "/workspaces/{workspace}/hooks"):
            add("GET", base, self.list_hooks)
            add("POST", base, self.create_hook)
            add("GET", f"{base}/{{uid}}", self.get_hook)
            add("PUT", f"{base}/{{uid}}", self.update_hook)
            add("DELETE", f"{base}/{{uid}}", self.delete_hook)

    # -- state, for tests ----------------------------------------------------------------------

    def add_workspace(self, name: str) -> None:
        with self.lock:
            self.workspaces.setdefault(name.lower(), {})

    def hooks_of(self, where: str) -> list[CloudHook]:
        """A repository's hooks (`workspace/slug`) or a workspace's (`workspace`), oldest first."""
        with self.lock:
            found = self.repositories[where.lower()].hooks if "/" in where else self.workspaces[where.lower()]
            return sorted(found.values(), key=lambda h: (h.created_at, h.uuid))

    def add_hook(self, where: str, url: str, events: Sequence[str] = ("repo:push",)) -> CloudHook:
        with self.lock:
            hook = CloudHook(url, "added by a test", list(events))
            found = self.repositories[where.lower()].hooks if "/" in where else self.workspaces[where.lower()]
            found[hook.uuid] = hook
            return hook

    # -- routes --------------------------------------------------------------------------------

    def _hooks(self, request: Request) -> tuple[dict[str, CloudHook], dict[str, Any]]:
        if "slug" in request.params:
            repository = self._repository(request)
            subject = {"type": "repository", "full_name": repository.full_name, "uuid": repository.uuid}
            return repository.hooks, subject
        name = request.params["workspace"]
        found = self.workspaces.get(name.lower())
        if found is None:
            raise Failure(404, f"Workspace {name} not found")
        return found, {"type": "workspace", "slug": name}

    def _hook(self, request: Request) -> tuple[dict[str, CloudHook], dict[str, Any], CloudHook]:
        hooks, subject = self._hooks(request)
        hook = hooks.get(request.params["uid"])
        if hook is None:
            raise Failure(404, "Resource not found")
        return hooks, subject, hook

    def _check(self, data: dict[str, Any], partial: bool) -> Response | None:
        fields: dict[str, list[str]] = {}
        if not partial or "url" in data:
            url = data.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                fields["url"] = ["Enter a valid URL."]
        if not partial or "events" in data:
            events = data.get("events")
            if not isinstance(events, list) or not events:
                fields["events"] = ["This field is required."]
            elif any(e not in EVENTS for e in events):
                fields["events"] = [f"Invalid event: {next(e for e in events if e not in EVENTS)}"]
        return self._bad_request(fields) if fields else None

    def list_hooks(self, request: Request) -> Response:
        hooks, subject = self._hooks(request)
        ordered = sorted(hooks.values(), key=lambda h: (h.created_at, h.uuid))
        return self._paged(request, ordered, lambda h: self.hook_json(h, subject))

    def get_hook(self, request: Request) -> Response:
        _, subject, hook = self._hook(request)
        return Response(200, self.hook_json(hook, subject))

    def create_hook(self, request: Request) -> Response:
        hooks, subject = self._hooks(request)
        data = self._body(request)
        refused = self._check(data, partial=False)
        if refused is not None:
            return refused
        hook = CloudHook(
            data["url"],
            str(data.get("description") or ""),
            sorted(set(data["events"])),
            bool(data.get("active", True)),
            data.get("secret"),
        )
        hooks[hook.uuid] = hook
        return Response(201, self.hook_json(hook, subject))

    def update_hook(self, request: Request) -> Response:
        _, subject, hook = self._hook(request)
        data = self._body(request)
        refused = self._check(data, partial=True)
        if refused is not None:
            return refused
        if "url" in data:
            hook.url = data["url"]
        if "description" in data:
            hook.description = str(data["description"] or "")
        if "events" in data:
            hook.events = sorted(set(data["events"]))
        if "active" in data:
            hook.active = bool(data["active"])
        if "secret" in data:
            hook.secret = data["secret"]
        return Response(200, self.hook_json(hook, subject))

    def delete_hook(self, request: Request) -> Response:
        hooks, _, hook = self._hook(request)
        del hooks[hook.uuid]
        return Response(204)

    # -- JSON shapes ---------------------------------------------------------------------------

    def hook_json(self, hook: CloudHook, subject: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "webhook_subscription",
            "uuid": hook.uuid,
            "url": hook.url,
            "description": hook.description,
            "subject_type": subject["type"],
            "subject": subject,
            "active": hook.active,
            "created_at": hook.created_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "events": list(hook.events),
            "secret_set": bool(hook.secret),
            "links": {"self": {"href": f"{self.url}/hooks/{hook.uuid}"}},
        }
