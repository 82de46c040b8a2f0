"""Every `K8S_EE_*` variable k8s-ee reads: `serve` and `worker` refuse to start on any other.

The settings sections ignore variables they do not declare, so without this a misspelt setting
(`K8S_EE_PREVIEW_DOMAN`) would start a process on the default, silently. Each process knows every
section's variables, not only its own: the chart gives its `config` to both processes, and one
shell's environment serves `scripts/run` and the command line alike.

The chart's `config` takes the processes' settings without the prefix, except those the chart's
templates set themselves (listen addresses, Redis, the cluster back-end, the credentials from the
Secret). `values.schema.json` lists exactly those keys: `python -m gateway.cli.variables` writes
them, and tests/gateway/test_variables.py keeps the schema and the settings in agreement.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
import typing
from collections.abc import Mapping
from pathlib import Path

from pydantic_settings import BaseSettings

from gateway.cli.settings import CliSettings
from gateway.settings import GatewaySettings, WebSettings
from handlers.settings import WorkerConfig
from providers.hosts.settings import HostSettings
from providers.settings import ENV_PREFIX, SettingsError, env_name

# Read by the development scripts and the tests, never by a process: allowed, yet not settings.
ELSEWHERE: dict[str, str] = {
    "K8S_EE_PYTHON": "scripts/bootstrap.sh: the Python that makes .venv",
    "K8S_EE_REDIS_SERVER": "the tests and benchmarks: the redis-server binary they start",
    "K8S_EE_TEST_KUBECONFIG": "tests/e2e/test_cluster_real.py: a real cluster to test against",
    "K8S_EE_KUBE_REQUEST_LOG": "the tests: where the test API servers log requests (the RBAC check)",
    "K8S_EE_SHARED_DIR": "the tests: the folder holding shared/crds, when not beside the checkout",
}

CHART = Path(__file__).resolve().parents[2] / "charts" / "k8s-ee-gateway"
# The chart sets this one from `config.LOG_LEVEL` (with its default): it stays a `config` key.
CHART_DEFAULTED = {"K8S_EE_LOG_LEVEL"}


def process_sections() -> list[type[BaseSettings]]:
    """The sections the gateway and the worker read (each section once)."""
    found: list[type[BaseSettings]] = [WebSettings, HostSettings]
    for config in (GatewaySettings, WorkerConfig):
        for section in typing.get_type_hints(config).values():
            # The gateway's `web` is typed as WebBase; WebSettings (above) adds the endpoints' fields.
            if not issubclass(WebSettings, section) and section not in found:
                found.append(section)
    return found


def process_variables() -> set[str]:
    return {env_name(field) for section in process_sections() for field in section.model_fields}


def declared() -> set[str]:
    """Every variable a section declares: the processes', and the command line's."""
    return process_variables() | {env_name(field) for field in CliSettings.model_fields}


def unknown(environ: Mapping[str, str]) -> list[str]:
    """Each `K8S_EE_*` variable nothing reads, with the nearest known name; never a value."""
    known = declared()
    stems = sorted(name.removeprefix(ENV_PREFIX) for name in known)
    found = []
    for name in sorted(environ):
        # pydantic-settings matches names whatever their case: so does this check.
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in ELSEWHERE:
            continue
        # Compared without the prefix, which every name shares and would make any two look alike.
        near = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), stems, n=1)
        found.append(
            f"{name} (did you mean {ENV_PREFIX}{near[0]}?)" if near else f"{name} (see the README's settings)"
        )
    return found


def refuse_unknown(environ: Mapping[str, str]) -> None:
    found = unknown(environ)
    if found:
        raise SettingsError("unknown setting: " + "; ".join(found))


def chart_sets(chart: Path = CHART) -> set[str]:
    """The variables the chart's templates set from its other values (they spell each in full)."""
    text = "".join(path.read_text() for path in sorted((chart / "templates").iterdir()))
    return set(re.findall(r"K8S_EE_[A-Z0-9_]*[A-Z0-9]", text)) - CHART_DEFAULTED


def config_keys(chart: Path = CHART) -> list[str]:
    """What the chart's `config` takes: the processes' settings it does not set itself."""
    return sorted(name.removeprefix(ENV_PREFIX) for name in process_variables() - chart_sets(chart))


def rendered_schema(chart: Path = CHART) -> str:
    """values.schema.json with `config` closed to `config_keys`."""
    schema = json.loads((chart / "values.schema.json").read_text())
    schema["properties"]["config"]["propertyNames"] = {"enum": config_keys(chart)}
    return json.dumps(schema, indent=2) + "\n"


if __name__ == "__main__":
    chart = Path(sys.argv[1]) if len(sys.argv) > 1 else CHART
    (chart / "values.schema.json").write_text(rendered_schema(chart))
