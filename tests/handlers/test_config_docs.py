"""The JSON Schema and field reference of k8s-ee.yaml: generated from the model, committed, current, and agreeing
with the worker's rules on what a file may hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from handlers.config import ConfigError, load_config
from handlers.config_schema import REFERENCE_FILE, SCHEMA_FILE, reference, rendered_schema, schema

DOCS = Path(__file__).resolve().parents[2] / "docs"
REGENERATE = ".venv/bin/python -m handlers.config_schema"

VALID = [
    "projectId: web\n",
    "projectId: web\ndatabases:\n  postgresql: true\n  redis: {version: 7}\n",
    "projectId: a1\nresources:\n  requests: {cpu: 1, memory: 256Mi}\n  limits: {cpu: '1', memory: 1Gi}\n",
    "projectId: web\nenv:\n  A_B: x\nenvFrom:\n  - secretRef: {name: creds}\nwritableDirs: [/data]\n",
    "projectId: web\ndatabases:\n  postgresql:\n    bootstrap:\n      initSQL: CREATE ROLE r\n"
    "      postInitApplicationSQL: [SELECT 1]\n",
    "projectId: web\ntrigger: on-demand\ningress: {enabled: false, annotations: {a.b/c: d}}\n"
    "metrics: {enabled: true, interval: 1m}\n",
]
# Each breaks a rule the schema can say (the cross-field ones, like requests within limits, it cannot).
INVALID = [
    "app: {port: 80}\n",
    "projectId: Web\n",
    "projectId: web\nimage: {repo: x}\n",
    "projectId: web\napp: {port: 70000}\n",
    "projectId: web\ndatabases:\n  postgresql: {storage: 1GB}\n",
    "projectId: web\ndatabases:\n  oracle: true\n",
    "projectId: web\nenv:\n  1BAD: x\n",
    "projectId: web\nenv:\n  OK: 3\n",
    "projectId: web\ntrigger: sometimes\n",
    "projectId: web\nwritableDirs: [relative]\n",
    "projectId: web\nmetrics: {interval: 5x}\n",
]


def test_the_committed_schema_and_reference_are_current() -> None:
    assert (DOCS / SCHEMA_FILE).read_text() == rendered_schema(), f"docs/{SCHEMA_FILE} is stale: {REGENERATE}"
    assert (DOCS / REFERENCE_FILE).read_text() == reference(), f"docs/{REFERENCE_FILE} is stale: {REGENERATE}"


def _schema_errors(text: str) -> list[Any]:
    return list(jsonschema.Draft202012Validator(schema()).iter_errors(yaml.safe_load(text)))


@pytest.mark.parametrize("text", VALID)
def test_what_the_worker_accepts_the_schema_accepts(text: str) -> None:
    load_config(text)
    assert _schema_errors(text) == []


@pytest.mark.parametrize("text", INVALID)
def test_what_the_schema_refuses_the_worker_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        load_config(text)
    assert _schema_errors(text), "an editor would not flag it"


def test_the_reference_names_every_field_the_schema_has() -> None:
    generated = schema()
    defs = generated["$defs"]
    text = reference()

    def walk(node: dict[str, Any], prefix: str) -> None:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[1]]
        for option in node.get("anyOf", []):
            walk(option, prefix)
        for name, field in (node.get("properties") or {}).items():
            path = f"{prefix}.{name}" if prefix else name
            assert f"`{path}`" in text, path
            walk(field, path)
        if "items" in node and isinstance(node["items"], dict):
            walk(node["items"], f"{prefix}[]")

    walk(generated, "")
