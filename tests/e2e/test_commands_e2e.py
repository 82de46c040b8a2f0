"""Chat commands end to end, on every host: webhook in, the arq worker, the host's SDK against the
fake host (permissions, reactions, replies), the test Kubernetes API server.

Every command is answered: the reaction or reply is read back from the fake host after the worker
ran. Permissions come from the fake host's own model of each host's grants: a writer through a
group (GitLab, Bitbucket Cloud), a project (Data Center) or a collaborator grant (GitHub), and a
reader.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from arq.connections import RedisSettings, create_pool

from handlers.desired import DesiredStore, EnvKey
from handlers.queue import Job
from handlers.settings import WorkerConfig, load_worker_config
from providers.events import Provider
from providers.hosts.base import Host
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.scenarios import SCENARIOS, Answer, Delivery, GitHubScenario, Scenario, sha
from tests.support.senders import ADMIN_TOKEN, auth_headers
from tests.support.worker import drain, kube_cluster, run_jobs

ON_DEMAND = "projectId: shop\ntrigger: on-demand\n"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NAMESPACE = "shop-pr-7"


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> Iterator[Scenario]:
    chosen = SCENARIOS[request.param]()
    chosen.start()  # type: ignore[attr-defined]
    yield chosen
    chosen.fake.stop()


@pytest.fixture
def config(redis_server: Any) -> WorkerConfig:
    return load_worker_config(
        redis_url=redis_server.url, preview_domain="preview.example.com", lock_ttl=3, reconcile_max_tries=3
    )


class Run:
    """Sends a scenario's webhooks to the gateway and runs the worker until it is idle."""

    def __init__(self, client: Any, config: WorkerConfig, kube: KubeAPIServer, scenario: Scenario) -> None:
        self.client, self.config, self.kube, self.scenario = client, config, kube, scenario
        self.cluster = kube_cluster(kube.url)
        self.hosts: dict[Provider, Host] = scenario.hosts()

    def send(self, delivery: Delivery) -> None:
        answer = self.client.post(delivery.endpoint, content=delivery.body, headers=delivery.headers)
        assert answer.status_code == 202, answer.text
        drain(self.config, self.cluster, hosts=self.hosts)

    def ask(self, author: str, body: str) -> list[Answer]:
        comment_id, delivery = self.scenario.comment(author, body)
        self.send(delivery)
        return self.scenario.answers(comment_id)

    def namespace(self, name: str = NAMESPACE) -> dict[str, Any] | None:
        found = [o for o in self.kube.objects("Namespace") if o["metadata"]["name"] == name]
        return found[0] if found else None

    def commit(self) -> str | None:
        ns = self.namespace()
        return ns["metadata"]["labels"]["k8s-ee/commit-sha"] if ns else None


@pytest.fixture
def run(gateway: Any, config: WorkerConfig, kube: KubeAPIServer, scenario: Scenario) -> Run:
    return Run(gateway(), config, kube, scenario)


def accepted(scenario: Scenario, answers: list[Answer], words: str = "") -> None:
    """One answer: a reaction where the host has them, else a reply saying what happens."""
    assert len(answers) == 1, answers
    if scenario.provider == Provider.BITBUCKET_CLOUD:
        assert answers[0].kind == "reply" and words in answers[0].text, answers
    else:
        assert answers[0].kind == "reaction", answers


def refused(answers: list[Answer], *words: str) -> str:
    assert len(answers) == 1 and answers[0].kind == "reply", answers
    for word in words:
        assert word in answers[0].text, answers[0].text
    return answers[0].text


def hibernate(config: WorkerConfig, key: EnvKey) -> None:
    """What the idle sweep does: the desired state says hibernated, and a reconcile is queued."""

    async def go() -> None:
        pool = await create_pool(RedisSettings.from_dsn(config.connection.redis_url))
        try:
            store = DesiredStore(pool, config.keys, config.connection.environment_retention_ms)
            generation, desired = await store.load(key)
            assert desired is not None
            hibernated = desired.model_copy(update={"hibernated": True})
            assert await store.save(hibernated, generation, desired) is not None
            await pool.enqueue_job(Job.RECONCILE, str(key), _queue_name=config.connection.queue_name)
        finally:
            await pool.aclose()

    asyncio.run(go())


