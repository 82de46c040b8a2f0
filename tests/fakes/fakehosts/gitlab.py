"""A fake GitLab REST API (v4): projects by numeric id or URL-encoded full path, merge requests,
raw repository files.

As on GitLab, a project path or file path with its `/` not encoded as `%2F` matches no route.
Lists are paginated with `page` / `per_page` and the `X-Page`, `X-Next-Page`, `X-Total-Pages`
(and `Link`) headers. Credentials: `PRIVATE-TOKEN` or `Authorization: Bearer`. With `rate_limit`
set, answers carry GitLab's `RateLimit-*` headers and a spent budget answers 429 "Retry later"
with `Retry-After`. Notes (with their discussions and award emoji), environments and commit
statuses are served by `gitlab_writes.GitLabWrites`; project and group hooks, their events and
resend by `gitlab_hooks`.

Membership, as GitLab computes it: `members/all/:user_id` answers a project's member with the
highest access level among their direct membership, their membership of any ancestor group of
the project's path (inherited), and of the groups the project was shared with (invited; capped at
the access the group was given); no membership at all is 404. `members/:user_id` answers direct
members only. `GET /user` is the token's user, `GET /users?username=` the users by name. A merge
request from a fork has a source project of its own.
"""

from __future__ import annotations

import email.utils
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from .base import Failure, FakeHost, Request, Response, fake_sha, page_of
from .gitlab_hooks import GitLabHook, GitLabHooks
from .gitlab_writes import CommitStatus, Environment, GitLabWrites, Note


def iso(moment: datetime | None) -> str | None:
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None
    )


@dataclass
class GitLabMergeRequest:
    iid: int
    sha: str
    source_branch: str
    target_branch: str = "main"
    state: str = "opened"  # opened, closed, merged, locked
    draft: bool = False
    title: str = "A change"
    author: str = "root"
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # (sha, authored at), oldest first; empty: the head alone, authored when the MR was opened.
    commits: list[tuple[str, datetime]] = field(default_factory=list)
    # The fork's project id, when the source branch is in a fork.
    source_project_id: int | None = None


@dataclass
class GitLabProject:
    id: int
    path_with_namespace: str
    default_branch: str = "main"
    merge_requests: dict[int, GitLabMergeRequest] = field(default_factory=dict)
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # ref -> path -> bytes
    commits: set[str] = field(default_factory=set)  # full SHAs besides the merge requests' heads
    notes: dict[int, Note] = field(default_factory=dict)
    environments: dict[int, Environment] = field(default_factory=dict)
    statuses: list[CommitStatus] = field(default_factory=list)  # oldest first
    members: dict[int, int] = field(default_factory=dict)  # user id -> access level (direct)
    shared_with: dict[str, int] = field(default_factory=dict)  # group path -> the access it was given
    hooks: dict[int, GitLabHook] = field(default_factory=dict)


