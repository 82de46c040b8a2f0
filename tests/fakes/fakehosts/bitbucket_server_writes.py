"""The write side of the fake Bitbucket Data Center: pull request comments and activities, and
commit build statuses.

Mixed into `FakeBitbucketServer`, whose repositories hold the state. As on Data Center: a comment
has a `version`, and an edit names the version it was read at (409 `CommentOutOfDateException`
when it has moved on); only its author may edit it; comments are found through the pull request's
activities (newest first, paged with `start` / `limit`), which show each comment as it is now;
a build status (the repository builds resource of 7.14 and later) is keyed per commit, posting
one with a known key replaces it, and the answer is 204.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .base import Failure, Request, Response, Router

if TYPE_CHECKING:
    from .bitbucket_server import ServerRepository

JSON = "application/json;charset=UTF-8"
BUILD_STATES = frozenset({"SUCCESSFUL", "FAILED", "INPROGRESS", "CANCELLED", "UNKNOWN"})
OUT_OF_DATE = "com.atlassian.bitbucket.comment.CommentOutOfDateException"


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ServerComment:
    id: int
    pull_request: int
    text: str
    author: str
    version: int = 0
    anchor: dict[str, Any] | None = None  # a comment on a file or line
    created: datetime = field(default_factory=now)
    updated: datetime = field(default_factory=now)
    parent: int | None = None  # the comment this one replies to
    reactions: list[tuple[str, str]] = field(default_factory=list)  # (user, emoticon)


def page(request: Request, items: Sequence[Any], render: Callable[[Any], Any]) -> Response:
    """One page of a Data Center list, driven by `start` and `limit`."""
    start = request.int_param("start", 0)
    limit = max(1, min(1000, request.int_param("limit", 25)))
    values = items[start : start + limit]
    last = start + limit >= len(items)
    body: dict[str, Any] = {
        "size": len(values),
        "limit": limit,
        "isLastPage": last,
        "values": [render(item) for item in values],
        "start": start,
    }
    if not last:
        body["nextPageStart"] = start + limit
    return Response(200, body, content_type=JSON)


# The emoticons Data Center's reactions offer (its shortcuts).
EMOTICONS = frozenset({"thumbsup", "thumbsdown", "heart", "laughing", "tada", "eyes", "confused", "rocket"})


@dataclass
class Activity:
    id: int
    pull_request: int
    action: str  # COMMENTED, OPENED, APPROVED, RESCOPED, ...
    user: str
    comment_id: int | None = None
    created: datetime = field(default_factory=now)


@dataclass
class ServerBuildStatus:
    commit: str
    key: str
    state: str
    url: str
    name: str | None
    description: str | None
    ref: str | None
    created: datetime = field(default_factory=now)
    updated: datetime = field(default_factory=now)
    history: list[str] = field(default_factory=list)  # every state it was given, in order


class BitbucketServerWrites:
    """Handlers for the write endpoints; `FakeBitbucketServer` provides the rest."""

    # Provided by FakeBitbucketServer.
    lock: Any
    repositories: dict[tuple[str, str], ServerRepository]
    tokens: set[str]
    token_users: dict[str, str]
    users: dict[str, int]
    _repository: Callable[[Request], ServerRepository]
    error: Callable[..., Response]

    _write_ids = itertools.count(300)
    bot_name = "k8s-ee-bot"

    def write_routes(self, add: Callable[[str, str, Callable[[Request], Response]], None]) -> None:
        pull = "/projects/{key}/repos/{slug}/pull-requests/{id}"
        add("GET", f"{pull}/activities", self.list_activities)
        add("POST", f"{pull}/comments", self.create_comment)
        add("GET", f"{pull}/comments/{{comment_id}}", self.get_comment)
        add("PUT", f"{pull}/comments/{{comment_id}}", self.update_comment)
        add("DELETE", f"{pull}/comments/{{comment_id}}", self.delete_comment)
        add("GET", "/projects/{key}/repos/{slug}/commits/{commit}/builds", self.get_build_status)
        add("POST", "/projects/{key}/repos/{slug}/commits/{commit}/builds", self.create_build_status)
        # Served under /rest/comment-likes/latest, beside the REST API.
        self.likes = Router()
        reaction = (
            "/projects/{key}/repos/{slug}/pull-requests/{id}/comments/{comment_id}/reactions/{emoticon}"
        )
        self.likes.add("PUT", reaction, self.add_reaction)
        self.likes.add("DELETE", reaction, self.remove_reaction)

    # -- state, for tests ----------------------------------------------------------------------

    def _repo_named(self, name: str) -> ServerRepository:
        key, slug = name.split("/")
        return self.repositories[key.upper(), slug.lower()]

    def add_comment(
        self, name: str, pull_request: int, text: str, author: str = "dev", **fields: Any
    ) -> ServerComment:
        with self.lock:
            repository = self._repo_named(name)
            comment = ServerComment(next(self._write_ids), pull_request, text, author, **fields)
            repository.comments[comment.id] = comment
            repository.activities.append(
                Activity(next(self._write_ids), pull_request, "COMMENTED", author, comment.id)
            )
            return comment

    def add_activity(self, name: str, pull_request: int, action: str = "APPROVED", user: str = "dev") -> None:
        with self.lock:
            self._repo_named(name).activities.append(
                Activity(next(self._write_ids), pull_request, action, user)
            )

    def comments(self, name: str, pull_request: int) -> list[ServerComment]:
        with self.lock:
            repository = self._repo_named(name)
            return [
                c
                for c in sorted(repository.comments.values(), key=lambda c: c.id)
                if c.pull_request == pull_request
            ]

    def reactions(self, name: str, comment_id: int) -> list[tuple[str, str]]:
        with self.lock:
            return list(self._repo_named(name).comments[comment_id].reactions)

    def build_statuses(self, name: str) -> list[ServerBuildStatus]:
        with self.lock:
            return list(self._repo_named(name).build_statuses.values())

    # -- helpers -------------------------------------------------------------------------------

    def _user(self, request: Request) -> str:
        return self.token_users.get(str(request.principal), self.bot_name)

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            data = request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise Failure(400, "The request body could not be read as JSON.")
        return data

    def _pull_request_id(self, repository: ServerRepository, request: Request) -> int:
        wanted = request.params["id"]
        if not wanted.isdigit() or int(wanted) not in repository.pull_requests:
            raise Failure(
                404, f"Pull request {wanted} does not exist in {repository.project_key}/{repository.slug}."
            )
        return int(wanted)

    def _comment(self, repository: ServerRepository, request: Request) -> ServerComment:
        pull_request = self._pull_request_id(repository, request)
        wanted = request.params["comment_id"]
        comment = repository.comments.get(int(wanted)) if wanted.isdigit() else None
        if comment is None or comment.pull_request != pull_request:
            raise Failure(404, f"Comment {wanted} does not exist.")
        return comment

    def _commit(self, repository: ServerRepository, request: Request) -> str:
        sha = request.params["commit"]
        known = {p.latest_commit for p in repository.pull_requests.values()} | set(repository.files)
        if sha not in known:
            raise Failure(404, f"Commit '{sha}' does not exist in repository '{repository.slug}'.")
        return sha

    # -- comments ------------------------------------------------------------------------------

    def list_activities(self, request: Request) -> Response:
        repository = self._repository(request)
        pull_request = self._pull_request_id(repository, request)
        found = [a for a in reversed(repository.activities) if a.pull_request == pull_request]
        return page(request, found, lambda a: self.activity_json(repository, a))

    def create_comment(self, request: Request) -> Response:
        repository = self._repository(request)
        pull_request = self._pull_request_id(repository, request)
        data = self._body(request)
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            return self.error(
                400,
                "Please enter a non-empty value",
                "com.atlassian.bitbucket.validation.ArgumentValidationException",
            )
        parent = data.get("parent")
        parent_id = parent.get("id") if isinstance(parent, dict) else None
        if parent is not None:
            known = repository.comments.get(parent_id) if isinstance(parent_id, int) else None
            if known is None or known.pull_request != pull_request:
                raise Failure(404, f"Comment {parent_id} does not exist.")
        comment = ServerComment(
            next(self._write_ids),
            pull_request,
            text,
            self._user(request),
            anchor=data.get("anchor"),
            parent=parent_id,
        )
        repository.comments[comment.id] = comment
        repository.activities.append(
            Activity(next(self._write_ids), pull_request, "COMMENTED", comment.author, comment.id)
        )
        return Response(201, self.comment_json(comment), content_type=JSON)

    def add_reaction(self, request: Request) -> Response:
        repository = self._repository(request)
        comment = self._comment(repository, request)
        emoticon = request.params["emoticon"]
        if emoticon not in EMOTICONS:
            raise Failure(404, f"No emoticon {emoticon}")
        user = self._user(request)
        if (user, emoticon) not in comment.reactions:
            comment.reactions.append((user, emoticon))
        return Response(
            200,
            {
                "comment": self.comment_json(comment),
                "emoticon": {"shortcut": emoticon, "value": emoticon, "url": f"/emoticons/{emoticon}.png"},
                "user": self.user_json(user),
            },
            content_type=JSON,
        )

    def remove_reaction(self, request: Request) -> Response:
        repository = self._repository(request)
        comment = self._comment(repository, request)
        key = (self._user(request), request.params["emoticon"])
        if key in comment.reactions:
            comment.reactions.remove(key)
        return Response(204)

    def get_comment(self, request: Request) -> Response:
        repository = self._repository(request)
        return Response(200, self.comment_json(self._comment(repository, request)), content_type=JSON)

    def update_comment(self, request: Request) -> Response:
        repository = self._repository(request)
        comment = self._comment(repository, request)
        data = self._body(request)
        if comment.author != self._user(request):
            return self.error(
                403,
                "You are not permitted to edit this comment.",
                "com.atlassian.bitbucket.AuthorisationException",
            )
        if not isinstance(data.get("version"), int):
            return self.error(
                400,
                "The comment version is required.",
                "com.atlassian.bitbucket.validation.ArgumentValidationException",
            )
        if data["version"] != comment.version:
            response = self.error(
                409, "You are attempting to modify a comment based on out-of-date information.", OUT_OF_DATE
            )
            response.body["errors"][0]["currentVersion"] = comment.version
            return response
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            return self.error(
                400,
                "Please enter a non-empty value",
                "com.atlassian.bitbucket.validation.ArgumentValidationException",
            )
        comment.text, comment.version, comment.updated = text, comment.version + 1, now()
        return Response(200, self.comment_json(comment), content_type=JSON)

    def delete_comment(self, request: Request) -> Response:
        repository = self._repository(request)
        comment = self._comment(repository, request)
        if request.query.get("version") != str(comment.version):
            return self.error(
                409, "You are attempting to modify a comment based on out-of-date information.", OUT_OF_DATE
            )
        del repository.comments[comment.id]
        repository.activities = [a for a in repository.activities if a.comment_id != comment.id]
        return Response(204)

    # -- build statuses ------------------------------------------------------------------------

    def create_build_status(self, request: Request) -> Response:
        repository = self._repository(request)
        sha = self._commit(repository, request)
        data = self._body(request)
        for name in ("key", "state", "url"):
            if not data.get(name):
                return self.error(
                    400,
                    f"{name} must not be blank",
                    "com.atlassian.bitbucket.validation.ArgumentValidationException",
                )
        if data["state"] not in BUILD_STATES:
            return self.error(
                400,
                f"'{data['state']}' is not a valid build state",
                "com.atlassian.bitbucket.validation.ArgumentValidationException",
            )
        status = repository.build_statuses.get((sha, data["key"]))
        if status is None:
            status = ServerBuildStatus(sha, data["key"], data["state"], data["url"], None, None, None)
            repository.build_statuses[sha, data["key"]] = status
        for name in ("state", "url", "name", "description", "ref"):
            if name in data:
                setattr(status, name, data[name])
        status.history.append(status.state)
        status.updated = now()
        return Response(204)

    def get_build_status(self, request: Request) -> Response:
        repository = self._repository(request)
        sha = self._commit(repository, request)
        status = repository.build_statuses.get((sha, request.query.get("key", "")))
        if status is None:
            raise Failure(
                404, f"No build status with key '{request.query.get('key', '')}' exists on commit '{sha}'."
            )
        return Response(200, self.build_status_json(status), content_type=JSON)

    # -- JSON shapes ---------------------------------------------------------------------------

    def user_json(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "emailAddress": f"{name}@example.com",
            "id": self.users.get(name.lower(), sum(map(ord, name))),
            "displayName": name.title(),
            "active": True,
            "slug": name,
            "type": "NORMAL",
        }

    def comment_json(self, comment: ServerComment) -> dict[str, Any]:
        body: dict[str, Any] = {
            "properties": {"repositoryId": 1},
            "id": comment.id,
            "version": comment.version,
            "text": comment.text,
            "author": self.user_json(comment.author),
            "createdDate": millis(comment.created),
            "updatedDate": millis(comment.updated),
            "comments": [],
            "tasks": [],
            "severity": "NORMAL",
            "state": "OPEN",
            "permittedOperations": {"editable": True, "transitionable": True, "deletable": True},
        }
        if comment.anchor is not None:
            body["anchor"] = comment.anchor
        return body

    def activity_json(self, repository: ServerRepository, activity: Activity) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": activity.id,
            "createdDate": millis(activity.created),
            "user": self.user_json(activity.user),
            "action": activity.action,
        }
        comment = repository.comments.get(activity.comment_id) if activity.comment_id is not None else None
        if comment is not None:
            body["commentAction"] = "ADDED"
            body["comment"] = self.comment_json(comment)
            if comment.anchor is not None:
                body["commentAnchor"] = comment.anchor
        return body

    def build_status_json(self, status: ServerBuildStatus) -> dict[str, Any]:
        return {
            "key": status.key,
            "state": status.state,
            "url": status.url,
            "name": status.name,
            "description": status.description,
            "ref": status.ref,
            "createdDate": millis(status.created),
            "updatedDate": millis(status.updated),
        }
