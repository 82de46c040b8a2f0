"""One pull request on each code host, end to end: the fake host's state, the webhooks the host would
send about it (built from the recorded fixtures), and what the gateway answered on it.

A `Scenario` keeps the fake host and the webhooks in step: `comment` writes the comment into the
fake (so that a reaction or reply has something to land on) and returns the webhook that tells
the gateway about it; `push` moves the change's head in the fake and returns the host's webhook
for it. `answers` reads back, from the fake, what the gateway wrote in answer to a comment.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.chat import ANSWER_MARKER
from providers.events import Provider
from providers.hosts.base import Host
from providers.hosts.build import build_hosts
from providers.hosts.reporting import MARKER
from providers.hosts.settings import load_host_settings
from tests.fakes.fakehosts import (
    FakeBitbucketCloud,
    FakeBitbucketServer,
    FakeGitHub,
    FakeGitLab,
    FakeHost,
    fake_sha,
)
from tests.fakes.fakehosts.bitbucket_cloud import CloudAccount
from tests.support.senders import FIXTURES, auth_headers

TOKEN = "scenario-token"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def sha(n: int) -> str:
    """A full commit SHA; distinct in its first 12 characters too, as the comment shows them."""
    return fake_sha(f"commit {n}")


@dataclass(frozen=True)
class Delivery:
    endpoint: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Answer:
    kind: str  # "reaction" or "reply"
    text: str = ""


def _fixture(provider: str, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    folder = FIXTURES / provider
    body = json.loads((folder / f"{name}.json").read_text())
    headers = json.loads((folder / f"{name}.headers.json").read_text())
    return body, headers


@dataclass
class Scenario:
    """Subclasses: one per host."""

    provider: Provider
    endpoint: str
    repository: str
    fake: FakeHost
    number: int = 7
    fork: bool = False
    clock: int = 0
    heads: dict[int, str] = field(default_factory=dict)

    # -- the host's client, for the worker --

    def hosts(self) -> dict[Provider, Host]:
        raise NotImplementedError

    # -- the host's state --

    def open_change(self, head: str, *, fork: bool = False) -> None:
        raise NotImplementedError

    def add_config(self, text: str, ref: str) -> None:
        raise NotImplementedError

    def add_user(self, name: str, *, write: bool) -> None:
        raise NotImplementedError

    @property
    def bot(self) -> str:
        """The gateway's own account, as a comment author."""
        raise NotImplementedError

    # -- webhooks --

    def opened(self) -> Delivery:
        raise NotImplementedError

    def push(self, head: str) -> Delivery:
        raise NotImplementedError

    def comment(self, author: str, body: str) -> tuple[str, Delivery]:
        raise NotImplementedError

    # -- what the gateway wrote --

    def answers(self, comment_id: str) -> list[Answer]:
        raise NotImplementedError

    def texts(self) -> list[str]:
        """Every comment on the change, oldest first."""
        raise NotImplementedError

    def environment_comment(self) -> str:
        """The environment's own comment (the one with the marker)."""
        return next(text for text in self.texts() if MARKER in text)

    def _tick(self) -> datetime:
        self.clock += 1
        return T0 + timedelta(minutes=self.clock)

    def _delivery(self, body: dict[str, Any], headers: dict[str, str]) -> Delivery:
        raw = json.dumps(body).encode()
        return Delivery(
            self.endpoint, raw, {**headers, **auth_headers(self.provider.value, raw, str(uuid.uuid4()))}
        )


# == GitHub =======================================================================================


