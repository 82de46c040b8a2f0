"""The write side of the fake GitLab: merge request notes, environments, commit statuses.

Mixed into `FakeGitLab`, whose projects hold the state. As on GitLab: notes come newest first unless
`sort=asc`, and include system notes; an environment name is unique in its project (400 "has
already been taken"), `stop` makes it `stopped`, and only a stopped one can be deleted (403 else);
a commit status for a name stays one status while it is pending or running, and moving it to the
state it is in is refused with 400 "Cannot transition status via :run from :running"; a finished
one is followed by a new status.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .base import Failure, Request, Response, page_of

if TYPE_CHECKING:
    from .gitlab import GitLabProject

COMMIT_STATES = frozenset({"pending", "running", "success", "failed", "canceled", "skipped"})
TIERS = frozenset({"production", "staging", "testing", "development", "other"})
# The event GitLab names in its refusal to move a status to the state it is in.
_EVENTS = {"pending": "enqueue", "running": "run"}


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


@dataclass
class Note:
    id: int
    iid: int  # the merge request's
    body: str
    author: str
    system: bool = False
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    discussion_id: str = field(default_factory=lambda: secrets.token_hex(20))
    awards: list[tuple[str, str]] = field(default_factory=list)  # (user, emoji name)


@dataclass
class Environment:
    id: int
    name: str
    external_url: str | None
    tier: str
    state: str = "available"  # available, stopping, stopped
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)


@dataclass
class CommitStatus:
    id: int
    sha: str
    ref: str | None
    name: str
    status: str
    description: str | None
    target_url: str | None
    created_at: datetime = field(default_factory=now)
    finished_at: datetime | None = None


class GitLabWrites:
    """Handlers for the write endpoints; `FakeGitLab` provides the rest."""

    # Provided by FakeGitLab.
    url: str
    origin: str
    lock: Any
    projects: dict[str, GitLabProject]
    users: dict[str, int]
    _project: Callable[[Request], GitLabProject]
    _pagination: Callable[[Request, int, int, int, int], dict[str, str]]

    _write_ids = itertools.count(5000)
    bot_username = "k8s-ee-bot"

    def write_routes(self, add: Callable[[str, str, Callable[[Request], Response]], None]) -> None:
        mr = "/projects/{id}/merge_requests/{iid}"
        add("GET", f"{mr}/notes", self.list_notes)
        add("POST", f"{mr}/notes", self.create_note)
        add("GET", f"{mr}/notes/{{note_id}}", self.get_note)
        add("PUT", f"{mr}/notes/{{note_id}}", self.update_note)
        add("DELETE", f"{mr}/notes/{{note_id}}", self.delete_note)
        add("POST", f"{mr}/notes/{{note_id}}/award_emoji", self.award_emoji)
        add("POST", f"{mr}/discussions/{{discussion_id}}/notes", self.add_discussion_note)
        add("GET", "/projects/{id}/environments", self.list_environments)
        add("POST", "/projects/{id}/environments", self.create_environment)
        add("GET", "/projects/{id}/environments/{environment_id}", self.get_environment)
        add("PUT", "/projects/{id}/environments/{environment_id}", self.update_environment)
        add("DELETE", "/projects/{id}/environments/{environment_id}", self.delete_environment)
        add("POST", "/projects/{id}/environments/{environment_id}/stop", self.stop_environment)
        add("POST", "/projects/{id}/statuses/{sha}", self.create_commit_status)
        add("GET", "/projects/{id}/repository/commits/{sha}/statuses", self.list_commit_statuses)

    # -- state, for tests ----------------------------------------------------------------------

    def add_note(self, path: str, iid: int, body: str, author: str = "root", system: bool = False) -> Note:
        with self.lock:
            note = Note(next(self._write_ids), iid, body, author, system)
            self.projects[path.lower()].notes[note.id] = note
            return note

    def awards(self, path: str, note_id: int) -> list[tuple[str, str]]:
        """(user, emoji name) of each award on a note, oldest first."""
        with self.lock:
            return list(self.projects[path.lower()].notes[note_id].awards)

    def notes(self, path: str, iid: int) -> list[Note]:
        """Oldest first, system notes included."""
        with self.lock:
            project = self.projects[path.lower()]
            return [n for n in sorted(project.notes.values(), key=lambda n: n.id) if n.iid == iid]

    def environments(self, path: str) -> list[Environment]:
        with self.lock:
            return sorted(self.projects[path.lower()].environments.values(), key=lambda e: e.id)

    def commit_statuses(self, path: str, sha: str) -> list[CommitStatus]:
        """Oldest first."""
        with self.lock:
            return [s for s in self.projects[path.lower()].statuses if s.sha == sha]

    def add_commit(self, path: str, sha: str) -> None:
        with self.lock:
            self.projects[path.lower()].commits.add(sha)

    # -- helpers -------------------------------------------------------------------------------

    def _paged(self, request: Request, items: Sequence[Any], render: Callable[[Any], Any]) -> Response:
        page = request.int_param("page", 1)
        per_page = min(100, max(1, request.int_param("per_page", 20)))
        chosen, last = page_of(items, page, per_page)
        response = Response(200, [render(item) for item in chosen])
        response.headers.update(self._pagination(request, page, per_page, last, len(items)))
        return response

    def _data(self, request: Request) -> dict[str, Any]:
        """A JSON body, or form fields, as python-gitlab may send either."""
        content_type = request.headers.get("Content-Type", "")
        if "json" in content_type:
            data = request.json()
            if not isinstance(data, dict):
                raise Failure(400, "400 Bad request - body is not an object")
            return data
        return {**request.query, **dict(parse_qsl(request.body.decode()))}

    def _merge_request_iid(self, project: GitLabProject, request: Request) -> int:
        iid = request.params["iid"]
        if not iid.isdigit() or int(iid) not in project.merge_requests:
            raise Failure(404, "404 Not found")
        return int(iid)

    def _note(self, project: GitLabProject, request: Request) -> Note:
        iid = self._merge_request_iid(project, request)
        wanted = request.params["note_id"]
        note = project.notes.get(int(wanted)) if wanted.isdigit() else None
        if note is None or note.iid != iid:
            raise Failure(404, "404 Note Not Found")
        return note

    def _environment(self, project: GitLabProject, request: Request) -> Environment:
        wanted = request.params["environment_id"]
        environment = project.environments.get(int(wanted)) if wanted.isdigit() else None
        if environment is None:
            raise Failure(404, "404 Not found")
        return environment

    def _resolve(self, project: GitLabProject, sha: str) -> str | None:
        shas = {mr.sha for mr in project.merge_requests.values()} | project.commits
        matches = [full for full in shas if len(sha) >= 7 and full.startswith(sha.lower())]
        return matches[0] if len(matches) == 1 else None

    # -- notes ---------------------------------------------------------------------------------

    def list_notes(self, request: Request) -> Response:
        project = self._project(request)
        iid = self._merge_request_iid(project, request)
        order_by = request.query.get("order_by", "created_at")
        if order_by not in ("created_at", "updated_at"):
            raise Failure(400, "400 Bad request - order_by does not have a valid value")
        notes = sorted(
            (n for n in project.notes.values() if n.iid == iid),
            key=lambda n: (getattr(n, order_by), n.id),
            reverse=request.query.get("sort", "desc") != "asc",
        )
        return self._paged(request, notes, lambda n: self.note_json(project, n))

    def create_note(self, request: Request) -> Response:
        project = self._project(request)
        iid = self._merge_request_iid(project, request)
        body = self._data(request).get("body")
        if not isinstance(body, str) or not body.strip():
            raise Failure(400, "400 Bad request - body is missing")
        note = Note(next(self._write_ids), iid, body, self.bot_username)
        project.notes[note.id] = note
        return Response(201, self.note_json(project, note))

    def award_emoji(self, request: Request) -> Response:
        project = self._project(request)
        note = self._note(project, request)
        name = self._data(request).get("name")
        if not isinstance(name, str) or not name:
            raise Failure(400, "400 Bad request - name is missing")
        if (self.bot_username, name) in note.awards:
            # GitLab answers a repeated award this way (lib/api/award_emoji.rb).
            raise Failure(404, "404 Award Emoji Name has already been taken")
        note.awards.append((self.bot_username, name))
        return Response(
            201,
            {
                "id": note.id * 100 + len(note.awards),
                "name": name,
                "user": self.user_json(self.bot_username),
                "created_at": iso(now()),
                "updated_at": iso(now()),
                "awardable_id": note.id,
                "awardable_type": "Note",
            },
        )

    def add_discussion_note(self, request: Request) -> Response:
        project = self._project(request)
        iid = self._merge_request_iid(project, request)
        wanted = request.params["discussion_id"]
        if not any(n.iid == iid and n.discussion_id == wanted for n in project.notes.values()):
            raise Failure(404, "404 Not found")
        body = self._data(request).get("body")
        if not isinstance(body, str) or not body.strip():
            raise Failure(400, "400 Bad request - body is missing")
        note = Note(next(self._write_ids), iid, body, self.bot_username, discussion_id=wanted)
        project.notes[note.id] = note
        return Response(201, self.note_json(project, note))

    def get_note(self, request: Request) -> Response:
        project = self._project(request)
        return Response(200, self.note_json(project, self._note(project, request)))

    def update_note(self, request: Request) -> Response:
        project = self._project(request)
        note = self._note(project, request)
        body = self._data(request).get("body")
        if not isinstance(body, str) or not body.strip():
            raise Failure(400, "400 Bad request - body is missing")
        if note.system:
            raise Failure(403, "403 Forbidden")
        note.body, note.updated_at = body, now()
        return Response(200, self.note_json(project, note))

    def delete_note(self, request: Request) -> Response:
        project = self._project(request)
        del project.notes[self._note(project, request).id]
        return Response(204)

    # -- environments --------------------------------------------------------------------------

    def list_environments(self, request: Request) -> Response:
        project = self._project(request)
        name, search, states = (request.query.get(k) for k in ("name", "search", "states"))
        if name and search:
            raise Failure(400, "400 Bad request - name, search are mutually exclusive")
        found = [
            e
            for e in sorted(project.environments.values(), key=lambda e: e.id)
            if (name is None or e.name == name)
            and (search is None or search in e.name)
            and (states is None or e.state == states)
        ]
        return self._paged(request, found, self.environment_json)

    def create_environment(self, request: Request) -> Response:
        project = self._project(request)
        data = self._data(request)
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise Failure(400, "400 Bad request - name is missing")
        problems = self._environment_problems(data)
        if any(e.name == name for e in project.environments.values()):
            problems["name"] = ["has already been taken"]
        if problems:
            return Response(400, {"message": problems})
        environment = Environment(
            next(self._write_ids), name, data.get("external_url"), str(data.get("tier") or "other")
        )
        project.environments[environment.id] = environment
        return Response(201, self.environment_json(environment))

    def get_environment(self, request: Request) -> Response:
        project = self._project(request)
        return Response(200, self.environment_json(self._environment(project, request)))

    def update_environment(self, request: Request) -> Response:
        project = self._project(request)
        environment = self._environment(project, request)
        data = self._data(request)
        problems = self._environment_problems(data)
        if problems:
            return Response(400, {"message": problems})
        if "external_url" in data:
            environment.external_url = data["external_url"]
        if "tier" in data:
            environment.tier = str(data["tier"])
        environment.updated_at = now()
        return Response(200, self.environment_json(environment))

    def stop_environment(self, request: Request) -> Response:
        project = self._project(request)
        environment = self._environment(project, request)
        environment.state, environment.updated_at = "stopped", now()
        return Response(200, self.environment_json(environment))

    def delete_environment(self, request: Request) -> Response:
        project = self._project(request)
        environment = self._environment(project, request)
        if environment.state != "stopped":
            raise Failure(403, "403 Forbidden")
        del project.environments[environment.id]
        return Response(204)

    def _environment_problems(self, data: dict[str, Any]) -> dict[str, list[str]]:
        problems: dict[str, list[str]] = {}
        url = data.get("external_url")
        if url is not None and urlsplit(str(url)).scheme not in ("http", "https"):
            problems["external_url"] = ["is blocked: Only allowed schemes are http, https"]
        if "tier" in data and data["tier"] not in TIERS:
            problems["tier"] = ["is not included in the list"]
        return problems

    # -- commit statuses -----------------------------------------------------------------------

    def create_commit_status(self, request: Request) -> Response:
        project = self._project(request)
        sha = self._resolve(project, request.params["sha"])
        if sha is None:
            raise Failure(404, "404 Commit Not Found")
        data = self._data(request)
        state = data.get("state")
        if state not in COMMIT_STATES:
            raise Failure(400, "400 Bad request - state does not have a valid value")
        name = str(data.get("name") or data.get("context") or "default")
        ref = data.get("ref")
        current = next(
            (
                s
                for s in reversed(project.statuses)
                if s.sha == sha and s.name == name and s.ref == ref and s.status in ("pending", "running")
            ),
            None,
        )
        if current is not None and current.status == state and state in _EVENTS:
            event = _EVENTS[state]
            raise Failure(
                400,
                f"Cannot transition status via :{event} from :{state} "
                f'(Reason(s): Status cannot transition via "{event}")',
            )
        if current is None:
            current = CommitStatus(next(self._write_ids), sha, ref, name, state, None, None)
            project.statuses.append(current)
        current.status = state
        current.description = data.get("description")
        current.target_url = data.get("target_url")
        if state not in ("pending", "running"):
            current.finished_at = now()
        return Response(201, self.commit_status_json(current))

    def list_commit_statuses(self, request: Request) -> Response:
        project = self._project(request)
        sha = self._resolve(project, request.params["sha"])
        found = [s for s in reversed(project.statuses) if s.sha == sha]
        return self._paged(request, found, self.commit_status_json)

    # -- JSON shapes ---------------------------------------------------------------------------

    def user_json(self, username: str) -> dict[str, Any]:
        return {
            "id": self.users.get(username.lower(), sum(map(ord, username))),
            "username": username,
            "name": username.title(),
            "state": "active",
            "avatar_url": f"{self.origin}/uploads/{username}.png",
            "web_url": f"{self.origin}/{username}",
        }

    def note_json(self, project: GitLabProject, note: Note) -> dict[str, Any]:
        return {
            "id": note.id,
            "type": None,
            "body": note.body,
            "attachment": None,
            "author": self.user_json(note.author),
            "created_at": iso(note.created_at),
            "updated_at": iso(note.updated_at),
            "system": note.system,
            "noteable_id": project.id * 1000 + note.iid,
            "noteable_type": "MergeRequest",
            "project_id": project.id,
            "resolvable": False,
            "confidential": False,
            "internal": False,
            "noteable_iid": note.iid,
            "commands_changes": {},
        }

    def environment_json(self, environment: Environment) -> dict[str, Any]:
        return {
            "id": environment.id,
            "name": environment.name,
            "slug": f"{environment.name}-{environment.id:06x}"[:24],
            "description": None,
            "external_url": environment.external_url,
            "state": environment.state,
            "tier": environment.tier,
            "created_at": iso(environment.created_at),
            "updated_at": iso(environment.updated_at),
            "auto_stop_at": None,
        }

    def commit_status_json(self, status: CommitStatus) -> dict[str, Any]:
        return {
            "id": status.id,
            "sha": status.sha,
            "ref": status.ref,
            "status": status.status,
            "name": status.name,
            "target_url": status.target_url,
            "description": status.description,
            "created_at": iso(status.created_at),
            "started_at": iso(status.created_at) if status.status != "pending" else None,
            "finished_at": iso(status.finished_at),
            "allow_failure": False,
            "coverage": None,
            "author": self.user_json(self.bot_username),
        }