def decisions(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, bool, str]]:
    """(command, actor, allowed, permission the host reported) of each command logged."""
    return [
        (r.command, r.actor, r.allowed, r.permission)  # type: ignore[attr-defined]
        for r in caplog.records
        if hasattr(r, "command")
    ]


def test_every_command_allowed_and_refused(
    run: Run, scenario: Scenario, config: WorkerConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "k8s_ee.worker")
    scenario.open_change(sha(1))
    scenario.add_config(ON_DEMAND, sha(1))
    scenario.add_user("maintainer", write=True)
    scenario.add_user("contributor", write=False)
    run.send(scenario.opened())
    assert run.namespace() is None  # on-demand: waits for the command

    text = refused(
        run.ask("contributor", "/deploy-preview"), "@contributor needs write access to run /deploy-preview"
    )
    assert f"({run.hosts[scenario.provider].name} reports: " in text and run.namespace() is None
    accepted(scenario, run.ask("maintainer", "/deploy-preview"), "deploying")
    assert run.commit() == sha(1)
    # Each decision is logged with who asked and what the host said they may do.
    logged = decisions(caplog)
    assert [(c, a, ok) for c, a, ok, _ in logged] == [
        ("/deploy-preview", "contributor", False),
        ("/deploy-preview", "maintainer", True),
    ]
    assert all(reported for *_, reported in logged) and logged[0][3] != logged[1][3]

    refused(run.ask("contributor", "/preserve 24"), "needs write access to run /preserve 24")
    accepted(scenario, run.ask("maintainer", "/preserve 24"), "preserved until")
    ns = run.namespace()
    assert ns is not None and ns["metadata"]["labels"]["preserve"] == "true"
    assert "k8s-ee/preserve-until" in ns["metadata"]["annotations"]
    assert "Preserved until" in scenario.environment_comment()

    refused(run.ask("contributor", "/unpreserve"), "needs write access to run /unpreserve")
    accepted(scenario, run.ask("maintainer", "/unpreserve"), "no longer preserved")
    ns = run.namespace()
    assert ns is not None and "preserve" not in ns["metadata"]["labels"]
    assert "k8s-ee/preserve-until" not in ns["metadata"]["annotations"]

    key = EnvKey(provider=scenario.provider, repository=scenario.repository, number=scenario.number)
    hibernate(config, key)
    drain(config, run.cluster, hosts=run.hosts)
    deployments = [
        o
        for o in run.kube.objects("Deployment", namespace=NAMESPACE)
        if o["metadata"]["name"] == f"{NAMESPACE}-app"
    ]
    assert deployments[0]["spec"]["replicas"] == 0
    refused(run.ask("contributor", "/wake-preview"), "needs write access to run /wake-preview")
    accepted(scenario, run.ask("maintainer", "/wake-preview"), "waking")
    deployments = [
        o
        for o in run.kube.objects("Deployment", namespace=NAMESPACE)
        if o["metadata"]["name"] == f"{NAMESPACE}-app"
    ]
    assert deployments[0]["spec"]["replicas"] == 1
    # Nothing to wake: answered all the same, with why.
    refused(run.ask("maintainer", "/wake-preview"), "not done", "already awake")

    refused(run.ask("contributor", "/destroy-preview"), "needs write access to run /destroy-preview")
    assert run.namespace() is not None
    accepted(scenario, run.ask("maintainer", "/destroy-preview"), "destroying")
    assert run.namespace() is None

    # Help is for everyone; a misspelt command gets it too, with what was wrong.
    refused(run.ask("contributor", "/preview-help"), "/deploy-preview <sha>", "/preserve [hours]")
    refused(run.ask("maintainer", "/preserve forever"), "number of hours", "/preview-help")


