"""The write side of the fake GitHub: issue comments and their reactions, deployments and their
statuses, commit statuses.

Mixed into `FakeGitHub`, whose repositories hold the state. As on GitHub: pull requests take issue
comments; comments are listed oldest first and deployments and statuses newest first, paged with
`page` / `per_page` and `Link` headers; a deployment's `ref` is resolved to its commit when it is
created, and without `required_contexts` every status of that commit must be a success (else 409);
a `success` deployment status marks the environment's other non-transient, non-production
deployments inactive (`auto_inactive`, on by default); bad input answers 422 `Validation Failed`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .base import Failure, Request, Response, page_of

if TYPE_CHECKING:
    from .github import GitHubRepo

DEPLOYMENT_STATES = frozenset({"error", "failure", "inactive", "in_progress", "queued", "pending", "success"})
COMMIT_STATES = frozenset({"error", "failure", "pending", "success"})
MAX_DESCRIPTION = 140


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})


@dataclass
class IssueComment:
    id: int
    number: int
    body: str
    user: str
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    reactions: list[tuple[str, str]] = field(default_factory=list)  # (user, content), oldest first


@dataclass
class DeploymentStatus:
    id: int
    state: str
    description: str
    environment_url: str
    log_url: str
    creator: str
    created_at: datetime = field(default_factory=now)


@dataclass
class Deployment:
    id: int
    sha: str
    ref: str
    task: str
    environment: str
    description: str | None
    transient_environment: bool
    production_environment: bool
    payload: Any
    creator: str
    statuses: list[DeploymentStatus] = field(default_factory=list)  # oldest first
    created_at: datetime = field(default_factory=now)

    @property
    def state(self) -> str | None:
        return self.statuses[-1].state if self.statuses else None


@dataclass
class CommitStatus:
    id: int
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    creator: str
    created_at: datetime = field(default_factory=now)


def validation_failed(resource: str, field_name: str, message: str, code: str = "custom") -> Response:
    return Response(
        422,
        {
            "message": "Validation Failed",
            "errors": [{"resource": resource, "code": code, "field": field_name, "message": message}],
            "documentation_url": "https://docs.github.com/rest",
            "status": "422",
        },
    )


class GitHubWrites:
    """Handlers for the write endpoints; `FakeGitHub` provides the rest."""

    # Provided by FakeGitHub.
    url: str
    origin: str
    lock: Any
    _repo: Callable[[Request], GitHubRepo]
    _link: Callable[[Request, int, int, int], str]
    user_json: Callable[[str], dict[str, Any]]
    repos: dict[str, GitHubRepo]

    _write_ids = itertools.count(9000)
    bot_login = "k8s-ee-bot"

    def write_routes(self, add: Callable[[str, str, Callable[[Request], Response]], None]) -> None:
        repo = "/repos/{owner}/{repo}"
        add("GET", f"{repo}/issues/{{number}}/comments", self.list_issue_comments)
        add("POST", f"{repo}/issues/{{number}}/comments", self.create_issue_comment)
        add("GET", f"{repo}/issues/comments/{{comment_id}}", self.get_issue_comment)
        add("PATCH", f"{repo}/issues/comments/{{comment_id}}", self.update_issue_comment)
        add("DELETE", f"{repo}/issues/comments/{{comment_id}}", self.delete_issue_comment)
        add("POST", f"{repo}/issues/comments/{{comment_id}}/reactions", self.create_reaction)
        add("GET", f"{repo}/deployments", self.list_deployments)
        add("POST", f"{repo}/deployments", self.create_deployment)
        add("GET", f"{repo}/deployments/{{deployment_id}}", self.get_deployment)
        add("GET", f"{repo}/deployments/{{deployment_id}}/statuses", self.list_deployment_statuses)
        add("POST", f"{repo}/deployments/{{deployment_id}}/statuses", self.create_deployment_status)
        add("POST", f"{repo}/statuses/{{sha}}", self.create_commit_status)
        add("GET", f"{repo}/commits/{{ref}}/statuses", self.list_commit_statuses)
        add("GET", f"{repo}/commits/{{ref}}", self.get_commit)

    # -- state, for tests ----------------------------------------------------------------------

    def add_comment(self, full_name: str, number: int, body: str, user: str = "octocat") -> IssueComment:
        with self.lock:
            comment = IssueComment(next(self._write_ids), number, body, user)
            self.repos[full_name.lower()].comments[comment.id] = comment
            return comment

    def comments(self, full_name: str, number: int) -> list[IssueComment]:
        with self.lock:
            repo = self.repos[full_name.lower()]
            return [c for c in sorted(repo.comments.values(), key=lambda c: c.id) if c.number == number]

    def reactions(self, full_name: str, comment_id: int) -> list[tuple[str, str]]:
        """(user, content) of each reaction on an issue comment, oldest first."""
        with self.lock:
            return list(self.repos[full_name.lower()].comments[comment_id].reactions)

    def deployments(self, full_name: str) -> list[Deployment]:
        """Oldest first."""
        with self.lock:
            return list(self.repos[full_name.lower()].deployments)

    def commit_statuses(self, full_name: str, sha: str) -> list[CommitStatus]:
        """Oldest first."""
        with self.lock:
            return [s for s in self.repos[full_name.lower()].statuses if s.sha == sha]

    def add_commit(self, full_name: str, sha: str) -> None:
        with self.lock:
            self.repos[full_name.lower()].commits.add(sha)

    # -- helpers -------------------------------------------------------------------------------

    def _login(self, request: Request) -> str:
        kind, _ = request.principal
        return "k8s-ee[bot]" if kind == "installation" else self.bot_login

    def _paged(self, request: Request, items: Sequence[Any], render: Callable[[Any], Any]) -> Response:
        page = request.int_param("page", 1)
        per_page = min(100, max(1, request.int_param("per_page", 30)))
        chosen, last = page_of(items, page, per_page)
        response = Response(200, [render(item) for item in chosen])
        link = self._link(request, page, last, per_page)
        if link:
            response.headers["Link"] = link
        return response

    def _issue_number(self, repo: GitHubRepo, request: Request) -> int:
        number = request.params["number"]
        if not number.isdigit() or int(number) not in repo.pulls:
            raise Failure(404, "Not Found")
        return int(number)

    def _comment(self, repo: GitHubRepo, request: Request) -> IssueComment:
        wanted = request.params["comment_id"]
        comment = repo.comments.get(int(wanted)) if wanted.isdigit() else None
        if comment is None:
            raise Failure(404, "Not Found")
        return comment

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            data = request.json()
        except ValueError:
            raise Failure(400, "Problems parsing JSON") from None
        if not isinstance(data, dict):
            raise Failure(400, "Problems parsing JSON")
        return data

    def _shas(self, repo: GitHubRepo) -> set[str]:
        """Commits the repository knows: pull request heads, added commits, and files' SHA refs."""
        file_refs = {ref for ref in repo.files if len(ref) == 40}
        return {p.head_sha for p in repo.pulls.values()} | repo.commits | file_refs

    def _resolve(self, repo: GitHubRepo, ref: str) -> str | None:
        """A full SHA, an unambiguous prefix of one, or a pull request's branch."""
        shas = self._shas(repo)
        if ref in shas:
            return ref
        matches = [sha for sha in shas if len(ref) >= 7 and sha.startswith(ref.lower())]
        if len(matches) == 1:
            return matches[0]
        for pull in repo.pulls.values():
            if ref in (pull.head_ref, f"refs/heads/{pull.head_ref}"):
                return pull.head_sha
        return None

    # -- issue comments ------------------------------------------------------------------------

    def list_issue_comments(self, request: Request) -> Response:
        repo = self._repo(request)
        number = self._issue_number(repo, request)
        found = [c for c in sorted(repo.comments.values(), key=lambda c: c.id) if c.number == number]
        return self._paged(request, found, lambda c: self.comment_json(repo, c))

    def create_issue_comment(self, request: Request) -> Response:
        repo = self._repo(request)
        number = self._issue_number(repo, request)
        body = self._body(request).get("body")
        if not isinstance(body, str) or not body:
            return validation_failed("IssueComment", "body", "body wasn't supplied.", "missing_field")
        comment = IssueComment(next(self._write_ids), number, body, self._login(request))
        repo.comments[comment.id] = comment
        data = self.comment_json(repo, comment)
        return Response(201, data, {"Location": data["url"]})

    def get_issue_comment(self, request: Request) -> Response:
        repo = self._repo(request)
        return Response(200, self.comment_json(repo, self._comment(repo, request)))

    def update_issue_comment(self, request: Request) -> Response:
        repo = self._repo(request)
        comment = self._comment(repo, request)
        body = self._body(request).get("body")
        if not isinstance(body, str) or not body:
            return validation_failed("IssueComment", "body", "body wasn't supplied.", "missing_field")
        comment.body, comment.updated_at = body, now()
        return Response(200, self.comment_json(repo, comment))

    def delete_issue_comment(self, request: Request) -> Response:
        repo = self._repo(request)
        del repo.comments[self._comment(repo, request).id]
        return Response(204)

    def create_reaction(self, request: Request) -> Response:
        """201 for a new reaction; 200 with the existing one when the user left it already."""
        repo = self._repo(request)
        comment = self._comment(repo, request)
        content = self._body(request).get("content")
        if content not in REACTIONS:
            return validation_failed(
                "Reaction", "content", f"content {content!r} is not included in the list"
            )
        user = self._login(request)
        status = 200 if (user, content) in comment.reactions else 201
        if status == 201:
            comment.reactions.append((user, content))
        index = comment.reactions.index((user, content))
        return Response(
            status,
            {
                "id": comment.id * 100 + index,
                "node_id": f"REA_{comment.id}_{index}",
                "user": self.user_json(user),
                "content": content,
                "created_at": iso(now()),
            },
        )

    # -- deployments ---------------------------------------------------------------------------

    def _deployment(self, repo: GitHubRepo, request: Request) -> Deployment:
        wanted = request.params["deployment_id"]
        for deployment in repo.deployments:
            if str(deployment.id) == wanted:
                return deployment
        raise Failure(404, "Not Found")

    def list_deployments(self, request: Request) -> Response:
        repo = self._repo(request)
        filters = {name: request.query.get(name) for name in ("sha", "ref", "task", "environment")}
        found = [
            d
            for d in reversed(repo.deployments)
            if all(value is None or getattr(d, name) == value for name, value in filters.items())
        ]
        return self._paged(request, found, lambda d: self.deployment_json(repo, d))

    def get_deployment(self, request: Request) -> Response:
        repo = self._repo(request)
        return Response(200, self.deployment_json(repo, self._deployment(repo, request)))

    def create_deployment(self, request: Request) -> Response:
        repo = self._repo(request)
        data = self._body(request)
        ref = data.get("ref")
        if not isinstance(ref, str) or not ref:
            return validation_failed("Deployment", "ref", "ref wasn't supplied.", "missing_field")
        sha = self._resolve(repo, ref)
        if sha is None:
            return validation_failed("Deployment", "ref", f"No ref found for: {ref}")
        required = data.get("required_contexts")
        statuses = [s for s in repo.statuses if s.sha == sha]
        latest = {s.context: s.state for s in statuses}
        contexts = latest if required is None else {c: latest.get(c) for c in required}
        if any(state != "success" for state in contexts.values()):
            raise Failure(409, f"Conflict: Commit status checks failed for {ref}.")
        environment = str(data.get("environment") or "production")
        deployment = Deployment(
            id=next(self._write_ids),
            sha=sha,
            ref=ref,
            task=str(data.get("task") or "deploy"),
            environment=environment,
            description=data.get("description"),
            transient_environment=bool(data.get("transient_environment", False)),
            production_environment=bool(data.get("production_environment", environment == "production")),
            payload=data.get("payload") or {},
            creator=self._login(request),
        )
        repo.deployments.append(deployment)
        return Response(201, self.deployment_json(repo, deployment))

    def list_deployment_statuses(self, request: Request) -> Response:
        repo = self._repo(request)
        deployment = self._deployment(repo, request)
        return self._paged(
            request,
            list(reversed(deployment.statuses)),
            lambda s: self.deployment_status_json(repo, deployment, s),
        )

    def create_deployment_status(self, request: Request) -> Response:
        repo = self._repo(request)
        deployment = self._deployment(repo, request)
        data = self._body(request)
        state = data.get("state")
        if state not in DEPLOYMENT_STATES:
            return validation_failed("DeploymentStatus", "state", "state is not included in the list")
        description = str(data.get("description") or "")
        if len(description) > MAX_DESCRIPTION:
            return validation_failed("DeploymentStatus", "description", "description is too long")
        if data.get("environment"):
            deployment.environment = str(data["environment"])
        status = DeploymentStatus(
            id=next(self._write_ids),
            state=str(state),
            description=description,
            environment_url=str(data.get("environment_url") or ""),
            log_url=str(data.get("log_url") or data.get("target_url") or ""),
            creator=self._login(request),
        )
        deployment.statuses.append(status)
        if state == "success" and data.get("auto_inactive", True):
            for other in repo.deployments:
                if (
                    other is not deployment
                    and other.environment == deployment.environment
                    and not other.transient_environment
                    and not other.production_environment
                    and other.state not in (None, "inactive")
                ):
                    other.statuses.append(
                        DeploymentStatus(next(self._write_ids), "inactive", "", "", "", status.creator)
                    )
        return Response(201, self.deployment_status_json(repo, deployment, status))

    # -- commit statuses -----------------------------------------------------------------------

    def create_commit_status(self, request: Request) -> Response:
        repo = self._repo(request)
        sha = request.params["sha"]
        if sha not in self._shas(repo):
            return validation_failed("Status", "sha", f"No commit found for SHA: {sha}")
        data = self._body(request)
        if data.get("state") not in COMMIT_STATES:
            return validation_failed("Status", "state", "state is not included in the list")
        description = data.get("description")
        if isinstance(description, str) and len(description) > MAX_DESCRIPTION:
            return validation_failed(
                "Status", "description", "description is too long (maximum is 140 characters)"
            )
        status = CommitStatus(
            id=next(self._write_ids),
            sha=sha,
            state=str(data["state"]),
            context=str(data.get("context") or "default"),
            description=description,
            target_url=data.get("target_url"),
            creator=self._login(request),
        )
        repo.statuses.append(status)
        return Response(201, self.commit_status_json(repo, status))

    def list_commit_statuses(self, request: Request) -> Response:
        repo = self._repo(request)
        sha = self._resolve(repo, request.params["ref"])
        found = [s for s in reversed(repo.statuses) if s.sha == sha]
        return self._paged(request, found, lambda s: self.commit_status_json(repo, s))

    def get_commit(self, request: Request) -> Response:
        repo = self._repo(request)
        sha = self._resolve(repo, request.params["ref"])
        if sha is None:
            return validation_failed("Commit", "sha", f"No commit found for SHA: {request.params['ref']}")
        api = f"{self.url}/repos/{repo.full_name}"
        return Response(
            200,
            {
                "sha": sha,
                "node_id": f"C_{sha[:12]}",
                "url": f"{api}/commits/{sha}",
                "html_url": f"{self.origin}/{repo.full_name}/commit/{sha}",
                "commit": {
                    "message": "A commit",
                    "tree": {"sha": sha[::-1], "url": f"{api}/git/trees/{sha[::-1]}"},
                },
                "parents": [],
                "author": self.user_json("octocat"),
                "committer": self.user_json("octocat"),
            },
        )

    # -- JSON shapes ---------------------------------------------------------------------------

    def comment_json(self, repo: GitHubRepo, comment: IssueComment) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        return {
            "id": comment.id,
            "node_id": f"IC_{comment.id}",
            "url": f"{api}/issues/comments/{comment.id}",
            "html_url": f"{self.origin}/{repo.full_name}/pull/{comment.number}#issuecomment-{comment.id}",
            "body": comment.body,
            "user": self.user_json(comment.user),
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "issue_url": f"{api}/issues/{comment.number}",
            "author_association": "NONE" if comment.user.endswith("[bot]") else "MEMBER",
            "performed_via_github_app": None,
        }

    def deployment_json(self, repo: GitHubRepo, deployment: Deployment) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        return {
            "url": f"{api}/deployments/{deployment.id}",
            "id": deployment.id,
            "node_id": f"DE_{deployment.id}",
            "sha": deployment.sha,
            "ref": deployment.ref,
            "task": deployment.task,
            "payload": deployment.payload,
            "original_environment": deployment.environment,
            "environment": deployment.environment,
            "description": deployment.description,
            "creator": self.user_json(deployment.creator),
            "created_at": iso(deployment.created_at),
            "updated_at": iso(
                deployment.statuses[-1].created_at if deployment.statuses else deployment.created_at
            ),
            "statuses_url": f"{api}/deployments/{deployment.id}/statuses",
            "repository_url": api,
            "transient_environment": deployment.transient_environment,
            "production_environment": deployment.production_environment,
        }

    def deployment_status_json(
        self, repo: GitHubRepo, deployment: Deployment, status: DeploymentStatus
    ) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        return {
            "url": f"{api}/deployments/{deployment.id}/statuses/{status.id}",
            "id": status.id,
            "node_id": f"DES_{status.id}",
            "state": status.state,
            "creator": self.user_json(status.creator),
            "description": status.description,
            "environment": deployment.environment,
            "target_url": status.log_url,
            "log_url": status.log_url,
            "environment_url": status.environment_url,
            "created_at": iso(status.created_at),
            "updated_at": iso(status.created_at),
            "deployment_url": f"{api}/deployments/{deployment.id}",
            "repository_url": api,
        }

    def commit_status_json(self, repo: GitHubRepo, status: CommitStatus) -> dict[str, Any]:
        return {
            "url": f"{self.url}/repos/{repo.full_name}/statuses/{status.sha}",
            "avatar_url": f"{self.origin}/avatars/{status.creator}",
            "id": status.id,
            "node_id": f"SC_{status.id}",
            "state": status.state,
            "description": status.description,
            "target_url": status.target_url,
            "context": status.context,
            "created_at": iso(status.created_at),
            "updated_at": iso(status.created_at),
            "creator": self.user_json(status.creator),
        }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
