"""Every K8S_EE_* variable is a setting or a named exception; the chart's `config` takes exactly the
processes' settings the chart does not set itself."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gateway.cli.variables import (
    CHART,
    ELSEWHERE,
    chart_sets,
    config_keys,
    declared,
    process_variables,
    refuse_unknown,
    rendered_schema,
    unknown,
)
from providers.settings import SettingsError

ROOT = Path(__file__).resolve().parents[2]
# How code outside the settings sections reads a variable: Python's os.environ, a shell's $NAME.
DIRECT_READ = re.compile(
    r"""(?:environ\.get\(|environ\[|getenv\()["'](K8S_EE_[A-Z0-9_]+)["']|\$\{?(K8S_EE_[A-Z0-9_]+)"""
)


def test_a_misspelt_setting_is_refused_with_the_nearest_name() -> None:
    with pytest.raises(SettingsError) as refused:
        refuse_unknown({"K8S_EE_PREVIEW_DOMAN": "preview.example.com", "K8S_EE_TLL": "7d", "HOME": "/root"})
    message = str(refused.value)
    assert "K8S_EE_PREVIEW_DOMAN (did you mean K8S_EE_PREVIEW_DOMAIN?)" in message
    assert "K8S_EE_TLL (did you mean K8S_EE_TTL?)" in message
    assert "preview.example.com" not in message and "HOME" not in message


def test_a_name_like_no_setting_is_refused_without_a_guess() -> None:
    assert unknown({"K8S_EE_XYZZY": "1"}) == ["K8S_EE_XYZZY (see the README's settings)"]


def test_every_setting_and_every_named_exception_is_accepted_in_any_case() -> None:
    environ = {name: "x" for name in declared() | set(ELSEWHERE)}
    environ["k8s_ee_preview_domain"] = "x"  # pydantic-settings reads names whatever their case
    refuse_unknown(environ)


def test_the_exceptions_are_read_directly_and_are_no_settings() -> None:
    """What the scripts and tests read from the environment themselves is listed; nothing listed is stale."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    read: set[str] = set()
    for name in files.stdout.split():
        path = ROOT / name
        if path.suffix in (".py", ".sh", "") and path.is_file() and not path.is_symlink():
            for match in DIRECT_READ.finditer(path.read_text(errors="replace")):
                read.add(match.group(1) or match.group(2))
    assert read - declared() == set(ELSEWHERE)
    assert not set(ELSEWHERE) & declared()


def test_the_chart_schema_lists_exactly_the_config_keys() -> None:
    committed = (CHART / "values.schema.json").read_text()
    assert committed == rendered_schema(), (
        "the chart's values.schema.json is stale: .venv/bin/python -m gateway.cli.variables"
    )
    keys = set(config_keys())
    assert {"PREVIEW_DOMAIN", "LOG_LEVEL", "MAX_JOBS", "TTL"} <= keys
    # What the chart sets from its other values (listen address, Redis, credentials) is not a key.
    assert not {f"K8S_EE_{key}" for key in keys} & chart_sets()
    assert {"K8S_EE_PORT", "K8S_EE_REDIS_URL", "K8S_EE_GITHUB_TOKEN"} <= chart_sets()
    # The command line's own setting is accepted by the processes, but is nothing to a pod.
    assert "GATEWAY_URL" not in keys and "K8S_EE_GATEWAY_URL" in declared() - process_variables()
