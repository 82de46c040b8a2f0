"""What each host client says a user may do, who the gateway is, and how it answers a comment:
through the real SDKs, against the fake hosts (which compute access as the hosts do)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from providers.events import Provider
from providers.hosts.base import Host, HostError, HostUnavailable
from providers.hosts.build import build_hosts
from providers.hosts.settings import load_host_settings
from tests.fakes.fakehosts import FakeBitbucketCloud, FakeBitbucketServer, FakeGitHub, FakeGitLab
from tests.fakes.fakehosts.github import app_key_pair

TOKEN = "token-0123456789"


def build(provider: Provider, **values: Any) -> Host:
    hosts = build_hosts(load_host_settings(host_retry_backoff=0, **values))
    return hosts[provider]


# == GitHub =======================================================================================

GH_REPO = "octo/app"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.add_token(TOKEN)
        fake.add_repo(GH_REPO)
        yield fake


def github_host(fake: FakeGitHub, **overrides: Any) -> Host:
    values: dict[str, Any] = {
        "github_api_url": fake.url,
        "github_token": TOKEN,
        "github_seconds_between_requests": 0,
        "github_seconds_between_writes": 0,
        **overrides,
    }
    return build(Provider.GITHUB, **values)


def test_github_permission_is_the_highest_grant_of_every_kind(github: FakeGitHub) -> None:
    github.add_collaborator(GH_REPO, "writer", "write")
    github.add_collaborator(GH_REPO, "keeper", "maintain")
    github.add_collaborator(GH_REPO, "triager", "triage")
    github.add_collaborator(GH_REPO, "teamed", "read")
    github.add_team(GH_REPO, "platform", "admin", {"teamed"})
    github.add_user("outsider")
    host = github_host(github)
    seen = {
        user: host.permission(GH_REPO, user)
        for user in ("writer", "keeper", "triager", "teamed", "outsider", "ghost")
    }
    assert {user: p.level for user, p in seen.items()} == {
        "writer": "write",
        "keeper": "write",
        "triager": "read",
        "teamed": "admin",
        "outsider": "none",
        "ghost": "none",
    }
    assert [user for user, p in seen.items() if p.can_write] == ["writer", "keeper", "teamed"]
    assert seen["keeper"].reported == "write (role maintain)"
    assert seen["triager"].reported == "read (role triage)"
    assert "not a collaborator" in seen["ghost"].reported
    assert ("GET", "/repos/octo/app/collaborators/writer/permission") in github.calls()


def test_github_public_repository_gives_everyone_read(github: FakeGitHub) -> None:
    github.repos[GH_REPO].public = True
    github.add_user("visitor")
    permission = github_host(github).permission(GH_REPO, "visitor")
    assert permission.level == "read" and not permission.can_write


def test_github_identity_of_a_token_and_of_an_app(github: FakeGitHub) -> None:
    assert github_host(github).identity().is_self("K8S-EE-BOT")
    private, public = app_key_pair()
    github.enable_app("4242", public)
    github.install_app("octo", 77)
    app = github_host(github, github_token=None, github_app_id="4242", github_app_private_key=private)
    identity = app.identity()
    assert identity.is_self("k8s-ee[bot]") and not identity.is_self("k8s-ee-bot")
    app.identity()
    assert github.calls().count(("GET", "/app")) == 1  # read once


def test_github_reaction_and_reply(github: FakeGitHub) -> None:
    github.add_pull(GH_REPO, 3)
    comment = github.add_comment(GH_REPO, 3, "/deploy-preview", user="writer")
    host = github_host(github)
    host.react(GH_REPO, 3, str(comment.id))
    host.react(GH_REPO, 3, str(comment.id))  # a retried answer: GitHub keeps one
    assert github.reactions(GH_REPO, comment.id) == [("k8s-ee-bot", "+1")]
    reply = host.reply(GH_REPO, 3, str(comment.id), "answered")
    assert [c.body for c in github.comments(GH_REPO, 3)][-1] == "answered"
    assert reply == str(github.comments(GH_REPO, 3)[-1].id)


def test_github_change_from_a_fork(github: FakeGitHub) -> None:
    github.add_pull(GH_REPO, 4, head_repo="mallory/app")
    github.add_pull(GH_REPO, 5, head_repo=None)
    github.add_pull(GH_REPO, 6)
    host = github_host(github)
    assert [host.change(GH_REPO, n).fork for n in (4, 5, 6)] == [True, True, False]


# == GitLab =======================================================================================

GL_PROJECT = "platform/team/web-app"


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as fake:
        fake.add_token(TOKEN)
        fake.add_project(GL_PROJECT)
        yield fake


def gitlab_host(fake: FakeGitLab) -> Host:
    return build(Provider.GITLAB, gitlab_url=fake.origin, gitlab_api_token=TOKEN)


def test_gitlab_membership_counts_inherited_and_invited_groups(gitlab: FakeGitLab) -> None:
    direct = gitlab.add_member(GL_PROJECT, "dana", 30)
    # A Reporter of the project who is a Maintainer of a parent group: Maintainer.
    inherited = gitlab.add_member(GL_PROJECT, "gina", 20)
    gitlab.add_group_member("platform", "gina", 40)
    # A Developer of a group the project was shared with at Reporter: Reporter.
    invited = gitlab.add_group_member("contractors", "ivan", 30)
    gitlab.share_with_group(GL_PROJECT, "contractors", 20)
    reporter = gitlab.add_member(GL_PROJECT, "rita", 20)
    stranger = gitlab.add_user("sam")
    host = gitlab_host(gitlab)
    levels = {
        name: host.permission(GL_PROJECT, name, str(user_id))
        for name, user_id in (
            ("dana", direct),
            ("gina", inherited),
            ("ivan", invited),
            ("rita", reporter),
            ("sam", stranger),
        )
    }
    assert {name: p.level for name, p in levels.items()} == {
        "dana": "write",
        "gina": "admin",
        "ivan": "read",
        "rita": "read",
        "sam": "none",
    }
    assert levels["gina"].reported == "access level 40 (Maintainer)"
    assert levels["rita"].reported == "access level 20 (Reporter)"
    assert "not a member" in levels["sam"].reported
    assert ("GET", f"/api/v4/projects/platform%2Fteam%2Fweb-app/members/all/{inherited}") in gitlab.calls()


def test_gitlab_looks_the_user_up_when_the_note_has_no_author_id(gitlab: FakeGitLab) -> None:
    gitlab.add_group_member("platform/team", "olga", 30)
    permission = gitlab_host(gitlab).permission(GL_PROJECT, "olga")
    assert permission.level == "write"
    assert ("GET", "/api/v4/users") in gitlab.calls()
    assert gitlab_host(gitlab).permission(GL_PROJECT, "nobody").level == "none"


def test_gitlab_blocked_member_has_no_access(gitlab: FakeGitLab) -> None:
    user_id = gitlab.add_member(GL_PROJECT, "bob", 40)
    gitlab.blocked.add(user_id)
    permission = gitlab_host(gitlab).permission(GL_PROJECT, "bob", str(user_id))
    assert permission.level == "none" and "blocked" in permission.reported


def test_gitlab_identity_award_and_reply_in_the_thread(gitlab: FakeGitLab) -> None:
    gitlab.add_merge_request(GL_PROJECT, 9)
    note = gitlab.add_note(GL_PROJECT, 9, "/wake-preview", author="dana")
    host = gitlab_host(gitlab)
    assert host.identity().is_self("k8s-ee-bot")
    host.react(GL_PROJECT, 9, str(note.id))
    host.react(GL_PROJECT, 9, str(note.id))  # GitLab refuses a repeat; the client takes that as done
    assert gitlab.awards(GL_PROJECT, note.id) == [("k8s-ee-bot", "thumbsup")]
    host.reply(GL_PROJECT, 9, str(note.id), "answered", note.discussion_id)
    reply = gitlab.notes(GL_PROJECT, 9)[-1]
    assert reply.body == "answered" and reply.discussion_id == note.discussion_id


def test_gitlab_change_from_a_fork(gitlab: FakeGitLab) -> None:
    gitlab.add_merge_request(GL_PROJECT, 1, source_project_id=999)
    gitlab.add_merge_request(GL_PROJECT, 2)
    host = gitlab_host(gitlab)
    assert [host.change(GL_PROJECT, n).fork for n in (1, 2)] == [True, False]


# == Bitbucket Cloud ==============================================================================

CLOUD_REPO = "acme/web-app"


@pytest.fixture
def cloud() -> Iterator[FakeBitbucketCloud]:
    with FakeBitbucketCloud() as fake:
        fake.add_bearer(TOKEN)
        fake.add_repository(CLOUD_REPO)
        yield fake


def cloud_host(fake: FakeBitbucketCloud) -> Host:
    return build(Provider.BITBUCKET_CLOUD, bitbucket_cloud_url=fake.origin, bitbucket_cloud_token=TOKEN)


def test_cloud_permission_is_the_effective_one_by_uuid(cloud: FakeBitbucketCloud) -> None:
    writer, grouped, reader, stranger = (cloud.add_account(n) for n in ("wes", "gus", "ray", "sid"))
    cloud.grant(CLOUD_REPO, writer, "write")
    cloud.grant(CLOUD_REPO, grouped, "read")
    cloud.grant_group(CLOUD_REPO, "developers", "admin", [grouped])
    cloud.grant(CLOUD_REPO, reader, "read")
    host = cloud_host(cloud)
    levels = {
        a.nickname: host.permission(CLOUD_REPO, a.account_id, a.uuid).level
        for a in (writer, grouped, reader, stranger)
    }
    assert levels == {"wes": "write", "gus": "admin", "ray": "read", "sid": "none"}
    # By account id when no uuid is known.
    assert host.permission(CLOUD_REPO, writer.account_id).level == "write"
    asked = [r for r in cloud.requests if r.path.endswith("/permissions/repositories/web-app")]
    assert asked[0].query["q"] == f'user.uuid="{writer.uuid}"'


def test_cloud_permissions_need_an_admin_credential(cloud: FakeBitbucketCloud) -> None:
    cloud.token_is_admin = False
    with pytest.raises(HostUnavailable, match="refused access"):
        cloud_host(cloud).permission(CLOUD_REPO, "x", "{x}")


def test_cloud_has_no_reactions_and_replies_under_the_comment(cloud: FakeBitbucketCloud) -> None:
    cloud.add_pull_request(CLOUD_REPO, 5)
    comment = cloud.add_comment(CLOUD_REPO, 5, "/preserve")
    host = cloud_host(cloud)
    assert not host.can_react
    with pytest.raises(HostError):
        host.react(CLOUD_REPO, 5, str(comment.id))
    host.reply(CLOUD_REPO, 5, str(comment.id), "answered")
    reply = cloud.comments(CLOUD_REPO, 5)[-1]
    assert reply.raw == "answered" and reply.parent == comment.id
    assert host.identity().is_self(cloud.token_account.uuid)


def test_cloud_change_from_a_fork(cloud: FakeBitbucketCloud) -> None:
    cloud.add_pull_request(CLOUD_REPO, 1, source_repository="mallory/web-app")
    cloud.add_pull_request(CLOUD_REPO, 2, source_repository=None)
    cloud.add_pull_request(CLOUD_REPO, 3)
    host = cloud_host(cloud)
    assert [host.change(CLOUD_REPO, n).fork for n in (1, 2, 3)] == [True, True, False]


# == Bitbucket Data Center ========================================================================

DC_REPO = "PROJ/web-app"


@pytest.fixture
def server() -> Iterator[FakeBitbucketServer]:
    with FakeBitbucketServer() as fake:
        fake.add_token(TOKEN)
        fake.add_repository(DC_REPO)
        yield fake


def server_host(fake: FakeBitbucketServer) -> Host:
    return build(Provider.BITBUCKET_SERVER, bitbucket_server_url=fake.origin, bitbucket_server_token=TOKEN)


def test_data_center_permission_counts_every_implied_grant(server: FakeBitbucketServer) -> None:
    server.grant(DC_REPO, "rob", "REPO_WRITE")
    server.grant_project("PROJ", "pat", "PROJECT_WRITE")
    server.add_to_group("devs", "gail")
    server.grant(DC_REPO, "@devs", "REPO_ADMIN")
    server.add_to_group("qa", "quinn")
    server.grant_project("PROJ", "@qa", "PROJECT_READ")
    server.add_user("ada")
    server.global_grants["ada"] = "ADMIN"
    server.add_user("joanna")
    server.grant(DC_REPO, "joanna", "REPO_WRITE")
    server.add_user("ann")  # a part of "joanna": the filter matches it, the client does not
    host = server_host(server)
    levels = {
        user: host.permission(DC_REPO, user).level for user in ("rob", "pat", "gail", "quinn", "ada", "ann")
    }
    assert levels == {
        "rob": "write",
        "pat": "write",
        "gail": "write",
        "quinn": "read",
        "ada": "write",
        "ann": "none",
    }
    assert host.permission(DC_REPO, "rob").reported == "REPO_WRITE"
    asked = next(r for r in server.requests if r.path == "/rest/api/1.0/users")
    assert asked.query == {
        "filter": "rob",
        "permission": "REPO_WRITE",
        "permission.projectKey": "PROJ",
        "permission.repositorySlug": "web-app",
        "limit": "100",
    }


def test_data_center_public_repository_is_read_for_everyone(server: FakeBitbucketServer) -> None:
    server.repositories["PROJ", "web-app"].public = True
    server.add_user("visitor")
    permission = server_host(server).permission(DC_REPO, "visitor")
    assert permission.level == "read" and permission.reported == "REPO_READ"


def test_data_center_identity_reaction_and_reply(server: FakeBitbucketServer) -> None:
    server.add_pull_request(DC_REPO, 4)
    comment = server.add_comment(DC_REPO, 4, "/deploy-preview", author="rob")
    host = server_host(server)
    assert host.identity().is_self("k8s-ee-bot")
    host.react(DC_REPO, 4, str(comment.id))
    host.react(DC_REPO, 4, str(comment.id))
    assert server.reactions(DC_REPO, comment.id) == [("k8s-ee-bot", "thumbsup")]
    assert any(r.path.startswith("/rest/comment-likes/latest/projects/PROJ/") for r in server.requests)
    host.reply(DC_REPO, 4, str(comment.id), "answered")
    reply = server.comments(DC_REPO, 4)[-1]
    assert reply.text == "answered" and reply.parent == comment.id


def test_data_center_change_from_a_fork(server: FakeBitbucketServer) -> None:
    server.add_pull_request(DC_REPO, 1, from_repository="~MALLORY/web-app")
    server.add_pull_request(DC_REPO, 2)
    host = server_host(server)
    assert [host.change(DC_REPO, n).fork for n in (1, 2)] == [True, False]
