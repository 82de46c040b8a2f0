"""GitHub and GitHub Enterprise Server, through PyGithub.

Authenticates with a token, or as a GitHub App: the app's JWT finds the installation of each
repository (cached per repository), and one client per installation holds an installation token
that PyGithub's `AppInstallationAuth` renews shortly before it expires. Clients are lazy, so
reading a pull request is one request.

Reporting back: the environment's comment is an issue comment found again by its marker (every
page searched, oldest first); the native status is a Deployment for environment `pr-{number}` at
the head commit (one per commit, found again before one is created) with deployment statuses, and
a commit status `k8s-ee/preview`. Each credential's remaining budget is read from the
`X-RateLimit-*` headers PyGithub keeps per client.

Chat commands: a user's permission is the collaborator permission (`admin`, `write`, `read`,
`none`: the highest of every grant, teams and organisation included; `maintain` reads as write
and `triage` as read), a 404 meaning no access. The gateway is the token's user (`GET /user`),
or as an app `{slug}[bot]` (`GET /app`). An accepted command gets a `+1` reaction; a reply is an
issue comment (pull request conversations have no threads).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from github import Auth, Github, GithubException, GithubIntegration, GithubRetry
from github.Deployment import Deployment
from github.GithubException import RateLimitExceededExceedsMaxWait, RateLimitExceededException
from github.GithubObject import NotSet
from github.Repository import Repository
from pydantic import SecretStr

from providers.events import Provider
from providers.hosts.base import (
    Budget,
    ChangeState,
    HostError,
    HostUnavailable,
    Identity,
    ListedChange,
    NotFound,
    Permission,
)
from providers.hosts.gate import LocalWriteGate, WriteGate, fingerprint, pass_gate
from providers.hosts.http import (
    USER_AGENT,
    HttpPolicy,
    WaitCappedMixin,
    decode_text,
    owner_and_name,
    redact,
    retry_after,
    status_error,
    unreachable,
)
from providers.hosts.pacer import Pacer
from providers.hosts.reporting import (
    STATUS_CONTEXT,
    ReportMemo,
    StatusReport,
    check_marker,
    check_report,
    digest,
)
from providers.hosts.settings import HostSettings

T = TypeVar("T")
NAME = "GitHub"
# GitHub asks for at least a minute's wait after a secondary rate limit that names no wait.
SECONDARY_RATE_WAIT = 60
FULL_SHA_LENGTH = 40
# The deployment status of each environment state; no deployment for a skipped change.
_DEPLOYMENT_STATES = {
    "queued": "in_progress",
    "deploying": "in_progress",
    "deployed": "success",
    "preserved": "success",
    "failed": "failure",
    "hibernated": "inactive",
    "destroyed": "inactive",
}
# The commit status of each: a change without an environment (gone, or not wanted) is not a failure.
_COMMIT_STATES = {
    "queued": "pending",
    "deploying": "pending",
    "deployed": "success",
    "preserved": "success",
    "hibernated": "success",
    "failed": "failure",
    "destroyed": "success",
    "skipped": "success",
}


def _from_fork(pull: dict[str, Any]) -> bool:
    """A deleted fork leaves `head.repo` null; otherwise the head repository is not the base's."""
    head = (pull.get("head") or {}).get("repo")
    base = (pull.get("base") or {}).get("repo") or {}
    if not isinstance(head, dict):
        return True
    return head.get("id") != base.get("id")


def _comment_id(comment_id: str) -> int:
    if not comment_id.isdigit():
        raise HostError(f"{NAME}: {comment_id!r} is not a comment id")
    return int(comment_id)


