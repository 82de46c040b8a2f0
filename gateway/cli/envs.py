"""`k8s-ee envs list|show|hibernate|wake|destroy|preserve|unpreserve`: environments, through the admin API.

An environment is named by its namespace (`web-pr-42`) or by its change, `provider:repository:number`
(`github:acme/web:42`). Acting on one stores and queues an event, as a webhook would; `--wait`
follows it until the worker is done.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.cli.output import (
    OK,
    Command,
    Progress,
    examples,
    fields,
    group,
    leaf,
    print_json,
    table,
)

ACTIONS = {
    "hibernate": "env.hibernate",
    "wake": "env.wake",
    "destroy": "env.destroy",
    "preserve": "comment.created",
    "unpreserve": "comment.created",
}
DESCRIPTIONS = {
    "preserve": "Keep an environment standing, even after its change closes, for --hours (the worker's "
    "default, 48, when left out; at most K8S_EE_MAX_PRESERVED_PER_REPOSITORY per repository). Sent as the "
    "operator's /preserve command, stored and queued like any event; the worker's rules decide.",
    "unpreserve": "Stop preserving an environment (sent as the operator's /unpreserve command): a closed "
    "change's environment then goes.",
}
# The states that mean a preserve or unpreserve went as asked: the environment as its change is.
STANDING = {"deployed", "hibernated", "preserved", "destroyed"}
# How long `--wait` waits, after the command's answer, for the reconcile it asked for.
COMMAND_GRACE = 30.0
STATES = ("queued", "deploying", "deployed", "failed", "destroyed", "hibernated", "preserved", "skipped")
PROVIDERS = ("github", "gitlab", "bitbucket-cloud", "bitbucket-server", "generic")


def _gateway_option(parser: Any) -> None:
    parser.add_argument(
        "--gateway", help="the gateway's URL (default K8S_EE_GATEWAY_URL); token: K8S_EE_ADMIN_TOKEN"
    )


def register(commands: Command) -> None:
    sub = group(
        commands, "envs", "list, inspect and act on environments", "Environments, through the admin API."
    )
    listing = leaf(
        sub,
        "list",
        "list environments, most recently updated first",
        "List environments, most recently updated first.",
        examples("k8s-ee envs list --state failed", "k8s-ee envs list --repository acme/web --json"),
    )
    listing.add_argument("--provider", choices=PROVIDERS)
    listing.add_argument("--repository", help="only this repository's")
    listing.add_argument("--state", choices=STATES)
    _gateway_option(listing)
    listing.set_defaults(run=run_list)

    show = leaf(
        sub,
        "show",
        "show one environment",
        "Show one environment: its state, preview URL, commit, last error and last report.",
        examples("k8s-ee envs show web-pr-42", "k8s-ee envs show github:acme/web:42 --json"),
    )
    show.add_argument("environment", help="a namespace, or provider:repository:number")
    _gateway_option(show)
    show.set_defaults(run=run_show)

    for action, event in ACTIONS.items():
        parser = leaf(
            sub,
            action,
            f"{action} an environment",
            DESCRIPTIONS.get(
                action,
                f"Ask the worker to {action} an environment: the request is stored and queued as an {event} "
                "event (listed in the delivery log), and the worker's policy decides.",
            ),
            examples(
                f"k8s-ee envs {action} web-pr-42 --wait" + (" --hours 24" if action == "preserve" else "")
            ),
        )
        parser.add_argument("environment", help="a namespace, or provider:repository:number")
        if action == "preserve":
            parser.add_argument("--hours", type=int, help="for how long (default: the worker's, 48)")
        parser.add_argument("--wait", action="store_true", help="follow it until the worker is done")
        parser.add_argument("--timeout", type=float, default=600.0, help="seconds --wait waits (default 600)")
        _gateway_option(parser)
        parser.set_defaults(run=run_action, action=action)


def _gateway(args: Any) -> Any:
    from gateway.cli.client import admin_gateway

    return admin_gateway(args.gateway)


def _row(env: dict[str, Any]) -> dict[str, Any]:
    return {
        **env,
        "change": f"{env.get('provider')}:{env.get('repository')}:{env.get('number')}",
        "head": (env.get("head_sha") or "")[:12] or None,
    }


def run_list(args: Any) -> int:
    with _gateway(args) as gateway:
        found = gateway.get(
            "/api/v1/environments", provider=args.provider, repository=args.repository, state=args.state
        )
    items = found.get("items") or []
    if args.json:
        print_json(items)
        return OK
    table(
        [_row(e) for e in items],
        [
            ("change", "change"),
            ("state", "state"),
            ("namespace", "namespace"),
            ("head", "head"),
            ("preview_url", "preview"),
            ("updated_at", "updated"),
        ],
        colour_by="state",
    )
    return OK


def run_show(args: Any) -> int:
    with _gateway(args) as gateway:
        env = gateway.environment(args.environment)
    if args.json:
        print_json(env)
        return OK
    report = env.get("report") or {}
    fields(
        [
            ("change", _row(env)["change"]),
            ("state", env.get("state")),
            ("namespace", env.get("namespace")),
            ("preview", env.get("preview_url")),
            ("head", env.get("head_sha")),
            ("branch", env.get("head_ref")),
            ("databases", env.get("databases")),
            ("preserved until", env.get("preserved_until")),
            ("note", env.get("note")),
            ("last error", env.get("last_error")),
            ("reconciles", env.get("reconciles")),
            ("last reconcile", env.get("last_reconcile")),
            ("updated", env.get("updated_at")),
            ("deployed", env.get("deployed_at")),
            ("report error", report.get("last_error")),
        ]
    )
    return OK


def run_action(args: Any) -> int:
    from gateway.cli.client import environment_path
    from gateway.cli.follow import FollowResult, follow, show

    with _gateway(args) as gateway:
        env = gateway.environment(args.environment)
        key = f"{env['provider']}:{env['repository']}:{env['number']}"
        sent_at = datetime.now(UTC)
        hours = getattr(args, "hours", None)
        body = {"hours": hours} if hours is not None else None
        _, answer = gateway.request("POST", f"{environment_path(key)}/{args.action}", json=body)
        if not args.wait:
            if args.json:
                print_json(answer)
            else:
                print(
                    f"{answer.get('status')}: {ACTIONS[args.action]} for {key} (delivery {answer.get('delivery_id')})"
                )
            return OK
        with Progress() as progress:
            outcome = follow(
                gateway,
                key,
                str(env["provider"]),
                str(answer["delivery_id"]),
                ACTIONS[args.action],
                sent_at,
                timeout=args.timeout,
                progress=progress,
                goal=STANDING if args.action in DESCRIPTIONS else None,
                reconcile_grace=COMMAND_GRACE if args.action in DESCRIPTIONS else 0.0,
            )
    if outcome.ok and args.action in DESCRIPTIONS:
        # The command may have been refused (the repository's limit): the environment says.
        preserved = bool((outcome.environment or {}).get("preserved_until"))
        if preserved != (args.action == "preserve"):
            why = (outcome.applied or {}).get("note") or "the worker did not take it"
            outcome = FollowResult(
                False, outcome.state, f"{key} is not {args.action}d: {why}", outcome.environment
            )
    return show(outcome, answer, args.json)
