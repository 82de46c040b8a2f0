"""The `k8s-ee` command line, run in-process: its conventions, `config`, and `hooks` / `deliveries recover`
against the fake hosts through the real SDKs."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from gateway.cli import main, parser
from gateway.cli.output import Progress, colour_enabled, paint
from providers.events import Provider
from providers.hosts.hooks import EVENTS
from tests.support.hook_hosts import hooked

SECRET = "cli-hook-secret-42"
URL = "https://gateway.example.com/webhooks/github"
BAD = """projectId: web
app:
  port: 8080
databases:
  postgresql:
    version: "16"
    storage: 1GB
env:
  1BAD: x
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("K8S_EE_") or name == "NO_COLOR":
            monkeypatch.delenv(name)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def leaves(
    top: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += leaves(sub, (*prefix, name)) or [((*prefix, name), sub)]
    return found


# -- conventions ----------------------------------------------------------------------------------------


def test_every_command_has_help_with_an_example() -> None:
    commands = leaves(parser())
    assert {c[0] for c in commands} >= {
        ("serve",),
        ("worker",),
        ("hooks", "ensure"),
        ("hooks", "list"),
        ("hooks", "delete"),
        ("hooks", "test"),
        ("envs", "list"),
        ("envs", "show"),
        ("envs", "hibernate"),
        ("envs", "wake"),
        ("envs", "destroy"),
        ("envs", "preserve"),
        ("envs", "unpreserve"),
        ("trigger",),
        ("deliveries", "list"),
        ("deliveries", "show"),
        ("deliveries", "replay"),
        ("deliveries", "explain"),
        ("deliveries", "recover"),
        ("config", "validate"),
        ("config", "render"),
        ("config", "schema"),
    }
    for name, sub in commands:
        text = sub.format_help()
        assert "example" in text and "k8s-ee " + name[0] in text, name


def test_usage_errors_exit_2_and_version_prints(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["trigger", "deploy"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("k8s-ee ")
    code, _, err = run(capsys, "envs", "list")
    assert code == 2 and "K8S_EE_GATEWAY_URL" in err


def test_help_loads_no_sdk_and_serve_still_works_as_a_module() -> None:
    code = (
        "import sys; from gateway.cli import parser; parser().format_help(); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('github', 'gitlab', 'atlassian', 'kubernetes', 'httpx')"
        " or m.startswith('providers.hosts')]; print(bad); sys.exit(1 if bad else 0)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False).returncode
        == 0
    )
    help_text = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--port" in help_text


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = FakeTerminal()
    assert colour_enabled(terminal) and "\033[" in paint("deployed", "green", terminal)
    assert not colour_enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_enabled(terminal) and paint("deployed", "green", terminal) == "deployed"


def test_progress_shows_only_after_a_second_on_stderr() -> None:
    quick, slow = io.StringIO(), io.StringIO()
    with Progress(quick) as progress:
        progress.update("listing hooks")
    assert quick.getvalue() == ""
    with Progress(slow) as progress:
        progress.update("listing hooks")
        time.sleep(1.5)
    assert "listing hooks" in slow.getvalue()


# -- config ---------------------------------------------------------------------------------------------


def test_validate_names_line_column_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "k8s-ee.yaml"
    path.write_text(BAD)
    code, out, _ = run(capsys, "config", "validate", str(path))
    assert code == 1
    lines = out.strip().splitlines()
    assert f"{path}:7:5 databases.postgresql.storage: must match ^[0-9]+(Mi|Gi|Ti)$ (got '1GB')" in lines
    assert any(line.startswith(f"{path}:9:3 env.1BAD: ") for line in lines)

    code, out, _ = run(capsys, "config", "validate", str(path), "--json")
    answer = json.loads(out)
    assert code == 1 and not answer["valid"]
    assert {(p["line"], p["column"], p["path"]) for p in answer["problems"]} == {
        (7, 5, "databases.postgresql.storage"),
        (9, 3, "env.1BAD"),
    }


def test_validate_places_broken_yaml_and_missing_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("projectId: web\napp: [1, 2\n")
    code, out, _ = run(capsys, "config", "validate", str(broken))
    assert code == 1 and out.startswith(f"{broken}:3:1 is not valid YAML")
    missing = tmp_path / "missing.yaml"
    missing.write_text("app:\n  port: 80\n")
    code, out, _ = run(capsys, "config", "validate", str(missing))
    assert code == 1 and out.strip() == f"{missing}:1:1 projectId: is required"
    code, _, err = run(capsys, "config", "validate", str(tmp_path / "absent.yaml"))
    assert code == 2 and "cannot read" in err


def test_validate_accepts_what_the_worker_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "k8s-ee.yaml"
    path.write_text("projectId: web\ndatabases:\n  postgresql: true\n  redis: {}\n")
    code, out, _ = run(capsys, "config", "validate", str(path))
    assert code == 0 and "valid" in out and "postgresql, redis" in out


def test_render_prints_the_manifests_the_worker_would_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "k8s-ee.yaml"
    path.write_text("projectId: web\ndatabases:\n  postgresql: true\n")
    code, out, _ = run(capsys, "config", "render", str(path), "--number", "42", "--repository", "acme/web")
    assert code == 0
    documents = [d for d in yaml.safe_load_all(out) if d]
    kinds = [d["kind"] for d in documents]
    assert kinds[0] == "Namespace" and documents[0]["metadata"]["name"] == "web-pr-42"
    assert {
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "Cluster",
        "Deployment",
        "Service",
        "Ingress",
    } <= set(kinds)
    code, out, _ = run(capsys, "config", "render", str(path), "--number", "42", "--json")
    assert [d["kind"] for d in json.loads(out)] == kinds
    path.write_text(BAD)
    code, _, err = run(capsys, "config", "render", str(path), "--number", "42")
    assert code == 1 and "7:5 databases.postgresql.storage" in err


# -- hooks ----------------------------------------------------------------------------------------------


def test_hooks_ensure_list_test_delete_through_the_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with hooked(Provider.GITHUB) as hosted:
        hosted.export(monkeypatch)
        scope = ["--provider", "github", "--repo", hosted.repository, "--url", URL]
        code, _, err = run(capsys, "hooks", "ensure", *scope)
        assert code == 2 and "K8S_EE_GITHUB_WEBHOOK_SECRET" in err, "no secret, no hook"
        monkeypatch.setenv("K8S_EE_GITHUB_WEBHOOK_SECRET", f"{SECRET},old-secret")

        code, out, _ = run(capsys, "hooks", "ensure", *scope)
        assert code == 0 and "created" in out and SECRET not in out
        code, out, _ = run(capsys, "hooks", "ensure", *scope, "--json")
        assert code == 0 and json.loads(out)["results"][0]["action"] == "unchanged" and SECRET not in out
        assert hosted.secret_of(hosted.hooks()[0]) == SECRET, "the gateway's first (current) secret"

        hosted.add_hook("https://elsewhere.example.com/hook")
        code, out, _ = run(capsys, "hooks", "list", *scope, "--json")
        listed = json.loads(out)["hooks"]
        assert sorted(h["ours"] for h in listed) == [False, True]

        code, out, _ = run(capsys, "hooks", "test", *scope)
        assert code == 0 and "ping sent" in out

        code, out, _ = run(capsys, "hooks", "delete", *scope, "--dry-run")
        assert code == 0 and len(hosted.hooks()) == 2
        code, out, _ = run(capsys, "hooks", "delete", *scope)
        assert code == 0 and [hosted.url_of(h) for h in hosted.hooks()] == [
            "https://elsewhere.example.com/hook"
        ]


def test_hooks_ensure_over_many_repositories_and_a_secret_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with hooked(Provider.GITLAB) as hosted:
        hosted.export(monkeypatch)
        repositories = [f"grp/app-{n}" for n in range(12)]
        for repository in repositories:
            hosted.fake.add_project(repository)
        listing = tmp_path / "repos.txt"
        listing.write_text("# our projects\n" + "\n".join(repositories) + "\n")
        monkeypatch.setenv("VAULT_HOOK_SECRET", SECRET)
        code, out, _ = run(
            capsys,
            "hooks",
            "ensure",
            "--provider",
            "gitlab",
            "--repos-file",
            str(listing),
            "--url",
            "https://gw.example.com/webhooks/gitlab",
            "--secret-from-env",
            "VAULT_HOOK_SECRET",
            "--concurrency",
            "4",
            "--json",
        )
        assert code == 0
        assert [r["action"] for r in json.loads(out)["results"]] == ["created"] * 12
        for repository in repositories:
            [hook] = hosted.fake.hooks_of(repository)
            assert hook.token == SECRET and {f for f, on in hook.flags.items() if on} == set(
                EVENTS[Provider.GITLAB]
            )


# -- deliveries recover (GitHub, GitLab: no gateway needed) ----------------------------------------------------------


def test_recover_redelivers_exactly_the_failed_ones_across_repositories(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with hooked(Provider.GITHUB) as hosted:
        hosted.export(monkeypatch)
        repositories = [f"octo/svc-{n}" for n in range(6)]
        now = datetime.now(UTC).replace(microsecond=0)
        for n, repository in enumerate(repositories):
            hosted.fake.add_repo(repository)
            hook = hosted.fake.add_hook(repository, URL)
            hosted.fake.add_delivery(
                repository, hook.id, 200, guid=f"ok-{n}", delivered_at=now - timedelta(hours=1)
            )
            for k in range(n % 3):
                hosted.fake.add_delivery(
                    repository, hook.id, 502, guid=f"miss-{n}-{k}", delivered_at=now - timedelta(hours=2)
                )
            hosted.fake.add_delivery(
                repository, hook.id, 500, guid=f"old-{n}", delivered_at=now - timedelta(hours=100)
            )
        argv = ["deliveries", "recover", "--provider", "github", "--url", URL, "--since", "72h", "--json"]
        for repository in repositories:
            argv += ["--repo", repository]

        code, out, _ = run(capsys, *argv, "--dry-run")
        dry = json.loads(out)["results"]
        assert (
            code == 0
            and [r["missed"] for r in dry] == [0, 1, 2, 0, 1, 2]
            and all(r["recovered"] == 0 for r in dry)
        )

        code, out, _ = run(capsys, *argv)
        results = json.loads(out)["results"]
        assert code == 0 and [r["recovered"] for r in results] == [0, 1, 2, 0, 1, 2]
        redelivered = sorted(
            d.guid for r in repositories for d in hosted.fake.hooks_of(r)[0].deliveries if d.redelivery
        )
        assert redelivered == sorted(f"miss-{n}-{k}" for n in range(6) for k in range(n % 3))

        code, out, _ = run(capsys, *argv)
        assert code == 0 and all(r["missed"] == 0 for r in json.loads(out)["results"]), "nothing twice"


@pytest.mark.parametrize("kind", ["repository", "group"])
def test_recover_resends_exactly_the_gitlab_events_no_attempt_delivered(
    kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with hooked(Provider.GITLAB) as hosted:
        hosted.export(monkeypatch)
        hook = hosted.add_hook(URL, kind, flags=EVENTS[Provider.GITLAB])
        # The gateway was down (no answer), then failing (502), then fine; one failure is past the window.
        answers = iter([None, 502, 200, 500])
        hosted.fake.receiver = lambda url, headers, body: next(answers)
        lost = hosted.fake.deliver(hosted.where(kind), hook.id)
        failed = hosted.fake.deliver(hosted.where(kind), hook.id)
        hosted.fake.deliver(hosted.where(kind), hook.id)
        hosted.fake.deliver(hosted.where(kind), hook.id, when=datetime.now(UTC) - timedelta(days=4))
        hosted.fake.receiver = lambda url, headers, body: 200
        scope = ["--group", hosted.group] if kind == "group" else ["--repo", hosted.repository]
        argv = [
            "deliveries",
            "recover",
            "--provider",
            "gitlab",
            *scope,
            "--url",
            URL,
            "--since",
            "72h",
            "--json",
        ]

        code, out, _ = run(capsys, *argv, "--dry-run")
        [dry] = json.loads(out)["results"]
        assert code == 0 and (dry["looked_at"], dry["missed"], dry["recovered"]) == (3, 2, 0)
        assert len(hook.logs) == 4, "a dry run resends nothing"

        code, out, err = run(capsys, *argv)
        [result] = json.loads(out)["results"]
        assert code == 0, err
        assert (result["missed"], result["recovered"]) == (2, 2)
        keys = [log.request_headers["Idempotency-Key"] for log in hook.logs[4:]]
        assert sorted(keys) == sorted(log.request_headers["Idempotency-Key"] for log in (lost, failed)), (
            "each missed event resent once, under its own Idempotency-Key"
        )

        code, out, _ = run(capsys, *argv)
        assert code == 0 and json.loads(out)["results"][0]["missed"] == 0, "nothing twice"


def test_recover_reports_a_repository_without_the_hook(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with hooked(Provider.GITHUB) as hosted:
        hosted.export(monkeypatch)
        code, out, _ = run(
            capsys, "deliveries", "recover", "--provider", "github", "--repo", hosted.repository, "--url", URL
        )
        assert code == 1 and "no hook for" in out


def test_since_takes_minutes_hours_and_days() -> None:
    from gateway.cli.deliveries import since
    from gateway.cli.output import UsageError

    now = datetime(2026, 11, 1, tzinfo=UTC)
    assert since("90m", now) == now - timedelta(minutes=90)
    assert since("72h", now) == now - timedelta(hours=72)
    assert since("7d", now) == now - timedelta(days=7)
    with pytest.raises(UsageError):
        since("3 days", now)


def test_a_bad_setting_is_named_not_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("K8S_EE_GATEWAY_URL", "ftp://s3cr3t@nowhere")
    code, _, err = run(capsys, "envs", "list")
    assert code == 2 and "K8S_EE_GATEWAY_URL" in err and "s3cr3t" not in err