class _Notes:
    """A report's memo as it is being written (see `ReportMemo`): deployment ids by commit, the
    digest last written to each deployment and commit, each deployment's last known state."""

    def __init__(self, memo: ReportMemo) -> None:
        self.ids = {k: v for k, v in memo.ids.items() if not k.startswith("state:")}
        self.states = {k.removeprefix("state:"): v for k, v in memo.ids.items() if k.startswith("state:")}
        self.written = dict(memo.written)
        self.complete = memo.complete

    def forget_others(self, sha: str) -> None:
        """Keep what the next reports need: the head commit's, and the deployments still live."""
        for key, deployment_id in list(self.ids.items()):
            if key != f"deployment:{sha}" and self.states.get(deployment_id) == "inactive":
                del self.ids[key]
                self.states.pop(deployment_id, None)
                self.written.pop(f"deployment:{deployment_id}", None)
        live = set(self.ids.values())
        for deployment_id in list(self.states):
            if deployment_id not in live:
                del self.states[deployment_id]
        for key in list(self.written):
            if key.startswith("commit:") and key != f"commit:{sha}":
                del self.written[key]

    def memo(self) -> ReportMemo:
        ids = {**self.ids, **{f"state:{k}": v for k, v in self.states.items()}}
        return ReportMemo(ids=ids, written=self.written, complete=self.complete)


class _Retry(WaitCappedMixin, GithubRetry):
    """PyGithub's retry (it knows GitHub's 403 rate-limit answers), bounded like every host's."""


def _retry(policy: HttpPolicy) -> _Retry:
    options = policy.retry_options()
    # GitHub signals rate limits with 403 (and 429); GithubRetry retries a 403 only when it is one.
    options["status_forcelist"] = [*options["status_forcelist"], 403]
    # GithubRetry would also repeat POSTs: a comment must not be posted twice, so only idempotent
    # calls are repeated (a failed token mint surfaces as HostUnavailable, and is tried next time).
    options["allowed_methods"] = GithubRetry.DEFAULT_ALLOWED_METHODS
    # GitHub asks for at least a minute's wait after a secondary rate limit.
    return _Retry(secondary_rate_wait=SECONDARY_RATE_WAIT, max_rate_limit_wait=policy.max_wait, **options)