class GitHubScenario(Scenario):
    fake: FakeGitHub

    def __init__(self) -> None:
        super().__init__(Provider.GITHUB, "/webhooks/github", "northwind-labs/storefront", FakeGitHub())

    def start(self) -> None:
        self.fake.start()
        self.fake.add_token(TOKEN)
        self.fake.add_repo(self.repository)

    def hosts(self) -> dict[Provider, Host]:
        return build_hosts(
            load_host_settings(
                github_api_url=self.fake.url,
                github_token=TOKEN,
                github_seconds_between_requests=0,
                github_seconds_between_writes=0,
                host_retry_backoff=0,
            )
        )

    def open_change(self, head: str, *, fork: bool = False) -> None:
        self.fork = fork
        self.fake.add_pull(
            self.repository,
            self.number,
            head_sha=head,
            head_ref="feature",
            head_repo="mallory/storefront" if fork else "",
        )

    def add_config(self, text: str, ref: str) -> None:
        self.fake.add_file(self.repository, "k8s-ee.yaml", text, ref=ref)

    def add_user(self, name: str, *, write: bool) -> None:
        self.fake.add_collaborator(self.repository, name, "write" if write else "read")

    @property
    def bot(self) -> str:
        return self.fake.bot_login

    def close(self) -> Delivery:
        pull = self.fake.repos[self.repository.lower()].pulls[self.number]
        pull.state = "closed"
        return self._pull_event("closed")

    def _pull_event(self, action: str) -> Delivery:
        name = {"opened": "pull_request.opened", "closed": "pull_request.closed.unmerged"}.get(
            action, "pull_request.synchronize"
        )
        body, headers = _fixture("github", name)
        pull = self.fake.repos[self.repository.lower()].pulls[self.number]
        body["action"] = action
        body["number"] = self.number
        pr = body["pull_request"]
        pr["number"] = self.number
        pr["head"]["sha"], pr["head"]["ref"] = pull.head_sha, pull.head_ref
        pr["draft"] = pull.draft
        pr["updated_at"] = self._tick().isoformat().replace("+00:00", "Z")
        pr["state"] = pull.state
        if action == "closed":
            pr["closed_at"], pr["merged"] = pr["updated_at"], False
        if self.fork:
            pr["head"]["repo"] = {**pr["head"]["repo"], "id": 1, "full_name": "mallory/storefront"}
        return self._delivery(body, headers)

    def opened(self) -> Delivery:
        return self._pull_event("opened")

    def push(self, head: str) -> Delivery:
        self.fake.repos[self.repository.lower()].pulls[self.number].head_sha = head
        return self._pull_event("synchronize")

    def comment(self, author: str, body: str) -> tuple[str, Delivery]:
        stored = self.fake.add_comment(self.repository, self.number, body, user=author)
        payload, headers = _fixture("github", "issue_comment.created")
        payload["issue"]["number"] = self.number
        payload["comment"] = {**payload["comment"], "id": stored.id, "body": body}
        payload["comment"]["user"] = {**payload["comment"]["user"], "login": author}
        payload["comment"]["created_at"] = self._tick().isoformat().replace("+00:00", "Z")
        payload["sender"] = {**payload["sender"], "login": author}
        return str(stored.id), self._delivery(payload, headers)

    def texts(self) -> list[str]:
        return [c.body for c in self.fake.comments(self.repository, self.number)]

    def answers(self, comment_id: str) -> list[Answer]:
        found = [
            Answer("reaction")
            for user, content in self.fake.reactions(self.repository, int(comment_id))
            if content == "+1"
        ]
        for comment in self.fake.comments(self.repository, self.number):
            if comment.id > int(comment_id) and ANSWER_MARKER in comment.body:
                found.append(Answer("reply", comment.body))
        return found


# == GitLab =======================================================================================


class GitLabScenario(Scenario):
    fake: FakeGitLab

    def __init__(self) -> None:
        super().__init__(Provider.GITLAB, "/webhooks/gitlab", "acme/web", FakeGitLab())
        self.user_ids: dict[str, int] = {}

    def start(self) -> None:
        self.fake.start()
        self.fake.add_token(TOKEN)
        self.project = self.fake.add_project(self.repository)

    def hosts(self) -> dict[Provider, Host]:
        return build_hosts(
            load_host_settings(gitlab_url=self.fake.origin, gitlab_api_token=TOKEN, host_retry_backoff=0)
        )

    def open_change(self, head: str, *, fork: bool = False) -> None:
        self.fork = fork
        self.fake.add_merge_request(
            self.repository,
            self.number,
            sha=head,
            source_branch="feature",
            source_project_id=999 if fork else None,
        )

    def add_config(self, text: str, ref: str) -> None:
        self.fake.add_file(self.repository, "k8s-ee.yaml", text, ref=ref)

    def add_user(self, name: str, *, write: bool) -> None:
        # A writer through the parent group (inherited), a reader as a direct Reporter.
        if write:
            self.user_ids[name] = self.fake.add_group_member("acme", name, 30)
        else:
            self.user_ids[name] = self.fake.add_member(self.repository, name, 20)

    @property
    def bot(self) -> str:
        return self.fake.bot_username

    def _mr_fields(self, attributes: dict[str, Any]) -> None:
        mr = self.project.merge_requests[self.number]
        attributes["iid"] = self.number
        attributes["source_branch"] = mr.source_branch
        attributes["source_project_id"] = 999 if self.fork else self.project.id
        attributes["target_project_id"] = self.project.id
        attributes["last_commit"] = {**attributes.get("last_commit", {}), "id": mr.sha}

    def _mr_event(self, name: str) -> Delivery:
        body, headers = _fixture("gitlab", name)
        self._mr_fields(body["object_attributes"])
        body["object_attributes"]["updated_at"] = self._tick().strftime("%Y-%m-%d %H:%M:%S UTC")
        body["project"]["path_with_namespace"] = self.repository
        return self._delivery(body, headers)

    def opened(self) -> Delivery:
        return self._mr_event("merge_request.open")

    def push(self, head: str) -> Delivery:
        self.project.merge_requests[self.number].sha = head
        return self._mr_event("merge_request.update.push")

    def comment(self, author: str, body: str) -> tuple[str, Delivery]:
        note = self.fake.add_note(self.repository, self.number, body, author=author)
        payload, headers = _fixture("gitlab", "note.merge_request")
        user_id = (
            self.user_ids.get(author) or self.fake.users.get(author.lower()) or self.fake.add_user(author)
        )
        payload["user"] = {**payload["user"], "id": user_id, "username": author}
        attributes = payload["object_attributes"]
        attributes |= {
            "id": note.id,
            "note": body,
            "author_id": user_id,
            "discussion_id": note.discussion_id,
            "created_at": self._tick().strftime("%Y-%m-%d %H:%M:%S UTC"),
        }
        self._mr_fields(payload["merge_request"])
        payload["project"]["path_with_namespace"] = self.repository
        return str(note.id), self._delivery(payload, headers)

    def texts(self) -> list[str]:
        return [n.body for n in self.fake.notes(self.repository, self.number)]

    def answers(self, comment_id: str) -> list[Answer]:
        note = self.project.notes[int(comment_id)]
        found = [
            Answer("reaction") for _, name in self.fake.awards(self.repository, note.id) if name == "thumbsup"
        ]
        for other in self.fake.notes(self.repository, self.number):
            if other.id != note.id and other.discussion_id == note.discussion_id:
                found.append(Answer("reply", other.body))
        return found


