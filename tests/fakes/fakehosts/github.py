"""A fake GitHub REST API (github.com, or GitHub Enterprise Server under `/api/v3`).

Serves what the worker reads (repositories, pull requests, contents, blobs) and the GitHub App
flow: `GET /repos/{o}/{r}/installation` and `POST /app/installations/{id}/access_tokens` take the
app's JWT, whose RS256 signature is checked with the app's public key; the installation tokens
they mint expire, and each only opens its own account's repositories. Every answer carries the
`X-RateLimit-*` headers; a spent limit answers 403 as GitHub does. What is written back on pull
requests (comments, reactions, deployments, statuses) is served by `github_writes.GitHubWrites`; webhooks
(repository, organisation and App hooks, their deliveries and redelivery) by `github_hooks`.

Access, as GitHub computes it: a user's permission on a repository is the highest role among
their direct collaborator grant and their teams' grants (roles `read` < `triage` < `write` <
`maintain` < `admin`; the answer's `permission` reads `maintain` as `write` and `triage` as
`read`); a known user without a grant has `none` (`read` on a public repository); an unknown
login is 404. `GET /user` answers the token's user, `GET /app` the app (its bot is
`{slug}[bot]`). A pull request from a fork has a head repository of its own (or none, when the
fork was deleted).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt

from .base import Failure, FakeHost, Request, Response, fake_sha, page_of
from .github_hooks import GitHubHooks, HookSet
from .github_writes import CommitStatus, Deployment, GitHubWrites, IssueComment

DOCS = "https://docs.github.com/rest"
SECONDARY_RATE_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000."
)


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


@dataclass
class GitHubPull:
    number: int
    head_sha: str
    head_ref: str
    base_ref: str = "main"
    state: str = "open"  # "open" or "closed"
    merged: bool = False
    draft: bool = False
    title: str = "A change"
    user: str = "octocat"
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    # (sha, authored at), oldest first; empty: the head alone, authored when the pull was opened.
    commits: list[tuple[str, datetime]] = field(default_factory=list)
    # "": the base repository's own branch; `owner/name`: a fork's; None: the fork was deleted.
    head_repo: str | None = ""


ROLES = ("read", "triage", "write", "maintain", "admin")
ROLE_PERMISSION = {"read": "read", "triage": "read", "write": "write", "maintain": "write", "admin": "admin"}


@dataclass
class GitHubTeam:
    name: str
    role: str
    members: set[str]


@dataclass
class GitHubRepo:
    owner: str
    name: str
    id: int
    default_branch: str = "main"
    pulls: dict[int, GitHubPull] = field(default_factory=dict)
    # ref (branch name or commit SHA) -> path -> bytes
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    commits: set[str] = field(default_factory=set)  # full SHAs besides the pull requests' heads
    comments: dict[int, IssueComment] = field(default_factory=dict)
    deployments: list[Deployment] = field(default_factory=list)  # oldest first
    statuses: list[CommitStatus] = field(default_factory=list)  # oldest first
    collaborators: dict[str, str] = field(default_factory=dict)  # login (lower case) -> role
    teams: list[GitHubTeam] = field(default_factory=list)
    public: bool = False
    hook_set: HookSet = field(default_factory=lambda: HookSet("Repository", "repository"))

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class MintedToken:
    token: str
    installation_id: int
    expires_at: datetime
    revoked: bool = False


class FakeGitHub(GitHubHooks, GitHubWrites, FakeHost):
    name = "github"

    def __init__(self, *, enterprise: bool = False) -> None:
        super().__init__()
        self.prefix = "/api/v3" if enterprise else ""
        self.repos: dict[str, GitHubRepo] = {}
        self.tokens: set[str] = set()
        self.app_id: str | None = None
        self.app_public_key: str | bytes | None = None
        self.installations: dict[str, int] = {}  # account login (lower case) -> installation id
        self.minted: list[MintedToken] = []
        self.token_lifetime = timedelta(hours=1)
        self.contents_max_bytes = 1024 * 1024
        self.rate_limit = 5000
        self.rate_remaining = 5000
        self._ids = itertools.count(1000)
        self.users: set[str] = {"octocat"}  # logins GitHub knows (lower case)
        self.app_slug = "k8s-ee"

    # -- state, for tests ----------------------------------------------------------------------

    def add_token(self, token: str) -> None:
        with self.lock:
            self.tokens.add(token)

    def add_repo(self, full_name: str, default_branch: str = "main") -> GitHubRepo:
        owner, name = full_name.split("/")
        with self.lock:
            repo = GitHubRepo(owner, name, next(self._ids), default_branch)
            self.repos[full_name.lower()] = repo
            return repo

    def add_pull(self, full_name: str, number: int, **fields: Any) -> GitHubPull:
        fields.setdefault("head_sha", fake_sha(f"{full_name}#{number}"))
        fields.setdefault("head_ref", f"feature-{number}")
        with self.lock:
            pull = GitHubPull(number=number, **fields)
            self.repos[full_name.lower()].pulls[number] = pull
            return pull

    def add_file(self, full_name: str, path: str, content: str | bytes, ref: str) -> None:
        data = content.encode() if isinstance(content, str) else content
        with self.lock:
            self.repos[full_name.lower()].files.setdefault(ref, {})[path.strip("/")] = data

    def add_user(self, login: str) -> None:
        with self.lock:
            self.users.add(login.lower())

    def add_collaborator(self, full_name: str, login: str, role: str) -> None:
        assert role in ROLES, role
        with self.lock:
            self.users.add(login.lower())
            self.repos[full_name.lower()].collaborators[login.lower()] = role

    def add_team(self, full_name: str, team: str, role: str, members: set[str]) -> None:
        """A team with `role` on the repository (granted through the organisation)."""
        assert role in ROLES, role
        with self.lock:
            self.users.update(member.lower() for member in members)
            self.repos[full_name.lower()].teams.append(GitHubTeam(team, role, {m.lower() for m in members}))

    def enable_app(self, app_id: str, public_key_pem: str | bytes) -> None:
        with self.lock:
            self.app_id, self.app_public_key = str(app_id), public_key_pem

    def install_app(self, account: str, installation_id: int) -> None:
        with self.lock:
            self.installations[account.lower()] = installation_id

    def uninstall_app(self, account: str) -> None:
        """As on GitHub, the installation's tokens stop working at once."""
        with self.lock:
            installation_id = self.installations.pop(account.lower(), None)
            for minted in self.minted:
                if minted.installation_id == installation_id:
                    minted.revoked = True

    def add_secondary_rate_limit(
        self, times: int = 1, retry_after: int | None = None, *, method: str = "*", path: str = ""
    ) -> None:
        self.add_fault(
            403, times, message=SECONDARY_RATE_LIMIT, retry_after=retry_after, method=method, path=path
        )

    # -- the host's conventions ----------------------------------------------------------------

    def error(self, status: int, message: str) -> Response:
        return Response(status, {"message": message, "documentation_url": DOCS, "status": str(status)})

    def finish(self, request: Request, response: Response) -> None:
        reset = int(time.time()) // 3600 * 3600 + 3600
        response.headers.setdefault("X-RateLimit-Limit", str(self.rate_limit))
        response.headers.setdefault("X-RateLimit-Remaining", str(self.rate_remaining))
        response.headers.setdefault("X-RateLimit-Used", str(self.rate_limit - self.rate_remaining))
        response.headers.setdefault("X-RateLimit-Reset", str(reset))
        response.headers.setdefault("X-RateLimit-Resource", "core")
        response.headers.setdefault("X-GitHub-Media-Type", "github.v3; format=json")
        response.headers.setdefault("X-GitHub-Request-Id", secrets.token_hex(8).upper())

    def authenticate(self, request: Request) -> None:
        value = request.headers.get("Authorization", "")
        scheme, _, credential = value.partition(" ")
        scheme, credential = scheme.lower(), credential.strip()
        if not value:
            raise Failure(401, "Requires authentication")
        if scheme == "bearer" and credential.count(".") == 2:
            request.principal = ("app", self._verify_jwt(credential))
        elif scheme in ("token", "bearer") and credential in self.tokens:
            request.principal = ("user", credential)
        elif scheme in ("token", "bearer") and (minted := self._installation_token(credential)):
            request.principal = ("installation", minted.installation_id)
        else:
            raise Failure(401, "Bad credentials")
        if self.rate_remaining <= 0:
            raise Failure(
                403,
                "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, "
                "please include the request ID 0000:0000:0000.",
                {"X-RateLimit-Remaining": "0"},
            )
        self.rate_remaining -= 1

    def _verify_jwt(self, token: str) -> dict[str, Any]:
        if self.app_public_key is None:
            raise Failure(401, "A JSON web token could not be decoded")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.app_public_key, algorithms=["RS256"], options={"require": ["iat", "exp", "iss"]}
            )
        except jwt.ExpiredSignatureError:
            raise Failure(
                401,
                "'Expiration time' claim ('exp') must be a numeric value representing the future time "
                "at which the assertion expires",
            ) from None
        except jwt.PyJWTError:
            raise Failure(401, "A JSON web token could not be decoded") from None
        if str(claims["iss"]) != self.app_id:
            raise Failure(401, "A JSON web token could not be decoded")
        if claims["exp"] - time.time() > 600 + 30:
            raise Failure(401, "'Expiration time' claim ('exp') is too far in the future")
        return claims

    def _installation_token(self, token: str) -> MintedToken | None:
        for minted in self.minted:
            if minted.token == token and not minted.revoked and minted.expires_at > datetime.now(UTC):
                return minted
        return None

    # -- routes --------------------------------------------------------------------------------

    def routes(self) -> None:
        add = self.router.add
        add("GET", "/repos/{owner}/{repo}", self.get_repo)
        add("GET", "/repos/{owner}/{repo}/pulls", self.list_pulls)
        add("GET", "/repos/{owner}/{repo}/pulls/{number}", self.get_pull)
        add("GET", "/repos/{owner}/{repo}/pulls/{number}/commits", self.list_pull_commits)
        add("GET", "/repos/{owner}/{repo}/contents/{path:path}", self.get_contents)
        add("GET", "/repos/{owner}/{repo}/git/blobs/{sha}", self.get_blob)
        add("GET", "/repos/{owner}/{repo}/installation", self.get_installation)
        add("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", self.get_permission)
        add("GET", "/user", self.get_authenticated_user)
        add("GET", "/app", self.get_app)
        add("POST", "/app/installations/{installation_id}/access_tokens", self.create_access_token)
        self.write_routes(add)
        self.hook_routes(add)

    def _app_only(self, request: Request) -> None:
        if not (request.principal and request.principal[0] == "app"):
            raise Failure(
                401, "A JSON web token could not be decoded"
            )  # GitHub wants the app's JWT here, not a token

    def _repo(self, request: Request) -> GitHubRepo:
        kind, who = request.principal
        if kind == "app":
            raise Failure(403, "Resource not accessible by integration")
        repo = self.repos.get(f"{request.params['owner']}/{request.params['repo']}".lower())
        if repo is None:
            raise Failure(404, "Not Found")
        if kind == "installation" and self.installations.get(repo.owner.lower()) != who:
            raise Failure(404, "Not Found")  # GitHub hides what a token cannot see
        return repo

    def get_repo(self, request: Request) -> Response:
        return Response(200, self.repo_json(self._repo(request)))

    def get_pull(self, request: Request) -> Response:
        repo = self._repo(request)
        pull = repo.pulls.get(int(request.params["number"])) if request.params["number"].isdigit() else None
        if pull is None:
            raise Failure(404, "Not Found")
        return Response(200, self.pull_json(repo, pull))

    def list_pull_commits(self, request: Request) -> Response:
        """Oldest first, at most 250 (GitHub's own limit for this endpoint), paginated."""
        repo = self._repo(request)
        pull = repo.pulls.get(int(request.params["number"])) if request.params["number"].isdigit() else None
        if pull is None:
            raise Failure(404, "Not Found")
        commits = (pull.commits or [(pull.head_sha, pull.created_at)])[:250]
        page = request.int_param("page", 1)
        per_page = min(100, request.int_param("per_page", 30))
        items, last = page_of(commits, page, per_page)
        response = Response(200, [self.commit_json(repo, sha, at) for sha, at in items])
        link = self._link(request, page, last, per_page)
        if link:
            response.headers["Link"] = link
        return response

    def commit_json(self, repo: GitHubRepo, sha: str, at: datetime) -> dict[str, Any]:
        person = {"name": "Mona Octocat", "email": "mona@example.com", "date": iso(at)}
        return {
            "sha": sha,
            "node_id": f"C_{sha[:12]}",
            "url": f"{self.url}/repos/{repo.full_name}/commits/{sha}",
            "html_url": f"{self.web}/{repo.full_name}/commit/{sha}",
            "commit": {
                "author": person,
                # A rebase rewrites the committer's date; the author's stays when it was written.
                "committer": {**person, "date": iso(datetime.now(UTC).replace(microsecond=0))},
                "message": "A commit",
                "tree": {"sha": fake_sha(f"tree-{sha}")},
            },
            "parents": [],
        }

    def list_pulls(self, request: Request) -> Response:
        repo = self._repo(request)
        state = request.query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise Failure(422, "Validation Failed")
        pulls = [p for p in sorted(repo.pulls.values(), key=lambda p: -p.number) if state in ("all", p.state)]
        page = request.int_param("page", 1)
        per_page = min(100, request.int_param("per_page", 30))
        items, last = page_of(pulls, page, per_page)
        response = Response(200, [self.pull_json(repo, p) for p in items])
        link = self._link(request, page, last, per_page)
        if link:
            response.headers["Link"] = link
        return response

    def _link(self, request: Request, page: int, last: int, per_page: int) -> str:
        def url(number: int) -> str:
            query = {**request.query, "per_page": str(per_page), "page": str(number)}
            return f"{self.origin}{request.path}?{urlencode(query)}"

        links = []
        if page < last:
            links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        if page > 1:
            links += [f'<{url(page - 1)}>; rel="prev"', f'<{url(1)}>; rel="first"']
        return ", ".join(links)

    def get_contents(self, request: Request) -> Response:
        repo = self._repo(request)
        ref = request.query.get("ref") or repo.default_branch
        files = repo.files.get(ref)
        if files is None:
            raise Failure(404, f"No commit found for the ref {ref}")
        path = request.params["path"].strip("/")
        if path in files:
            return Response(200, self.content_json(repo, path, files[path], ref))
        children = sorted({p[len(path) + 1 :].split("/")[0] for p in files if p.startswith(path + "/")})
        if not children:
            raise Failure(404, "Not Found")
        listing = []
        for child in children:
            child_path = f"{path}/{child}"
            if child_path in files:
                listing.append(self.content_json(repo, child_path, files[child_path], ref, listing=True))
            else:
                listing.append(self.entry_json(repo, child_path, "dir", ref))
        return Response(200, listing)

    def get_blob(self, request: Request) -> Response:
        repo = self._repo(request)
        for files in repo.files.values():
            for data in files.values():
                if blob_sha(data) == request.params["sha"]:
                    return Response(
                        200,
                        {
                            "sha": blob_sha(data),
                            "node_id": "B_" + blob_sha(data)[:12],
                            "size": len(data),
                            "url": f"{self.url}/repos/{repo.full_name}/git/blobs/{blob_sha(data)}",
                            "content": wrapped_base64(data),
                            "encoding": "base64",
                        },
                    )
        raise Failure(404, "Not Found")

    def role_of(self, repo: GitHubRepo, login: str) -> str | None:
        """The highest role a user holds on the repository, from every grant."""
        login = login.lower()
        grants = [repo.collaborators.get(login)] + [t.role for t in repo.teams if login in t.members]
        held = [role for role in grants if role is not None]
        return max(held, key=ROLES.index) if held else None

    def get_permission(self, request: Request) -> Response:
        repo = self._repo(request)
        login = request.params["username"]
        if login.lower() not in self.users:
            raise Failure(404, "Not Found")
        role = self.role_of(repo, login)
        if role is None:
            permission = role_name = "read" if repo.public else "none"
        else:
            permission, role_name = ROLE_PERMISSION[role], role
        user = self.user_json(login) | {
            "permissions": {
                name: role is not None and ROLES.index(role) >= ROLES.index(level)
                for name, level in (("pull", "read"), ("triage", "triage"), ("push", "write"))
            }
            | {"maintain": role in ("maintain", "admin"), "admin": role == "admin"},
            "role_name": role_name,
        }
        return Response(200, {"permission": permission, "role_name": role_name, "user": user})

    def get_authenticated_user(self, request: Request) -> Response:
        kind, _ = request.principal
        if kind != "user":
            raise Failure(403, "Resource not accessible by integration")
        return Response(200, self.user_json(self.bot_login))

    def get_app(self, request: Request) -> Response:
        self._app_only(request)
        return Response(
            200,
            {
                "id": int(self.app_id or 0),
                "slug": self.app_slug,
                "node_id": f"A_{self.app_id}",
                "owner": self.user_json("acme"),
                "name": "k8s-ee gateway",
                "description": "",
                "external_url": self.web,
                "html_url": f"{self.web}/apps/{self.app_slug}",
                "created_at": iso(datetime.now(UTC)),
                "updated_at": iso(datetime.now(UTC)),
                "permissions": {"contents": "read", "metadata": "read", "pull_requests": "write"},
                "events": list(self.app_events),
            },
        )

    def get_installation(self, request: Request) -> Response:
        self._app_only(request)
        repo = self.repos.get(f"{request.params['owner']}/{request.params['repo']}".lower())
        installation_id = self.installations.get(repo.owner.lower()) if repo else None
        if repo is None or installation_id is None:
            raise Failure(404, "Not Found")
        return Response(200, self.installation_json(repo.owner, installation_id))

    def create_access_token(self, request: Request) -> Response:
        self._app_only(request)
        wanted = int(request.params["installation_id"]) if request.params["installation_id"].isdigit() else -1
        if wanted not in self.installations.values():
            raise Failure(404, "Not Found")
        # Whole seconds, as GitHub writes them.
        expires_at = (datetime.now(UTC) + self.token_lifetime).replace(microsecond=0)
        minted = MintedToken("ghs_" + secrets.token_hex(18), wanted, expires_at)
        self.minted.append(minted)
        return Response(
            201,
            {
                "token": minted.token,
                "expires_at": iso(expires_at),
                "permissions": {"contents": "read", "metadata": "read", "pull_requests": "write"},
                "repository_selection": "all",
            },
        )

    # -- JSON shapes ---------------------------------------------------------------------------

    @property
    def web(self) -> str:
        return self.origin

    def user_json(self, login: str) -> dict[str, Any]:
        api = f"{self.url}/users/{login}"
        return {
            "login": login,
            "id": int(hashlib.sha1(login.encode()).hexdigest()[:6], 16),
            "node_id": "U_" + login,
            "avatar_url": f"{self.web}/avatars/{login}",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{self.web}/{login}",
            "followers_url": f"{api}/followers",
            "repos_url": f"{api}/repos",
            "type": "User",
            "site_admin": False,
        }

    def repo_json(self, repo: GitHubRepo) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        now = iso(datetime.now(UTC))
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": True,
            "owner": self.user_json(repo.owner),
            "html_url": f"{self.web}/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": api,
            "pulls_url": f"{api}/pulls{{/number}}",
            "contents_url": f"{api}/contents/{{+path}}",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "deployments_url": f"{api}/deployments",
            "created_at": now,
            "updated_at": now,
            "pushed_at": now,
            "git_url": f"git://{self.web.split('://')[1]}/{repo.full_name}.git",
            "clone_url": f"{self.web}/{repo.full_name}.git",
            "size": 1,
            "default_branch": repo.default_branch,
            "visibility": "private",
            "archived": False,
            "disabled": False,
            "open_issues_count": sum(1 for p in repo.pulls.values() if p.state == "open"),
            "permissions": {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
        }

    def pull_json(self, repo: GitHubRepo, pull: GitHubPull) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        html = f"{self.web}/{repo.full_name}/pull/{pull.number}"
        closed_at = iso(pull.updated_at) if pull.state == "closed" else None
        repo_json = self.repo_json(repo)

        def part(ref: str, sha: str, source: str | None = "") -> dict[str, Any]:
            if source == "":
                owner, source_json = repo.owner, repo_json
            elif source is None:
                owner, source_json = pull.user, None
            else:
                owner = source.split("/")[0]
                source_json = self.fork_json(repo, source)
            return {
                "label": f"{owner}:{ref}",
                "ref": ref,
                "sha": sha,
                "user": self.user_json(owner),
                "repo": source_json,
            }

        return {
            "url": f"{api}/pulls/{pull.number}",
            "id": repo.id * 1000 + pull.number,
            "node_id": f"PR_{repo.id}_{pull.number}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{api}/issues/{pull.number}",
            "commits_url": f"{api}/pulls/{pull.number}/commits",
            "review_comments_url": f"{api}/pulls/{pull.number}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{api}/issues/{pull.number}/comments",
            "statuses_url": f"{api}/statuses/{pull.head_sha}",
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": self.user_json(pull.user),
            "body": None,
            "labels": [],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": iso(pull.created_at),
            "updated_at": iso(pull.updated_at),
            "closed_at": closed_at,
            "merged_at": closed_at if pull.merged else None,
            "merge_commit_sha": fake_sha(f"merge {pull.head_sha}") if pull.merged else None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": part(pull.head_ref, pull.head_sha, pull.head_repo),
            "base": part(pull.base_ref, fake_sha(f"{repo.full_name}:{pull.base_ref}")),
            "_links": {
                "self": {"href": f"{api}/pulls/{pull.number}"},
                "html": {"href": html},
                "issue": {"href": f"{api}/issues/{pull.number}"},
                "comments": {"href": f"{api}/issues/{pull.number}/comments"},
                "statuses": {"href": f"{api}/statuses/{pull.head_sha}"},
            },
            "author_association": "OWNER",
            "auto_merge": None,
            "draft": pull.draft,
            "merged": pull.merged,
            "mergeable": None,
            "rebaseable": None,
            "mergeable_state": "unknown",
            "merged_by": self.user_json(pull.user) if pull.merged else None,
            # Issue comments, as GitHub counts them (review comments are `review_comments`).
            "comments": sum(1 for c in list(repo.comments.values()) if c.number == pull.number),
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": 1,
            "additions": 1,
            "deletions": 0,
            "changed_files": 1,
        }

    def fork_json(self, parent: GitHubRepo, full_name: str) -> dict[str, Any]:
        owner, name = full_name.split("/")
        fork = GitHubRepo(owner, name, int(hashlib.sha1(full_name.encode()).hexdigest()[:7], 16) + 10**9)
        return self.repo_json(fork) | {"fork": True, "private": False, "visibility": "public"}

    def entry_json(self, repo: GitHubRepo, path: str, kind: str, ref: str, sha: str = "") -> dict[str, Any]:
        api = f"{self.url}/repos/{repo.full_name}"
        sha = sha or fake_sha(f"tree {path}@{ref}")
        html = f"{self.web}/{repo.full_name}/{'blob' if kind == 'file' else 'tree'}/{ref}/{path}"
        return {
            "type": kind,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "size": 0,
            "url": f"{api}/contents/{path}?ref={ref}",
            "git_url": f"{api}/git/{'blobs' if kind == 'file' else 'trees'}/{sha}",
            "html_url": html,
            "download_url": f"{self.web}/raw/{repo.full_name}/{ref}/{path}" if kind == "file" else None,
            "_links": {
                "self": f"{api}/contents/{path}?ref={ref}",
                "git": f"{api}/git/blobs/{sha}",
                "html": html,
            },
        }

    def content_json(
        self, repo: GitHubRepo, path: str, data: bytes, ref: str, listing: bool = False
    ) -> dict[str, Any]:
        entry = self.entry_json(repo, path, "file", ref, blob_sha(data))
        entry["size"] = len(data)
        if listing:
            return entry
        if len(data) > self.contents_max_bytes:
            # Past 1 MB GitHub leaves the content out: clients read the blob instead.
            return {**entry, "content": "", "encoding": "none"}
        return {**entry, "content": wrapped_base64(data), "encoding": "base64"}

    def installation_json(self, account: str, installation_id: int) -> dict[str, Any]:
        return {
            "id": installation_id,
            "account": self.user_json(account),
            "repository_selection": "all",
            "access_tokens_url": f"{self.url}/app/installations/{installation_id}/access_tokens",
            "repositories_url": f"{self.url}/installation/repositories",
            "html_url": f"{self.web}/settings/installations/{installation_id}",
            "app_id": int(self.app_id or 0),
            "app_slug": "k8s-ee",
            "target_id": self.user_json(account)["id"],
            "target_type": "Organization",
            "permissions": {"contents": "read", "metadata": "read", "pull_requests": "write"},
            "events": ["pull_request", "issue_comment"],
            "created_at": iso(datetime.now(UTC)),
            "updated_at": iso(datetime.now(UTC)),
            "single_file_name": None,
            "suspended_by": None,
            "suspended_at": None,
        }


def blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def wrapped_base64(data: bytes) -> str:
    """Base64 in 60-character lines, as the contents API sends it."""
    encoded = base64.b64encode(data).decode()
    return "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))


def app_key_pair() -> tuple[str, str]:
    """A fresh RSA key for a test GitHub App: (private key PEM, public key PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private.decode(), public.decode()