class GitHubHost:
    provider: Provider = Provider.GITHUB
    name = NAME
    can_react = True

    def __init__(
        self,
        api_url: str,
        policy: HttpPolicy,
        *,
        token: SecretStr | None = None,
        app_id: str | None = None,
        private_key: SecretStr | None = None,
        seconds_between_requests: float | None = 0.25,
        seconds_between_writes: float | None = 1.0,
        write_burst: int = 3,
        write_gate: WriteGate | None = None,
        per_page: int = 100,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        options: dict[str, Any] = {
            "base_url": self.api_url,
            "timeout": policy.timeout_seconds,
            "user_agent": USER_AGENT,
            "retry": _retry(policy),
            "seconds_between_requests": seconds_between_requests or None,
            # Writes are paced by the write gate (below), per credential across clients and
            # processes, not by each PyGithub client on its own.
            "seconds_between_writes": None,
            # Comments and deployments are listed page by page: fewer, larger pages.
            "per_page": per_page,
            "lazy": True,
        }
        self._pacer = Pacer(Provider.GITHUB.value, NAME, policy)
        self._policy = policy
        self._write_interval = seconds_between_writes or 0.0
        self._write_burst = write_burst
        self._write_gate: WriteGate = write_gate or LocalWriteGate()
        self._lock = threading.Lock()
        self._github: Github | None = None
        self._integration: GithubIntegration | None = None
        self._identity: Identity | None = None
        self._installations: dict[str, int] = {}  # "owner/repo" -> installation id
        self._clients: dict[int, Github] = {}  # installation id -> client holding its token
        if token is not None:
            self._secrets = (token.get_secret_value(),)
            self._credentials = "K8S_EE_GITHUB_TOKEN"
            self._github = Github(auth=Auth.Token(token.get_secret_value()), **options)
        elif app_id and private_key is not None:
            self._secrets = (private_key.get_secret_value(),)
            self._credentials = "K8S_EE_GITHUB_APP_ID and K8S_EE_GITHUB_APP_PRIVATE_KEY"
            auth = Auth.AppAuth(app_id, private_key.get_secret_value())
            self._integration = GithubIntegration(auth=auth, **options)
        else:
            raise ValueError("GitHubHost needs a token, or an app id and private key")

    @classmethod
    def from_settings(
        cls, settings: HostSettings, policy: HttpPolicy, write_gate: WriteGate | None = None
    ) -> GitHubHost:
        if settings.github_app:
            credentials: dict[str, Any] = {
                "app_id": settings.github_app_id,
                "private_key": settings.github_app_private_key,
            }
        else:
            credentials = {"token": settings.github_token}
        return cls(
            settings.github_api_url,
            policy,
            seconds_between_requests=settings.github_seconds_between_requests,
            seconds_between_writes=settings.github_seconds_between_writes,
            write_burst=settings.github_write_burst,
            write_gate=write_gate,
            **credentials,
        )

    # -- the Host interface ------------------------------------------------------------------------

    def change(self, repository: str, number: int) -> ChangeState:
        what = f"pull request {repository}#{number}"

        def read(repo: Repository) -> ChangeState:
            pull = repo.get_pull(number)
            pull.complete()
            return ChangeState(
                state="merged" if pull.merged else "open" if pull.state == "open" else "closed",
                head_sha=pull.head.sha,
                head_ref=pull.head.ref,
                base_ref=pull.base.ref,
                draft=bool(pull.draft),
                updated_at=pull.updated_at,
                title=pull.title,
                url=pull.html_url,
                fork=_from_fork(pull.raw_data),
                # Issue comments, where ours is: review comments are counted apart.
                comments=pull.comments,
            )

        return self._call(repository, what, read)

    def open_changes(self, repository: str) -> list[ListedChange]:
        """Every open pull request, most recently updated first: one request per page of 100, the
        fields read from the listing only (none of them makes PyGithub fetch a pull request)."""

        def read(repo: Repository) -> list[ListedChange]:
            found = []
            for pull in repo.get_pulls(state="open", sort="updated", direction="desc"):
                head_repo, base_repo = pull.head.repo, pull.base.repo
                found.append(
                    ListedChange(
                        number=pull.number,
                        state="open",
                        head_sha=pull.head.sha,
                        head_ref=pull.head.ref,
                        base_ref=pull.base.ref,
                        draft=bool(pull.draft),
                        updated_at=pull.updated_at,
                        title=pull.title,
                        url=pull.html_url,
                        # A deleted fork leaves no head repository: still not this one.
                        fork=head_repo is None or base_repo is None or head_repo.id != base_repo.id,
                    )
                )
            return found

        return self._call(repository, f"the open pull requests of {repository}", read)

    def first_commit_at(self, repository: str, number: int) -> datetime | None:
        what = f"commits of pull request {repository}#{number}"

        def read(repo: Repository) -> datetime | None:
            # Every page (at most 250 commits): a rebased or cherry-picked commit keeps its
            # author date wherever it sits in the list.
            commits = repo.get_pull(number).get_commits()
            dates = [c.commit.author.date for c in commits if c.commit.author and c.commit.author.date]
            return min(dates) if dates else None

        return self._call(repository, what, read)

    def read_file(self, repository: str, path: str, ref: str) -> str | None:
        what = f"{path} at {ref} in {repository}"

        def read(repo: Repository) -> str | None:
            content = repo.get_contents(path.strip("/"), ref=ref)
            if isinstance(content, list) or content.type != "file":
                return None  # a directory (or a submodule) is not the file asked for
            if content.encoding == "base64":
                return decode_text(content.decoded_content, what)
            # Over 1 MB the contents API leaves `content` empty: read the blob instead.
            blob = repo.get_git_blob(content.sha)
            return decode_text(base64.b64decode(blob.content), what)

        try:
            return self._call(repository, what, read)
        except NotFound:
            return None

    def upsert_comment(
        self,
        repository: str,
        number: int,
        body: str,
        marker: str,
        known_id: str | None = None,
        *,
        search: bool = True,
    ) -> str:
        """Issue comments serve pull requests too. `known_id` is edited with one PATCH and no read
        first: it must be an id this method returned for this pull request (GitHub numbers comments
        per repository)."""
        check_marker(body, marker)

        def write(repo: Repository) -> str:
            issue = repo.get_issue(number)
            if known_id is not None and known_id.isdigit():
                try:
                    self._gate(repository)
                    issue.get_comment(int(known_id)).edit(body)
                    return known_id
                except GithubException as exc:
                    if exc.status not in (404, 410):
                        raise
            # Oldest first, every page: the first comment holding the marker is the one.
            for comment in issue.get_comments() if search else ():
                if marker in (comment.body or ""):
                    self._gate(repository)
                    comment.edit(body)
                    return str(comment.id)
            self._gate(repository)
            return str(issue.create_comment(body).id)

        return self._call(repository, f"the comment on pull request {repository}#{number}", write, write=True)

    def report_status(
        self, repository: str, number: int, report: StatusReport, memo: ReportMemo | None = None
    ) -> ReportMemo:
        """The deployment status, then the commit status, each skipped when the memo says it was
        written with this content already. Progress is kept in `notes` across the whole call's
        reruns (after a rate-limit answer), so nothing it made is made again."""
        check_report(report, number)
        notes = _Notes(memo or ReportMemo())

        def write(repo: Repository) -> None:
            sha = self._full_sha(repo, report.head_sha)
            state = _DEPLOYMENT_STATES.get(report.state)
            if state == "inactive":
                self._deactivate(repo, report, notes)
            elif state is not None:
                self._deployment_status(repo, report, sha, state, notes)
            link = report.link or NotSet
            content = digest(_COMMIT_STATES[report.state], report.description, report.link)
            if notes.written.get(f"commit:{sha}") != content:
                self._gate(repository)
                repo.get_commit(sha).create_status(
                    _COMMIT_STATES[report.state],
                    target_url=link,
                    description=report.description,
                    context=STATUS_CONTEXT,
                )
                notes.written[f"commit:{sha}"] = content
            notes.forget_others(sha)

        self._call(repository, f"the status of pull request {repository}#{number}", write, write=True)
        return notes.memo()

    def permission(self, repository: str, user: str, user_id: str | None = None) -> Permission:
        what = f"the permission of {user} on {repository}"

        def read(repo: Repository) -> Permission:
            try:
                _, data = repo.requester.requestJsonAndCheck(
                    "GET", f"{repo.url}/collaborators/{quote(user, safe='')}/permission"
                )
            except GithubException as exc:
                if exc.status == 404:
                    return Permission(level="none", reported="no access (not a collaborator)")
                raise
            permission = str(data.get("permission") or "none")
            role = data.get("role_name")
            level = permission if permission in ("admin", "write", "read") else "none"
            reported = permission + (f" (role {role})" if role and role != permission else "")
            return Permission(level=level, reported=reported)

        return self._call(repository, what, read)

    def identity(self) -> Identity:
        with self._lock:
            if self._identity is not None:
                return self._identity

        def read() -> Identity:
            if self._github is not None:
                login = self._github.get_user().login
                return Identity(names=frozenset({login}))
            assert self._integration is not None
            # An app's comments are written by its bot user.
            slug = self._integration.get_app().slug
            return Identity(names=frozenset({f"{slug}[bot]"}))

        found = self._pacer.run(
            "token" if self._github is not None else "app",
            lambda: self._guarded(read, "the gateway's own account", "reading"),
        )
        with self._lock:
            self._identity = found
        return found

    def react(self, repository: str, number: int, comment_id: str) -> None:
        def write(repo: Repository) -> None:
            self._gate(repository)
            repo.get_issue(number).get_comment(_comment_id(comment_id)).create_reaction("+1")

        self._call(
            repository, f"a reaction on comment {comment_id} of {repository}#{number}", write, write=True
        )

    def reply(
        self, repository: str, number: int, comment_id: str, body: str, thread_id: str | None = None
    ) -> str:
        def write(repo: Repository) -> str:
            self._gate(repository)
            return str(repo.get_issue(number).create_comment(body).id)

        return self._call(repository, f"a reply on pull request {repository}#{number}", write, write=True)

    def rate_limits(self) -> dict[str, Budget]:
        return self._pacer.budgets()

    def close(self) -> None:
        with self._lock:
            clients = [*self._clients.values(), *([self._github] if self._github else [])]
            self._clients.clear()
        for client in clients:
            client.close()
        if self._integration is not None:
            self._integration.close()

    # -- deployments -------------------------------------------------------------------------------

    def _full_sha(self, repo: Repository, sha: str) -> str:
        # Deployments are found again by the full SHA GitHub records for them.
        if len(sha) >= FULL_SHA_LENGTH:
            return sha
        return str(repo.get_commit(sha).complete().sha)

    def _deployment_status(
        self, repo: Repository, report: StatusReport, sha: str, state: str, notes: _Notes
    ) -> None:
        environment_url = report.preview_url if state == "success" and report.preview_url else None
        content = digest(state, report.description, report.target_url, environment_url)
        known = notes.ids.get(f"deployment:{sha}")
        if known is not None and notes.written.get(f"deployment:{known}") == content:
            return
        for attempt in (1, 2):
            deployment = self._deployment(repo, report, sha, notes)
            self._gate(repo.full_name)
            try:
                deployment.create_status(
                    state,
                    target_url=report.target_url or NotSet,
                    description=report.description,
                    environment_url=environment_url or NotSet,
                )
            except GithubException as exc:
                # A remembered deployment that was deleted since: find or make it afresh, once.
                if exc.status != 404 or attempt == 2:
                    raise
                notes.ids.pop(f"deployment:{sha}", None)
                notes.complete = False
                continue
            break
        notes.written[f"deployment:{deployment.id}"] = content
        notes.states[str(deployment.id)] = state
        if state == "success":
            # GitHub's auto_inactive: the environment's other deployments that succeeded are
            # inactive now.
            for other, was in notes.states.items():
                if other != str(deployment.id) and was == "success":
                    notes.states[other] = "inactive"

    def _deployment(self, repo: Repository, report: StatusReport, sha: str, notes: _Notes) -> Deployment:
        """The commit's deployment to the environment: the remembered one, the one made before, or a
        new one (without a search first when the memo is complete)."""
        known = notes.ids.get(f"deployment:{sha}")
        if known is not None and known.isdigit():
            return repo.get_deployment(int(known))
        if not notes.complete:
            self._learn(repo, report, notes)
            known = notes.ids.get(f"deployment:{sha}")
            if known is not None:
                return repo.get_deployment(int(known))
        self._gate(repo.full_name)
        found = repo.create_deployment(
            ref=sha,
            environment=report.environment,
            description=f"Preview environment {report.environment}",
            # Not GitHub's default: merging the default branch in, and waiting for every check.
            auto_merge=False,
            required_contexts=[],
            # Each success marks the environment's earlier deployments inactive (GitHub's
            # auto_inactive applies to non-transient, non-production environments).
            transient_environment=False,
            production_environment=False,
        )
        notes.ids[f"deployment:{sha}"] = str(found.id)
        notes.states.setdefault(str(found.id), "unknown")
        return found

    def _learn(self, repo: Repository, report: StatusReport, notes: _Notes) -> None:
        """List the environment's deployments once (one request per 100): their ids by commit,
        their states not known yet. The memo is complete then."""
        for deployment in repo.get_deployments(environment=report.environment):
            # Newest first: a commit's newest deployment is the one its reports use.
            if f"deployment:{deployment.sha}" not in notes.ids:
                notes.ids[f"deployment:{deployment.sha}"] = str(deployment.id)
                notes.states.setdefault(str(deployment.id), "unknown")
        notes.complete = True

    def _deactivate(self, repo: Repository, report: StatusReport, notes: _Notes) -> None:
        """Mark every deployment of the environment that is not inactive yet as inactive: one that
        succeeded before a later push failed is still shown as live otherwise. With a complete
        memo, those it knows to be live; else every one the host lists."""
        if not notes.complete:
            self._learn(repo, report, notes)
        for deployment_id, state in list(notes.states.items()):
            if state == "inactive":
                continue
            deployment = repo.get_deployment(int(deployment_id))
            try:
                if state == "unknown":
                    # Listed, never written by this memo: it may be inactive already.
                    latest = next(iter(deployment.get_statuses()), None)
                    if latest is not None and latest.state == "inactive":
                        notes.states[deployment_id] = "inactive"
                        continue
                self._gate(repo.full_name)
                deployment.create_status("inactive", description=report.description)
            except GithubException as exc:
                if exc.status != 404:  # deleted meanwhile: nothing left to deactivate
                    raise
            notes.states[deployment_id] = "inactive"

    # -- clients -----------------------------------------------------------------------------------

    def _call(self, repository: str, what: str, call: Callable[[Repository], T], *, write: bool = False) -> T:
        owner_and_name(repository)
        action = "writing" if write else "reading"
        key = self._guarded(lambda: self._key(repository), what, action)
        return self._pacer.run(
            key, lambda: self._guarded(lambda: self._attempt(repository, call), what, action), write=write
        )

    def _attempt(self, repository: str, call: Callable[[Repository], T]) -> T:
        try:
            try:
                return call(self._client(repository).get_repo(repository))
            except GithubException as exc:
                if exc.status != 401 or self._integration is None:
                    raise
                # The app was uninstalled or its token revoked: look the installation up afresh,
                # once.
                self._forget(repository)
                return call(self._client(repository).get_repo(repository))
        finally:
            self._record(repository)

    def _guarded(self, call: Callable[[], T], what: str, action: str) -> T:
        try:
            return call()
        except GithubException as exc:
            raise self._error(exc, what, action) from exc
        except requests.RequestException as exc:
            raise unreachable(NAME, self.api_url, exc) from exc

    def _gate(self, repository: str) -> None:
        """Wait for a write slot of the credential this repository's calls use."""
        credential = fingerprint(Provider.GITHUB.value, self._secrets[0], self._key(repository))
        pass_gate(
            self._write_gate,
            credential,
            self._write_interval,
            self._write_burst,
            self._policy.max_wait,
            NAME,
        )

    def _key(self, repository: str) -> str:
        """Whose budget a call spends: the token's, or the app installation's (never a secret)."""
        if self._github is not None:
            return "token"
        self._client(repository)
        with self._lock:
            return str(self._installations.get(repository, "app"))

    def _record(self, repository: str) -> None:
        with self._lock:
            installation_id = self._installations.get(repository)
            client = self._github or (
                self._clients.get(installation_id) if installation_id is not None else None
            )
        if client is None:
            return
        remaining, limit = client.requester.rate_limiting
        if remaining >= 0:
            reset = client.requester.rate_limiting_resettime
            key = "token" if self._github is not None else str(installation_id)
            self._pacer.record(key, remaining, reset or None, limit)

    def _client(self, repository: str) -> Github:
        if self._github is not None:
            return self._github
        assert self._integration is not None
        with self._lock:
            installation_id = self._installations.get(repository)
        if installation_id is None:
            owner, name = owner_and_name(repository)
            try:
                installation_id = self._integration.get_repo_installation(owner, name).id
            except GithubException as exc:
                if exc.status == 404:
                    raise NotFound(
                        f"{NAME}: the app is not installed on {repository}, or it does not exist"
                    ) from exc
                raise
        with self._lock:
            self._installations[repository] = installation_id
            client = self._clients.get(installation_id)
            if client is None:
                client = self._integration.get_github_for_installation(installation_id)
                self._clients[installation_id] = client
        try:
            # Mint (or reuse) the installation token now, so that a failure to mint one is not
            # taken for the answer to the call itself (a 404 here means the installation is gone).
            auth = client.requester.auth
            if auth is not None:
                auth.token  # noqa: B018
        except GithubException as exc:
            self._forget(repository)
            if exc.status == 404:
                raise NotFound(f"{NAME}: the app is no longer installed on {repository}") from exc
            raise
        return client

    def _forget(self, repository: str) -> None:
        with self._lock:
            installation_id = self._installations.pop(repository, None)
            if installation_id is not None:
                self._clients.pop(installation_id, None)

    def _error(self, exc: GithubException, what: str, action: str = "reading") -> HostError:
        data = exc.data if isinstance(exc.data, dict) else {}
        detail = redact(str(data.get("message") or exc.message or ""), self._secrets)
        headers = {str(k): str(v) for k, v in (exc.headers or {}).items()}
        if isinstance(exc, RateLimitExceededException):
            wait = exc.wait if isinstance(exc, RateLimitExceededExceedsMaxWait) else retry_after(headers)
            if wait is None:
                # No Retry-After and budget left: a secondary rate limit.
                wait = SECONDARY_RATE_WAIT
            return HostUnavailable(
                f"{NAME} rate limit reached {action} {what} ({exc.status} {detail})",
                status=exc.status,
                retry_after=wait,
                rate_limited=True,
            )
        return status_error(
            NAME, exc.status, detail, what, headers=headers, credentials=self._credentials, action=action
        )
