"""`k8s-ee config validate|render|schema`: a repository's `k8s-ee.yaml`, checked and rendered as the worker would.

`validate` applies the worker's rules (handlers/config.py) and names each problem's line and column.
`render` prints the manifests the worker would apply for a change (handlers/render, pure), with the
render settings from the same K8S_EE_* variables the worker reads; passwords are generated afresh,
as on a first deploy. `schema` prints the JSON Schema editors use (docs/k8s-ee.schema.json).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.output import (
    FAILED,
    OK,
    CliError,
    Command,
    UsageError,
    examples,
    group,
    leaf,
    paint,
    print_json,
)

DEFAULT_PATH = Path("k8s-ee.yaml")


def register(commands: Command) -> None:
    sub = group(
        commands, "config", "check and render a repository's k8s-ee.yaml", "Check and render a k8s-ee.yaml."
    )
    validate = leaf(
        sub,
        "validate",
        "check a k8s-ee.yaml with the worker's rules",
        "Check a k8s-ee.yaml with the worker's rules; each problem is named with its line and column. "
        "Exit 1 when there is one.",
        examples("k8s-ee config validate", "k8s-ee config validate deploy/k8s-ee.yaml --json"),
    )
    validate.add_argument(
        "path", nargs="?", type=Path, default=DEFAULT_PATH, help="the file (default ./k8s-ee.yaml)"
    )
    validate.set_defaults(run=run_validate)

    render = leaf(
        sub,
        "render",
        "print the manifests the worker would apply",
        "Print the manifests the worker would apply for one change, in apply order (YAML documents; "
        "--json for a list). Cluster settings come from the worker's K8S_EE_* variables (preview domain, "
        "ingress class, …). Generated passwords are fresh ones, as on a first deploy.",
        examples(
            "k8s-ee config render --number 42",
            "k8s-ee config render k8s-ee.yaml --number 42 --repository acme/web --sha 0a1b2c3 --branch feature/x",
        ),
    )
    render.add_argument(
        "path", nargs="?", type=Path, default=DEFAULT_PATH, help="the file (default ./k8s-ee.yaml)"
    )
    render.add_argument("--number", type=int, required=True, help="the pull or merge request number")
    render.add_argument("--repository", default="owner/repo", help="the repository (default owner/repo)")
    render.add_argument("--provider", default="github", help="the code host (default github)")
    render.add_argument("--sha", default="0" * 40, help="the head commit (default 000…)")
    render.add_argument("--branch", default="main", help="the head branch (default main)")
    render.add_argument("--image", help="the image the CI built (overrides the derived one)")
    render.set_defaults(run=run_render)

    schema = leaf(
        sub,
        "schema",
        "print the JSON Schema of k8s-ee.yaml (for editors)",
        "Print the JSON Schema of k8s-ee.yaml, generated from the worker's model (docs/k8s-ee.schema.json).",
        examples("k8s-ee config schema > .k8s-ee.schema.json"),
    )
    schema.set_defaults(run=run_schema)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def located_problems(text: str, file: str) -> list[str]:
    """The file's problems as `file:line:column path: message` lines (none when it is valid)."""
    from handlers.config_positions import check

    return [problem.text(file) for problem in check(text)]


def run_validate(args: Any) -> int:
    from handlers.config import load_config
    from handlers.config_positions import check

    text = _read(args.path)
    problems = check(text)
    if args.json:
        print_json(
            {"file": str(args.path), "valid": not problems, "problems": [p.model_dump() for p in problems]}
        )
        return FAILED if problems else OK
    if problems:
        for problem in problems:
            print(paint(problem.text(str(args.path)), "red"))
        return FAILED
    config = load_config(text)
    databases = ", ".join(config.database_names()) or "no databases"
    print(paint(f"{args.path}: valid", "green") + f" (projectId {config.project_id}, {databases})")
    return OK


def run_render(args: Any) -> int:
    import yaml
    from pydantic import ValidationError

    from handlers.config import load_config
    from handlers.config_positions import check
    from handlers.render import RenderTarget, new_password, render_environment, required_passwords
    from handlers.render.models import RenderSettings
    from providers.settings import load_sections

    text = _read(args.path)
    problems = check(text)
    if problems:
        raise CliError(f"{args.path} is not valid:\n" + "\n".join(p.text(str(args.path)) for p in problems))
    config = load_config(text)
    settings = load_sections({"render": RenderSettings}, {})["render"]
    assert isinstance(settings, RenderSettings)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        target = RenderTarget(
            provider=args.provider,
            repository=args.repository,
            number=args.number,
            head_sha=args.sha,
            head_ref=args.branch,
            image=args.image,
            created_at=now,
            now=now,
        )
    except ValidationError as exc:
        from providers.payload import describe

        raise UsageError(describe(exc)) from None
    passwords = {name: new_password() for name in required_passwords(config)}
    try:
        manifests = render_environment(target, config, settings, passwords)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print_json(manifests)
    else:
        print(
            f"# {len(manifests)} objects for {args.provider} {args.repository}#{args.number} at {args.sha[:12]}"
        )
        print(yaml.safe_dump_all(manifests, sort_keys=False, explicit_start=True), end="")
    return OK


def run_schema(args: Any) -> int:
    from handlers.config_schema import rendered_schema

    print(rendered_schema(), end="")
    return OK
