"""The JSON Schema of `k8s-ee.yaml` and its field reference, both generated from the config model.

`docs/k8s-ee.schema.json` lets editors complete and check the file (YAML language servers read a
`# yaml-language-server: $schema=…` line); `docs/k8s-ee-yaml.md` is the field reference. Both come
from `handlers.config.RepoConfig` (its fields' descriptions, defaults and patterns), so they say
what the worker checks; a test keeps the committed files current:

    .venv/bin/python -m handlers.config_schema      # rewrites both
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from handlers.config import FILE_NAME, RepoConfig

DOCS = Path(__file__).resolve().parent.parent / "docs"
SCHEMA_FILE = "k8s-ee.schema.json"
REFERENCE_FILE = "k8s-ee-yaml.md"


def _strip_titles(node: Any) -> Any:
    # pydantic's generated titles ("Initsql") say nothing the property name does not.
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title" or not isinstance(v, str)}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def schema() -> dict[str, Any]:
    generated = _strip_titles(RepoConfig.model_json_schema(by_alias=True, mode="validation"))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": FILE_NAME,
        "description": "A repository's preview environment settings for k8s-ee gateway. "
        "Only projectId is required; unknown keys are errors.",
        **generated,
    }


def rendered_schema() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


# -- the reference -----------------------------------------------------------------------------------


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = {**defs[node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _accepts(node: dict[str, Any], defs: dict[str, Any]) -> str:
    node = _resolve(node, defs)
    if "anyOf" in node:
        parts = [_accepts(option, defs) for option in node["anyOf"] if option.get("type") != "null"]
        return " or ".join(dict.fromkeys(parts))
    if "enum" in node:
        return " or ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type")
    if kind == "string":
        return f"string matching `{node['pattern']}`" if "pattern" in node else "string"
    if kind == "integer":
        low, high = node.get("minimum"), node.get("maximum")
        if low is not None and high is not None:
            return f"whole number {low}-{high}"
        return f"whole number, at least {low}" if low is not None else "whole number"
    if kind == "boolean":
        return "`true` or `false`"
    if kind == "array":
        return f"list of {_plural(_accepts(node.get('items') or {}, defs))}"
    if kind == "object":
        if "properties" in node:
            return "mapping"
        keys = next(iter(node.get("patternProperties") or {}), None)
        values = _accepts(
            next(
                iter((node.get("patternProperties") or {}).values()), node.get("additionalProperties") or {}
            ),
            defs,
        )
        names = f"names matching `{keys}`" if keys else "names"
        return f"mapping of {names} to {_plural(values)}"
    return "any"


def _plural(kind: str) -> str:
    return {"string": "strings", "mapping": "mappings"}.get(kind, f"values, each a {kind}")


def _default(node: dict[str, Any]) -> str:
    if "default" not in node:
        return "required" if node.get("_required") else "-"
    value = node["default"]
    if value in ([], {}, None):
        return "-"
    if isinstance(value, dict):
        return "see below"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def _rows(node: dict[str, Any], defs: dict[str, Any], prefix: str) -> list[tuple[str, str, str, str]]:
    node = _resolve(node, defs)
    rows: list[tuple[str, str, str, str]] = []
    required = set(node.get("required") or ())
    for name, field in (node.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        shown = {**field, "_required": name in required}
        target = _resolve(field, defs)
        options = [_resolve(o, defs) for o in target.get("anyOf", [target])]
        nested = next((o for o in options if o.get("type") == "object" and "properties" in o), None)
        items = _resolve(target.get("items") or {}, defs) if target.get("type") == "array" else {}
        rows.append((f"`{path}`", _accepts(field, defs), _default(shown), field.get("description", "")))
        if nested is not None:
            rows += _rows(nested, defs, path)
        elif "properties" in items:
            rows += _rows(items, defs, f"{path}[]")
    return rows


INTRO = f"""# `{FILE_NAME}`: the field reference

Each repository says how its preview environment is built in a `{FILE_NAME}` at its root, read at
the pull request's head commit. Only `projectId` is required. Unknown keys are errors (with the
closest allowed key suggested), so a misspelt option never silently does nothing.

Check a file before pushing it, with the worker's own rules and the line of each problem:

```sh
k8s-ee config validate k8s-ee.yaml
# k8s-ee.yaml:7:5 databases.postgresql.storage: must match ^[0-9]+(Mi|Gi|Ti)$ (got '1GB')
k8s-ee config render k8s-ee.yaml --number 42      # the manifests the worker would apply
```

Editors complete and check the file with the JSON Schema [`{SCHEMA_FILE}`]({SCHEMA_FILE})
(`k8s-ee config schema` prints it). With the YAML language server (VS Code's YAML extension, and
others), save it beside the file and name it on the file's first line:

```sh
k8s-ee config schema > .k8s-ee.schema.json
```

```yaml
# yaml-language-server: $schema=.k8s-ee.schema.json
projectId: web
```

An example:

```yaml
projectId: web
app:
  port: 8080
  healthPath: /healthz
resources:
  requests: {{cpu: 100m, memory: 256Mi}}
env:
  FEATURE_FLAGS: "beta,search"
databases:
  postgresql:
    version: "16"
    storage: 2Gi
    bootstrap:
      postInitApplicationSQL: ["CREATE EXTENSION IF NOT EXISTS pgcrypto"]
  redis: true
```

## Fields

This table is generated from the model the worker validates with
(`.venv/bin/python -m handlers.config_schema`); a test keeps it current.

"""

OUTRO = """
## Rules across fields

- `resources.requests.*` must not exceed the matching `resources.limits.*`, and each value must fit the
  namespace's LimitRange (per container at least 10m CPU / 32Mi memory, at most 1 CPU / 1Gi).
- Each `envFrom[]` entry has exactly one of `secretRef` and `configMapRef`.
- `databases.<engine>: true` is short for `{}` (on, with the defaults); `false` or leaving it out turns it off.
- Numbers are taken where a string is wanted only when whole (`cpu: 1`, `version: 16`); quote the others
  (`version: "11.10"`: unquoted it would read as 11.1).
"""


def reference() -> str:
    generated = schema()
    defs = generated.get("$defs", {})
    lines = ["| field | accepts | default | what it does |", "|---|---|---|---|"]
    for path, accepts, default, description in _rows(generated, defs, ""):
        text = " ".join(description.split()).replace("|", "\\|")
        lines.append(f"| {path} | {accepts.replace('|', chr(92) + '|')} | {default} | {text} |")
    return INTRO + "\n".join(lines) + "\n" + OUTRO


def write(docs: Path = DOCS) -> None:
    (docs / SCHEMA_FILE).write_text(rendered_schema())
    (docs / REFERENCE_FILE).write_text(reference())


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS)