class FakeGitLab(GitLabHooks, GitLabWrites, FakeHost):
    name = "gitlab"
    prefix = "/api/v4"

    def __init__(self) -> None:
        super().__init__()
        self.projects: dict[str, GitLabProject] = {}  # path (lower case) -> project
        self.tokens: set[str] = set()
        self._ids = itertools.count(100)
        # Requests a minute, as GitLab's rate limits are counted; None: no limit, no headers (the
        # default of a self-managed instance).
        self.rate_limit: int | None = None
        self.rate_remaining = 0
        self.rate_reset_at = 0.0  # epoch seconds
        self.users: dict[str, int] = {}  # username (lower case) -> id
        self.blocked: set[int] = set()
        self.groups: dict[str, dict[int, int]] = {}  # group path (lower case) -> user id -> access level
        self._user_ids = itertools.count(2)
        self.users[self.bot_username] = 1

    # -- state, for tests ----------------------------------------------------------------------

    def add_token(self, token: str) -> None:
        with self.lock:
            self.tokens.add(token)

    def add_project(self, path: str, default_branch: str = "main") -> GitLabProject:
        with self.lock:
            project = GitLabProject(next(self._ids), path, default_branch)
            self.projects[path.lower()] = project
            return project

    def add_merge_request(self, path: str, iid: int, **fields: Any) -> GitLabMergeRequest:
        fields.setdefault("sha", fake_sha(f"{path}!{iid}"))
        fields.setdefault("source_branch", f"feature-{iid}")
        with self.lock:
            mr = GitLabMergeRequest(iid=iid, **fields)
            self.projects[path.lower()].merge_requests[iid] = mr
            return mr

    def add_user(self, username: str) -> int:
        with self.lock:
            return self.users.setdefault(username.lower(), next(self._user_ids))

    def add_member(self, path: str, username: str, access_level: int) -> int:
        """A direct member of the project."""
        user_id = self.add_user(username)
        with self.lock:
            self.projects[path.lower()].members[user_id] = access_level
        return user_id

    def add_group_member(self, group: str, username: str, access_level: int) -> int:
        """A member of a group: inherited by every project under its path, and by projects shared
        with it."""
        user_id = self.add_user(username)
        with self.lock:
            self.groups.setdefault(group.lower(), {})[user_id] = access_level
        return user_id

    def share_with_group(self, path: str, group: str, access_level: int) -> None:
        with self.lock:
            self.projects[path.lower()].shared_with[group.lower()] = access_level

    def access_of(self, project: GitLabProject, user_id: int) -> tuple[int | None, str]:
        """The highest access level of a user in a project, and where it comes from."""
        found: list[tuple[int, str]] = []
        if user_id in project.members:
            found.append((project.members[user_id], "direct"))
        parts = project.path_with_namespace.lower().split("/")
        for depth in range(1, len(parts)):
            level = self.groups.get("/".join(parts[:depth]), {}).get(user_id)
            if level is not None:
                found.append((level, "inherited"))
        for group, granted in project.shared_with.items():
            level = self.groups.get(group, {}).get(user_id)
            if level is not None:
                found.append((min(level, granted), "invited"))
        if not found:
            return None, ""
        return max(found)

    def add_file(self, path: str, file_path: str, content: str | bytes, ref: str) -> None:
        data = content.encode() if isinstance(content, str) else content
        with self.lock:
            self.projects[path.lower()].files.setdefault(ref, {})[file_path.strip("/")] = data

    # -- the host's conventions ----------------------------------------------------------------

    def set_rate_limit(self, limit: int, remaining: int | None = None, reset_in: float = 60) -> None:
        """Turn rate limiting on: `remaining` requests left until the window ends in `reset_in` s
        (the budget is not refilled by itself)."""
        with self.lock:
            self.rate_limit = limit
            self.rate_remaining = limit if remaining is None else remaining
            self.rate_reset_at = time.time() + reset_in

    def error(self, status: int, message: str) -> Response:
        if status == 429:
            # Rack::Attack's answer, as plain text.
            return Response(429, "Retry later\n", content_type="text/plain")
        if message[:3].isdigit():
            return Response(status, {"message": message})
        return Response(status, {"message": f"{status} {message}"})

    def not_found_route(self, request: Request) -> Response:
        return Response(404, {"error": "404 Not Found"})

    def authenticate(self, request: Request) -> None:
        token = request.headers.get("PRIVATE-TOKEN")
        authorization = request.headers.get("Authorization", "")
        if token is None and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        if token not in self.tokens:
            raise Failure(401, "401 Unauthorized")
        request.principal = token
        if self.rate_limit is not None:
            if self.rate_remaining <= 0:
                raise Failure(429, "Retry later", {"Retry-After": str(self._seconds_to_reset())})
            self.rate_remaining -= 1

    def finish(self, request: Request, response: Response) -> None:
        if self.rate_limit is None:
            return
        reset = int(self.rate_reset_at)
        response.headers.setdefault("RateLimit-Name", "throttle_authenticated_api")
        response.headers.setdefault("RateLimit-Limit", str(self.rate_limit))
        response.headers.setdefault("RateLimit-Observed", str(self.rate_limit - self.rate_remaining))
        response.headers.setdefault("RateLimit-Remaining", str(self.rate_remaining))
        response.headers.setdefault("RateLimit-Reset", str(reset))
        response.headers.setdefault("RateLimit-ResetTime", email.utils.formatdate(reset, usegmt=True))

    def _seconds_to_reset(self) -> int:
        return max(1, round(self.rate_reset_at - time.time()))

    # -- routes --------------------------------------------------------------------------------

    def routes(self) -> None:
        add = self.router.add
        add("GET", "/projects/{id}", self.get_project)
        add("GET", "/projects/{id}/merge_requests", self.list_merge_requests)
        add("GET", "/projects/{id}/merge_requests/{iid}", self.get_merge_request)
        add("GET", "/projects/{id}/merge_requests/{iid}/commits", self.list_merge_request_commits)
        add("GET", "/projects/{id}/repository/files/{file_path}/raw", self.get_raw_file)
        add("GET", "/projects/{id}/members/all/{user_id}", self.get_member_all)
        add("GET", "/projects/{id}/members/{user_id}", self.get_member)
        add("GET", "/user", self.get_current_user)
        add("GET", "/users", self.list_users)
        self.write_routes(add)
        self.hook_routes(add)

    def _project(self, request: Request) -> GitLabProject:
        wanted = request.params["id"]
        for project in self.projects.values():
            if wanted.lower() == project.path_with_namespace.lower() or wanted == str(project.id):
                return project
        raise Failure(404, "404 Project Not Found")

    def _member_json(self, user_id: int, access_level: int) -> dict[str, Any]:
        username = next(name for name, known in self.users.items() if known == user_id)
        return self.user_json(username) | {
            "state": "blocked" if user_id in self.blocked else "active",
            "access_level": access_level,
            "created_at": iso(datetime.now(UTC)),
            "expires_at": None,
            "membership_state": "active",
        }

    def _user_id(self, request: Request) -> int:
        wanted = request.params["user_id"]
        if not wanted.isdigit() or int(wanted) not in self.users.values():
            raise Failure(404, "404 Not found")
        return int(wanted)

    def get_member_all(self, request: Request) -> Response:
        project = self._project(request)
        user_id = self._user_id(request)
        level, _ = self.access_of(project, user_id)
        if level is None:
            raise Failure(404, "404 Not found")
        return Response(200, self._member_json(user_id, level))

    def get_member(self, request: Request) -> Response:
        project = self._project(request)
        user_id = self._user_id(request)
        if user_id not in project.members:
            raise Failure(404, "404 Not found")
        return Response(200, self._member_json(user_id, project.members[user_id]))

    def get_current_user(self, request: Request) -> Response:
        return Response(200, self.user_json(self.bot_username) | {"bot": True, "is_admin": False})

    def list_users(self, request: Request) -> Response:
        wanted = (request.query.get("username") or "").lower()
        found = [name for name in sorted(self.users) if not wanted or name == wanted]
        return self._paged(request, found, self.user_json)

    def get_project(self, request: Request) -> Response:
        return Response(200, self.project_json(self._project(request)))

    def get_merge_request(self, request: Request) -> Response:
        project = self._project(request)
        iid = request.params["iid"]
        mr = project.merge_requests.get(int(iid)) if iid.isdigit() else None
        if mr is None:
            raise Failure(404, "404 Not found")
        return Response(200, self.merge_request_json(project, mr))

    def list_merge_request_commits(self, request: Request) -> Response:
        """Newest first, as GitLab lists them, paginated."""
        project = self._project(request)
        iid = request.params["iid"]
        mr = project.merge_requests.get(int(iid)) if iid.isdigit() else None
        if mr is None:
            raise Failure(404, "404 Not found")
        commits = list(reversed(mr.commits or [(mr.sha, mr.created_at)]))
        page = request.int_param("page", 1)
        per_page = min(100, request.int_param("per_page", 20))
        items, last = page_of(commits, page, per_page)
        response = Response(
            200,
            [
                {
                    "id": sha,
                    "short_id": sha[:8],
                    "title": "A commit",
                    "message": "A commit",
                    "author_name": "Administrator",
                    "author_email": "admin@example.com",
                    "authored_date": iso(at),
                    # A rebase rewrites these; the authored date stays when it was written.
                    "committed_date": iso(datetime.now(UTC)),
                    "created_at": iso(datetime.now(UTC)),
                    "parent_ids": [],
                    "web_url": f"{self.origin}/{project.path_with_namespace}/-/commit/{sha}",
                }
                for sha, at in items
            ],
        )
        response.headers.update(self._pagination(request, page, per_page, last, len(commits)))
        return response

    def list_merge_requests(self, request: Request) -> Response:
        project = self._project(request)
        state = request.query.get("state", "all")
        mrs = [
            mr
            for mr in sorted(project.merge_requests.values(), key=lambda m: -m.iid)
            if state == "all" or mr.state == state
        ]
        page = request.int_param("page", 1)
        per_page = min(100, request.int_param("per_page", 20))
        items, last = page_of(mrs, page, per_page)
        response = Response(200, [self.merge_request_json(project, mr) for mr in items])
        response.headers.update(self._pagination(request, page, per_page, last, len(mrs)))
        return response

    def _pagination(
        self, request: Request, page: int, per_page: int, last: int, total: int
    ) -> dict[str, str]:
        def url(number: int) -> str:
            query = {**request.query, "page": str(number), "per_page": str(per_page)}
            return f"{self.origin}{request.path}?{urlencode(query)}"

        links = []
        if page < last:
            links.append(f'<{url(page + 1)}>; rel="next"')
        if page > 1:
            links.append(f'<{url(page - 1)}>; rel="prev"')
        links += [f'<{url(1)}>; rel="first"', f'<{url(last)}>; rel="last"']
        return {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Next-Page": str(page + 1) if page < last else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
            "X-Total": str(total),
            "X-Total-Pages": str(last),
            "Link": ", ".join(links),
        }

    def get_raw_file(self, request: Request) -> Response:
        project = self._project(request)
        ref = request.query.get("ref") or project.default_branch
        files = project.files.get(ref)
        data = files.get(request.params["file_path"].strip("/")) if files is not None else None
        if data is None:
            raise Failure(404, "404 File Not Found")
        return Response(
            200,
            data,
            {
                "X-Gitlab-File-Path": request.params["file_path"],
                "X-Gitlab-Ref": ref,
                "X-Gitlab-Size": str(len(data)),
                "Content-Disposition": f'inline; filename="{request.params["file_path"].rsplit("/", 1)[-1]}"',
            },
            "text/plain; charset=utf-8",
        )

    # -- JSON shapes ---------------------------------------------------------------------------

    def project_json(self, project: GitLabProject) -> dict[str, Any]:
        namespace, _, name = project.path_with_namespace.rpartition("/")
        web = f"{self.origin}/{project.path_with_namespace}"
        return {
            "id": project.id,
            "description": None,
            "name": name,
            "name_with_namespace": project.path_with_namespace.replace("/", " / "),
            "path": name,
            "path_with_namespace": project.path_with_namespace,
            "created_at": iso(datetime.now(UTC)),
            "default_branch": project.default_branch,
            "ssh_url_to_repo": f"git@127.0.0.1:{project.path_with_namespace}.git",
            "http_url_to_repo": f"{web}.git",
            "web_url": web,
            "visibility": "private",
            "namespace": {
                "id": project.id + 1,
                "name": namespace.rsplit("/", 1)[-1],
                "path": namespace.rsplit("/", 1)[-1],
                "kind": "group",
                "full_path": namespace,
                "web_url": f"{self.origin}/groups/{namespace}",
            },
            "_links": {
                "self": f"{self.url}/projects/{project.id}",
                "merge_requests": f"{self.url}/projects/{project.id}/merge_requests",
            },
            "archived": False,
            "empty_repo": False,
        }

    def merge_request_json(self, project: GitLabProject, mr: GitLabMergeRequest) -> dict[str, Any]:
        closed = mr.state in ("closed", "merged")
        author = {
            "id": 1,
            "username": mr.author,
            "name": mr.author.title(),
            "state": "active",
            "web_url": f"{self.origin}/{mr.author}",
        }
        base_sha = fake_sha(f"{project.path_with_namespace}:{mr.target_branch}")
        return {
            "id": project.id * 1000 + mr.iid,
            "iid": mr.iid,
            "project_id": project.id,
            "title": ("Draft: " if mr.draft and not mr.title.startswith("Draft:") else "") + mr.title,
            "description": "",
            "state": mr.state,
            "created_at": iso(mr.created_at),
            "updated_at": iso(mr.updated_at),
            "merged_by": author if mr.state == "merged" else None,
            "merge_user": author if mr.state == "merged" else None,
            "merged_at": iso(mr.updated_at) if mr.state == "merged" else None,
            "closed_by": author if mr.state == "closed" else None,
            "closed_at": iso(mr.updated_at) if closed and mr.state == "closed" else None,
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            # The notes people wrote (ours among them), not the system's.
            "user_notes_count": sum(
                1 for n in list(project.notes.values()) if n.iid == mr.iid and not n.system
            ),
            "upvotes": 0,
            "downvotes": 0,
            "author": author,
            "assignees": [],
            "assignee": None,
            "reviewers": [],
            "source_project_id": mr.source_project_id or project.id,
            "target_project_id": project.id,
            "labels": [],
            "draft": mr.draft,
            "work_in_progress": mr.draft,
            "milestone": None,
            "merge_when_pipeline_succeeds": False,
            "merge_status": "can_be_merged",
            "detailed_merge_status": "draft_status" if mr.draft else "mergeable",
            "sha": mr.sha,
            "merge_commit_sha": fake_sha(f"merge {mr.sha}") if mr.state == "merged" else None,
            "squash_commit_sha": None,
            "discussion_locked": None,
            "should_remove_source_branch": None,
            "force_remove_source_branch": True,
            "reference": f"!{mr.iid}",
            "references": {
                "short": f"!{mr.iid}",
                "relative": f"!{mr.iid}",
                "full": f"{project.path_with_namespace}!{mr.iid}",
            },
            "web_url": f"{self.origin}/{project.path_with_namespace}/-/merge_requests/{mr.iid}",
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": None,
                "human_total_time_spent": None,
            },
            "squash": False,
            "task_completion_status": {"count": 0, "completed_count": 0},
            "has_conflicts": False,
            "blocking_discussions_resolved": True,
            "diff_refs": {"base_sha": base_sha, "head_sha": mr.sha, "start_sha": base_sha},
        }


def encoded(path: str) -> str:
    """A project or file path as GitLab wants it in a URL: every `/` as `%2F`."""
    return quote(path, safe="")