# == Bitbucket Cloud ==============================================================================


class CloudScenario(Scenario):
    fake: FakeBitbucketCloud

    def __init__(self) -> None:
        super().__init__(
            Provider.BITBUCKET_CLOUD, "/webhooks/bitbucket", "northwind/storefront", FakeBitbucketCloud()
        )
        self.accounts: dict[str, CloudAccount] = {}

    def start(self) -> None:
        self.fake.start()
        self.fake.add_bearer(TOKEN)
        self.fake.add_repository(self.repository)

    def hosts(self) -> dict[Provider, Host]:
        return build_hosts(
            load_host_settings(
                bitbucket_cloud_url=self.fake.origin, bitbucket_cloud_token=TOKEN, host_retry_backoff=0
            )
        )

    def open_change(self, head: str, *, fork: bool = False) -> None:
        self.fork = fork
        self.fake.add_pull_request(
            self.repository,
            self.number,
            source_commit=head,
            source_branch="feature",
            source_repository="mallory/storefront" if fork else "",
        )

    def add_config(self, text: str, ref: str) -> None:
        self.fake.add_file(self.repository, "k8s-ee.yaml", text, ref=ref)

    def add_user(self, name: str, *, write: bool) -> None:
        account = self.fake.add_account(name)
        self.accounts[name] = account
        if write:
            # Write through a group, as workspaces usually grant it.
            self.fake.grant_group(self.repository, "developers", "write", [account])
        else:
            self.fake.grant(self.repository, account, "read")

    @property
    def bot(self) -> str:
        return self.fake.token_account.nickname

    def _pull(self, pr: dict[str, Any]) -> None:
        pull = self.fake.repositories[self.repository.lower()].pull_requests[self.number]
        pr["id"] = self.number
        pr["source"]["commit"]["hash"] = pull.source_commit[:12]
        pr["source"]["branch"]["name"] = pull.source_branch
        if self.fork:
            pr["source"]["repository"] = {**pr["source"]["repository"], "full_name": "mallory/storefront"}
        pr["updated_on"] = self._tick().isoformat()

    def _pull_event(self, name: str) -> Delivery:
        body, headers = _fixture("bitbucket-cloud", name)
        self._pull(body["pullrequest"])
        return self._delivery(body, headers)

    def opened(self) -> Delivery:
        return self._pull_event("pullrequest.created")

    def push(self, head: str) -> Delivery:
        repository = self.fake.repositories[self.repository.lower()]
        repository.pull_requests[self.number].source_commit = head
        repository.commits.add(head)
        return self._pull_event("pullrequest.updated")

    def comment(self, author: str, body: str) -> tuple[str, Delivery]:
        stored = self.fake.add_comment(self.repository, self.number, body, user=author)
        account = self.accounts.get(author) or self.fake.add_account(author)
        payload, headers = _fixture("bitbucket-cloud", "pullrequest.comment_created")
        self._pull(payload["pullrequest"])
        user = {
            "type": "user",
            "uuid": account.uuid,
            "account_id": account.account_id,
            "nickname": author,
            "display_name": author,
        }
        payload["actor"] = user
        payload["comment"] = {
            **payload["comment"],
            "id": stored.id,
            "user": user,
            "content": {"raw": body, "type": "rendered"},
        }
        payload["comment"]["created_on"] = self._tick().isoformat()
        return str(stored.id), self._delivery(payload, headers)

    def texts(self) -> list[str]:
        return [c.raw for c in self.fake.comments(self.repository, self.number)]

    def answers(self, comment_id: str) -> list[Answer]:
        return [
            Answer("reply", c.raw)
            for c in self.fake.comments(self.repository, self.number)
            if c.parent == int(comment_id)
        ]