def unreachable_cluster() -> Any:
    """A cluster API server that is not there: a port nothing listens on (refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return kube_cluster(f"http://127.0.0.1:{port}")


def test_the_answer_comes_from_the_event_job_before_and_without_any_reconcile(
    gateway: Any, config: WorkerConfig, scenario: Scenario, redis_client: Any
) -> None:
    """Why a command is answered within seconds: the answer is the event job's own work, made
    before the reconcile it queues runs, and whatever the cluster does. Here the cluster's API
    server cannot be reached at all, and the answer is on the host all the same."""
    client = gateway()
    cluster = unreachable_cluster()
    hosts = scenario.hosts()
    scenario.open_change(sha(1))
    scenario.add_config(ON_DEMAND, sha(1))
    scenario.add_user("maintainer", write=True)
    opened = scenario.opened()
    assert client.post(opened.endpoint, content=opened.body, headers=opened.headers).status_code == 202
    drain(config, cluster, hosts=hosts)  # on-demand: nothing for the cluster yet

    comment_id, delivery = scenario.comment("maintainer", "/deploy-preview")
    assert client.post(delivery.endpoint, content=delivery.body, headers=delivery.headers).status_code == 202
    queue = config.connection.queue_name
    [event_job] = [m.decode() for m in redis_client.zrange(queue, 0, -1)]
    assert not event_job.startswith("reconcile")
    # One job: the event's. It answers, and queues the reconcile, which has not run.
    run_jobs(config, cluster, hosts, 1)
    accepted(scenario, scenario.answers(comment_id), "deploying")
    waiting = [m.decode() for m in redis_client.zrange(queue, 0, -1)]
    assert any(job.startswith("reconcile:") for job in waiting), waiting

    # The reconcile then fails against the missing API server; the answer stays the one it was.
    drain(config, cluster, hosts=hosts)
    accepted(scenario, scenario.answers(comment_id), "deploying")


def test_a_forks_change_is_deployed_only_at_the_approved_commit(run: Run, scenario: Scenario) -> None:
    base = (
        "projectId: shop\n"
        "envFrom:\n  - secretRef:\n      name: app-secrets\n  - configMapRef:\n      name: app-settings\n"
    )
    scenario.open_change(sha(1), fork=True)
    scenario.add_config(base, "main")
    # The fork's own k8s-ee.yaml is never read.
    scenario.add_config("projectId: evil\n", sha(1))
    scenario.add_user("maintainer", write=True)
    run.send(scenario.opened())
    assert run.namespace() is None and run.namespace("evil-pr-7") is None
    assert "fork" in scenario.environment_comment()

    accepted(scenario, run.ask("maintainer", "/deploy-preview"), "deploying")
    assert run.commit() == sha(1)
    [deployment] = [
        o
        for o in run.kube.objects("Deployment", namespace=NAMESPACE)
        if o["metadata"]["name"] == f"{NAMESPACE}-app"
    ]
    sources = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert {"configMapRef": {"name": "app-settings"}} in sources
    assert not any("secretRef" in source for source in sources)

    # A push after the approval is not deployed; the comment names the approved commit.
    scenario.add_config("projectId: evil\n", sha(2))
    run.send(scenario.push(sha(2)))
    assert run.commit() == sha(1)
    comment = scenario.environment_comment()
    assert sha(1)[:12] in comment and sha(2)[:12] in comment and "approved" in comment

    # Approving the old commit by name is refused: the head moved.
    refused(run.ask("maintainer", f"/deploy-preview {sha(1)[:12]}"), "no longer the head", sha(2)[:12])
    assert run.commit() == sha(1)
    accepted(scenario, run.ask("maintainer", f"/deploy-preview {sha(2)}"), "deploying")
    assert run.commit() == sha(2)


def test_commands_in_code_and_the_gateways_own_comments_are_ignored(run: Run, scenario: Scenario) -> None:
    scenario.open_change(sha(1))
    scenario.add_config(ON_DEMAND, sha(1))
    scenario.add_user("maintainer", write=True)
    run.send(scenario.opened())
    assert run.ask("maintainer", "Try this:\n\n```\n/deploy-preview\n```\n> /deploy-preview") == []
    assert run.namespace() is None
    # Written by the gateway's own account (no marker): still not a command.
    assert run.ask(scenario.bot, "/deploy-preview") == []
    assert run.namespace() is None


@pytest.mark.parametrize("scenario", ["github"], indirect=True)
def test_deploy_preview_deploys_a_draft(run: Run, scenario: Scenario) -> None:
    scenario.open_change(sha(1))
    scenario.fake.repos[scenario.repository.lower()].pulls[7].draft = True  # type: ignore[attr-defined]
    scenario.add_config("projectId: shop\n", sha(1))
    scenario.add_user("maintainer", write=True)
    delivery = scenario.opened()
    run.send(delivery)
    assert run.namespace() is None  # a draft: not deployed by itself
    accepted(scenario, run.ask("maintainer", "/deploy-preview"))
    assert run.commit() == sha(1)


@pytest.mark.parametrize("scenario", ["github"], indirect=True)
def test_a_preserved_environment_outlives_its_close_until_unpreserved(
    gateway: Any, redis_server: Any, kube: KubeAPIServer, scenario: GitHubScenario
) -> None:
    config = load_worker_config(
        redis_url=redis_server.url, preview_domain="preview.example.com", max_preserved_per_repository=1
    )
    run = Run(gateway(), config, kube, scenario)
    scenario.add_user("maintainer", write=True)
    scenario.number = 8
    scenario.open_change(sha(8))
    scenario.add_config("projectId: shop\n", sha(8))
    run.send(scenario.opened())
    scenario.number = 7
    scenario.open_change(sha(1))
    scenario.add_config("projectId: shop\n", sha(1))
    run.send(scenario.opened())
    assert run.namespace() is not None and run.namespace("shop-pr-8") is not None

    accepted(scenario, run.ask("maintainer", "/preserve 2"))
    run.send(scenario.close())
    ns = run.namespace()
    assert ns is not None and ns["metadata"]["labels"]["preserve"] == "true"
    assert "Kept after the change closed" in scenario.environment_comment()

    # One preserved environment per repository here: the other change's /preserve is refused.
    scenario.number = 8
    refused(run.ask("maintainer", "/preserve"), "preserved already", "K8S_EE_MAX_PRESERVED_PER_REPOSITORY=1")
    scenario.number = 7

    # A closed, preserved environment cannot be destroyed by command, only unpreserved.
    refused(run.ask("maintainer", "/destroy-preview"), "not done")
    accepted(scenario, run.ask("maintainer", "/unpreserve"))
    assert run.namespace() is None
    # Its place is free again.
    scenario.number = 8
    accepted(scenario, run.ask("maintainer", "/preserve"))


def test_the_generic_trigger_relays_commands(gateway: Any, config: WorkerConfig, kube: KubeAPIServer) -> None:
    client, cluster = gateway(), kube_cluster(kube.url)

    def trigger(body: dict[str, Any]) -> str:
        raw = json.dumps({"repository": "northwind-labs/storefront", "number": 7, **body}).encode()
        answer = client.post(
            "/webhooks/generic",
            content=raw,
            headers={"Content-Type": "application/json", **auth_headers("generic", raw)},
        )
        assert answer.status_code == 202, answer.text
        drain(config, cluster)
        return str(answer.json()["delivery_id"])

    trigger({"action": "deploy", "sha": sha(1), "branch": "feature", "config": {"projectId": "shop"}})
    trigger({"action": "comment", "comment": "for the demo:\n/preserve 2"})
    [ns] = [o for o in kube.objects("Namespace") if o["metadata"]["name"] == NAMESPACE]
    assert ns["metadata"]["labels"]["preserve"] == "true"
    refused_delivery = trigger({"action": "comment", "comment": "/destroy-preview"})
    detail = client.get(f"/api/v1/deliveries/{refused_delivery}", headers=ADMIN).json()
    assert "/unpreserve it first" in detail["attempts"][0]["applied"]["note"]
    assert any(o["metadata"]["name"] == NAMESPACE for o in kube.objects("Namespace"))
