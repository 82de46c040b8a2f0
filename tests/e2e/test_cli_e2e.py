"""The command line against a running gateway and worker (real Redis, the directory back-end): `trigger --wait`,
`envs`, `deliveries explain/replay`, and `deliveries recover` reaching the gateway through the fake hosts."""

from __future__ import annotations

import json
import os
import shlex
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cli import main
from handlers.cluster.directory import DirectoryCluster
from handlers.settings import WorkerConfig, load_worker_config
from providers.events import Provider
from tests.support.hook_hosts import hooked
from tests.support.senders import (
    ADMIN_TOKEN,
    FIXTURES,
    GENERIC_SECRET,
    GENERIC_TOKEN,
    GITHUB_SECRET,
)
from tests.support.worker import BackgroundWorker

CONFIG = "projectId: shop\ndatabases:\n  redis: true\n"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("K8S_EE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def worker_config(tmp_path: Path, redis_server: Any) -> WorkerConfig:
    config = tmp_path / "default-k8s-ee.yaml"
    config.write_text(CONFIG)
    return load_worker_config(
        redis_url=redis_server.url, default_config=config, preview_domain="preview.example.com"
    )


@pytest.fixture
def running(
    gateway: Any, worker_config: WorkerConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A gateway and a worker; the command line's environment points at them. Yields the gateway's URL."""
    client = gateway()
    url = str(client.base_url).rstrip("/")
    monkeypatch.setenv("K8S_EE_GATEWAY_URL", url)
    monkeypatch.setenv("K8S_EE_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("K8S_EE_GENERIC_SECRET", GENERIC_SECRET)
    with BackgroundWorker(worker_config, DirectoryCluster(tmp_path / "environments")):
        yield url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`run(capsys, "envs show x --json")`: one string is split as a shell would; several are taken as they are."""
    code = main(shlex.split(argv[0]) if len(argv) == 1 else list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_trigger_wait_follows_a_deploy_until_it_is_ready(
    running: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "k8s-ee.yaml"
    config.write_text(CONFIG)
    sha = "a" * 40
    code, out, err = run(
        capsys,
        f"trigger deploy --repo acme/web --number 42 --sha {sha} --branch feature/login --config {config} --wait --json",
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["status"] == "accepted" and answer["delivery_id"].startswith("k8s-ee-cli-")
    assert answer["outcome"]["ok"] and answer["outcome"]["state"] == "deployed"
    assert answer["outcome"]["environment"]["preview_url"] == "https://shop-pr-42.preview.example.com"
    assert (tmp_path / "environments" / "shop-pr-42").is_dir()


def test_trigger_wait_exits_1_when_the_environment_fails(
    running: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An image repository cannot be derived from a repository named `bad.`: the deploy fails.
    code, out, _ = run(
        capsys, f"trigger deploy --repo acme/bad. --number 7 --sha {'b' * 40} --branch main --wait"
    )
    assert code == 1
    assert "generic:acme/bad.:7 failed: " in out and "image.repository" in out


def test_trigger_refuses_an_invalid_config_before_sending(
    running: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "k8s-ee.yaml"
    config.write_text("projectId: shop\napp:\n  port: nope\n")
    code, _, err = run(
        capsys, f"trigger deploy --repo acme/web --number 3 --sha {'c' * 40} --branch x --config {config}"
    )
    assert code == 1 and f"{config}:3:3 app.port" in err
    listing = httpx.get(
        f"{running}/api/v1/deliveries", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ).json()
    assert listing["items"] == [], "nothing was sent"


def test_trigger_with_a_bearer_token_prints_the_gateways_answer(
    running: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("K8S_EE_GENERIC_SECRET")
    code, _, err = run(capsys, "trigger destroy --repo acme/web --number 9")
    assert code == 2 and "K8S_EE_GENERIC_TOKEN" in err
    monkeypatch.setenv("K8S_EE_GENERIC_TOKEN", GENERIC_TOKEN)
    code, out, _ = run(capsys, "trigger destroy --repo acme/web --number 9")
    assert code == 0 and "accepted" in out and "env.destroy acme/web#9" in out
    monkeypatch.setenv("K8S_EE_GENERIC_TOKEN", "not-the-token")
    code, out, _ = run(capsys, "trigger destroy --repo acme/web --number 9 --json")
    assert code == 1 and json.loads(out)["http_status"] == 401


def test_envs_list_show_hibernate_wake_and_destroy(running: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, f"trigger deploy --repo acme/web --number 5 --sha {'d' * 40} --branch b --wait")
    assert code == 0
    code, out, _ = run(capsys, "envs", "list")
    assert code == 0 and "generic:acme/web:5" in out and "deployed" in out and "shop-pr-5" in out
    code, out, _ = run(capsys, "envs", "show", "shop-pr-5", "--json")
    assert json.loads(out)["state"] == "deployed"

    for action, state in (("hibernate", "hibernated"), ("wake", "deployed"), ("destroy", "destroyed")):
        code, out, err = run(capsys, "envs", action, "generic:acme/web:5", "--wait")
        assert code == 0, err
        assert f"is {state}" in out
    code, out, _ = run(capsys, "envs", "show", "generic:acme/web:5", "--json")
    assert json.loads(out)["state"] == "destroyed"
    code, _, err = run(capsys, "envs", "show", "nobody-pr-1")
    assert code == 1 and "knows no environment" in err


def test_deliveries_list_explain_and_replay(running: str, capsys: pytest.CaptureFixture[str]) -> None:
    # A refused one: a GitHub delivery signed with the wrong secret.
    body = (FIXTURES / "github" / "pull_request.opened.json").read_bytes()
    headers = json.loads((FIXTURES / "github" / "pull_request.opened.headers.json").read_text())
    headers = {**headers, "X-GitHub-Delivery": "refused-1", "X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert httpx.post(f"{running}/webhooks/github", content=body, headers=headers).status_code == 401
    code, out, _ = run(capsys, "deliveries", "explain", "refused-1")
    assert (
        code == 0
        and "refused (401)" in out
        and "K8S_EE_GITHUB_WEBHOOK_SECRET" in out
        and "Nothing was stored" in out
    )

    code, out, _ = run(
        capsys, f"trigger deploy --repo acme/web --number 8 --sha {'e' * 40} --branch b --wait --json"
    )
    delivery = json.loads(out)["delivery_id"]
    code, out, _ = run(capsys, "deliveries", "explain", delivery)
    assert (
        code == 0
        and "accepted (202)" in out
        and "reconcile generic:acme/web:8#1" in out
        and "deployed" in out
    )

    code, out, _ = run(capsys, "deliveries", "list", "--verdict", "rejected", "--json")
    assert [d["delivery_id"] for d in json.loads(out)] == ["refused-1"]

    code, out, _ = run(capsys, "deliveries", "replay", delivery)
    assert code == 0 and "attempt 2" in out
    code, out, _ = run(capsys, "deliveries", "show", delivery, "--json")
    assert [a["reason"] for a in json.loads(out)["attempts"]] == [None, "replayed through the admin API"]
    code, _, err = run(capsys, "deliveries", "replay", "refused-1")
    assert code == 1 and "never accepted" in err


def test_recover_redelivers_github_deliveries_the_gateway_missed(
    running: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("K8S_EE_GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)
    with hooked(Provider.GITHUB) as hosted:
        hosted.export(monkeypatch)
        # Deliveries really reach the gateway: GitHub's fake posts them to the hook's URL.
        hosted.fake.receiver = lambda url, headers, body: (
            httpx.post(url, content=body, headers=headers).status_code
        )
        scope = ["--provider", "github", "--repo", hosted.repository, "--gateway", running]
        assert run(capsys, "hooks", "ensure", *scope)[0] == 0
        [hook] = hosted.hooks()
        payload = json.loads((FIXTURES / "github" / "pull_request.opened.json").read_text())
        # GitHub tried while the gateway was down: no answer, so nothing stored.
        hosted.fake.add_delivery(hosted.repository, hook.id, 0, guid=str(uuid.uuid4()), payload=payload)

        code, out, err = run(capsys, "deliveries", "recover", *scope, "--since", "72h", "--json")

        assert code == 0, err
        [result] = json.loads(out)["results"]
        assert (result["missed"], result["recovered"]) == (1, 1)
        redelivered = hosted.fake.hooks_of(hosted.repository)[0].deliveries[-1]
        assert redelivered.redelivery and redelivered.status_code == 202, (
            "the gateway accepted the redelivery"
        )
        code, out, _ = run(capsys, "deliveries", "list", "--provider", "github", "--json")
        assert [d["delivery_id"] for d in json.loads(out)] == [redelivered.guid]
        # A delivery that did arrive after all (the host gave up waiting): redelivered, answered duplicate.
        hosted.fake.add_delivery(hosted.repository, hook.id, 0, guid=redelivered.guid, payload=payload)
        code, out, _ = run(capsys, "deliveries", "recover", *scope, "--json")
        assert json.loads(out)["results"][0]["recovered"] == 0, "that GUID has a successful attempt already"


def test_recover_syncs_bitbucket_pull_requests_the_gateway_has_out_of_date(
    running: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with hooked(Provider.BITBUCKET_CLOUD) as hosted:
        hosted.export(monkeypatch)
        repo = hosted.repository
        hosted.fake.add_pull_request(repo, 11)  # opened while the gateway was unreachable
        stale = hosted.fake.add_pull_request(repo, 12, updated_on=datetime.now(UTC) - timedelta(days=5))
        gone = hosted.fake.add_pull_request(repo, 13)
        argv = [
            "deliveries",
            "recover",
            "--provider",
            "bitbucket-cloud",
            "--repo",
            repo,
            "--since",
            "72h",
            "--json",
        ]

        code, out, err = run(capsys, *argv)
        assert code == 0, err
        [result] = json.loads(out)["results"]
        assert (result["missed"], result["recovered"]) == (2, 2), (
            result
        )  # 11 and 13; 12 is older than the window
        for number in (11, 13):
            code, out, _ = run(capsys, "envs", "show", f"bitbucket-cloud:{repo}:{number}", "--json")
            assert code == 0
        code, out, _ = run(capsys, *argv)
        assert json.loads(out)["results"][0]["missed"] == 0, "up to date now: nothing sent twice"

        gone.state = "DECLINED"  # declined while the gateway was unreachable
        code, out, _ = run(capsys, *argv)
        assert json.loads(out)["results"][0]["recovered"] == 1
        from tests.support.worker import wait_for

        def state() -> Any:
            shown = httpx.get(
                f"{running}/api/v1/environments/bitbucket-cloud/{repo}/13",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ).json()
            return shown["state"] if shown.get("state") == "destroyed" else None

        assert wait_for(state) == "destroyed"
        assert stale.id == 12


def test_envs_preserve_and_unpreserve_an_environment_of_a_code_host(
    running: str, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    made = httpx.post(
        f"{running}/api/v1/environments/github/acme/web/77/sync",
        headers=admin,
        json={"state": "open", "head_sha": "f" * 40, "head_ref": "feature"},
    )
    assert made.status_code == 202
    from tests.support.worker import wait_for

    wait_for(
        lambda: (
            httpx.get(f"{running}/api/v1/environments/github/acme/web/77", headers=admin).json().get("state")
            == "deployed"
        )
    )

    code, out, err = run(capsys, "envs preserve github:acme/web:77 --hours 5 --wait")
    assert code == 0, out + err
    assert "preserved until" in out
    code, out, _ = run(capsys, "envs show github:acme/web:77 --json")
    shown = json.loads(out)
    assert shown["preserved_until"] is not None and shown["state"] == "deployed"

    code, out, err = run(capsys, "envs unpreserve github:acme/web:77 --wait")
    assert code == 0, out + err
    code, out, _ = run(capsys, "envs show github:acme/web:77 --json")
    assert json.loads(out)["preserved_until"] is None


def test_trigger_acts_on_a_code_hosts_environment_and_waits_for_it(
    running: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        f"trigger deploy --repo acme/web --number 31 --sha {'9' * 40} --branch b --provider gitlab --wait --json",
    )
    assert code == 0, out + err
    answer = json.loads(out)
    assert answer["event"]["target_provider"] == "gitlab"
    assert (
        answer["outcome"]["environment"]["provider"] == "gitlab" and answer["outcome"]["state"] == "deployed"
    )


def test_a_repository_whose_hook_is_ensured_is_read_by_the_resync_until_its_hook_is_deleted(
    running: str, redis_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from redis.asyncio import Redis

    from handlers.keys import Keys
    from handlers.lifecycle.resync import Repo, repositories

    async def resynced() -> set[Repo]:
        redis = Redis.from_url(redis_server.url)
        try:
            return await repositories(redis, Keys("k8s-ee:"), [])
        finally:
            await redis.aclose()

    monkeypatch.setenv("K8S_EE_GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)
    with hooked(Provider.GITHUB) as hosted:
        hosted.export(monkeypatch)
        repo = Repo(Provider.GITHUB, hosted.repository)
        # No environment, not configured: the resync would not read it.
        assert repo not in asyncio.run(resynced())
        # The operator registers the hook from a laptop: the gateway's URL and admin token, no Redis.
        scope = ["--provider", "github", "--repo", hosted.repository, "--gateway", running]
        code, out, _ = run(capsys, "hooks", "ensure", *scope, "--json")
        assert code == 0 and json.loads(out)["resync"] == {"registered": [hosted.repository], "warning": None}
        assert repo in asyncio.run(resynced())
        code, out, _ = run(capsys, "hooks", "ensure", *scope, "--dry-run")
        assert code == 0
        listed = httpx.get(
            f"{running}/api/v1/resync-repositories", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ).json()
        assert listed == {"items": [f"github:{hosted.repository}"]}

        # Its hook removed: the resync no longer reads it for that.
        code, out, _ = run(capsys, "hooks", "delete", *scope)
        assert code == 0
        assert repo not in asyncio.run(resynced())

        # Without the admin token the hook is still made, and the output says what to do instead.
        monkeypatch.delenv("K8S_EE_ADMIN_TOKEN")
        code, out, _ = run(capsys, "hooks", "ensure", *scope)
        assert code == 0 and "K8S_EE_RESYNC_REPOSITORIES: github:" in out
        assert repo not in asyncio.run(resynced())