# == Bitbucket Data Center ========================================================================


class ServerScenario(Scenario):
    fake: FakeBitbucketServer

    def __init__(self) -> None:
        super().__init__(
            Provider.BITBUCKET_SERVER, "/webhooks/bitbucket", "SHOP/checkout-service", FakeBitbucketServer()
        )

    def start(self) -> None:
        self.fake.start()
        self.fake.add_token(TOKEN)
        self.fake.add_repository(self.repository)

    def hosts(self) -> dict[Provider, Host]:
        return build_hosts(
            load_host_settings(
                bitbucket_server_url=self.fake.origin, bitbucket_server_token=TOKEN, host_retry_backoff=0
            )
        )

    def open_change(self, head: str, *, fork: bool = False) -> None:
        self.fork = fork
        self.fake.add_pull_request(
            self.repository,
            self.number,
            latest_commit=head,
            from_branch="feature",
            to_branch="main",
            from_repository="~MALLORY/checkout-service" if fork else "",
        )

    def add_config(self, text: str, ref: str) -> None:
        self.fake.add_file(self.repository, "k8s-ee.yaml", text, ref=ref)

    def add_user(self, name: str, *, write: bool) -> None:
        # Write through the project, read on the repository itself.
        if write:
            self.fake.grant_project("SHOP", name, "PROJECT_WRITE")
        else:
            self.fake.grant(self.repository, name, "REPO_READ")

    @property
    def bot(self) -> str:
        return self.fake.bot_name

    def _pull(self, pr: dict[str, Any]) -> None:
        pull = self.fake.repositories["SHOP", "checkout-service"].pull_requests[self.number]
        pr["id"] = self.number
        pr["fromRef"]["latestCommit"] = pull.latest_commit
        pr["fromRef"]["displayId"] = pull.from_branch
        pr["toRef"]["displayId"] = pull.to_branch
        if self.fork:
            pr["fromRef"]["repository"] = {
                **pr["fromRef"]["repository"],
                "id": 4242,
                "slug": "checkout-service",
            }
        pr["updatedDate"] = int(self._tick().timestamp() * 1000)

    def _pull_event(self, name: str) -> Delivery:
        body, headers = _fixture("bitbucket-server", name)
        self._pull(body["pullRequest"])
        body["date"] = self._tick().strftime("%Y-%m-%dT%H:%M:%S+0000")
        return self._delivery(body, headers)

    def opened(self) -> Delivery:
        return self._pull_event("pr.opened")

    def push(self, head: str) -> Delivery:
        self.fake.repositories["SHOP", "checkout-service"].pull_requests[self.number].latest_commit = head
        return self._pull_event("pr.from_ref_updated")

    def comment(self, author: str, body: str) -> tuple[str, Delivery]:
        stored = self.fake.add_comment(self.repository, self.number, body, author=author)
        payload, headers = _fixture("bitbucket-server", "pr.comment.added")
        self._pull(payload["pullRequest"])
        user = {**payload["actor"], "name": author, "slug": author}
        payload["actor"] = user
        payload["comment"] = {**payload["comment"], "id": stored.id, "text": body, "author": user}
        payload["date"] = self._tick().strftime("%Y-%m-%dT%H:%M:%S+0000")
        return str(stored.id), self._delivery(payload, headers)

    def texts(self) -> list[str]:
        return [c.text for c in self.fake.comments(self.repository, self.number)]

    def answers(self, comment_id: str) -> list[Answer]:
        found = [
            Answer("reaction")
            for _, emoticon in self.fake.reactions(self.repository, int(comment_id))
            if emoticon == "thumbsup"
        ]
        found += [
            Answer("reply", c.text)
            for c in self.fake.comments(self.repository, self.number)
            if c.parent == int(comment_id)
        ]
        return found


SCENARIOS = {
    "github": GitHubScenario,
    "gitlab": GitLabScenario,
    "bitbucket-cloud": CloudScenario,
    "bitbucket-server": ServerScenario,
}
