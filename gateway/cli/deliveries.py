"""`k8s-ee deliveries list|show|replay|explain|recover`: the delivery log, through the admin API, and
recovering what the gateway missed, through the hosts (gateway/cli/recover.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from gateway.cli.output import (
    FAILED,
    OK,
    CliError,
    Command,
    Progress,
    UsageError,
    examples,
    fields,
    group,
    leaf,
    paint,
    print_json,
    table,
)
from gateway.cli.scopes import add_scope_options

PROVIDERS = ("github", "gitlab", "bitbucket-cloud", "bitbucket-server", "generic")
VERDICTS = ("accepted", "duplicate", "ignored", "pong", "rejected")
_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _gateway_option(parser: Any) -> None:
    parser.add_argument(
        "--gateway", help="the gateway's URL (default K8S_EE_GATEWAY_URL); token: K8S_EE_ADMIN_TOKEN"
    )


def register(commands: Command) -> None:
    sub = group(commands, "deliveries", "inspect, replay and recover webhook deliveries", "The delivery log.")
    listing = leaf(
        sub,
        "list",
        "list deliveries, newest first",
        "List the delivery log, newest first: every attempt with its verdict.",
        examples(
            "k8s-ee deliveries list --verdict rejected",
            "k8s-ee deliveries list --repository acme/web --limit 200 --json",
        ),
    )
    listing.add_argument("--provider", choices=PROVIDERS)
    listing.add_argument("--repository", help="only this repository's")
    listing.add_argument("--verdict", choices=VERDICTS)
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    _gateway_option(listing)
    listing.set_defaults(run=run_list)

    for name, help_text, description, example in (
        (
            "show",
            "show one delivery's attempts",
            "Show every attempt of one delivery, what the worker did with it, and (--body) the stored request.",
            "k8s-ee deliveries show 72d3162e-cc78-11e3-81ab-4c9367dc0958 --body",
        ),
        (
            "explain",
            "say in words what became of one delivery",
            "Say why each attempt was accepted, ignored or refused (and what to change), what the worker did, "
            "and where the environment is now.",
            "k8s-ee deliveries explain 72d3162e-cc78-11e3-81ab-4c9367dc0958",
        ),
        (
            "replay",
            "queue a stored accepted delivery again",
            "Queue a stored accepted delivery's event again; the worker's policy decides what it means now (a late "
            "open after a close does not reopen). Logged as a new attempt.",
            "k8s-ee deliveries replay 72d3162e-cc78-11e3-81ab-4c9367dc0958 --provider github",
        ),
    ):
        parser = leaf(sub, name, help_text, description, examples(example))
        parser.add_argument("delivery_id")
        parser.add_argument("--provider", choices=PROVIDERS, help="when two providers sent the same id")
        if name == "show":
            parser.add_argument("--body", action="store_true", help="print the stored headers and body too")
        _gateway_option(parser)
        parser.set_defaults(run={"show": run_show, "explain": run_explain, "replay": run_replay}[name])

    recover = leaf(
        sub,
        "recover",
        "redeliver what the gateway missed (GitHub, GitLab) or sync open pull requests (Bitbucket)",
        "GitHub and GitLab: redeliver, from each hook's delivery log, the deliveries no attempt delivered since "
        "--since (the gateway answers any that arrived after all `duplicate`). Bitbucket, which has no delivery "
        "log: read the open pull requests and tell the gateway (admin API) those it has out of date.",
        examples(
            "k8s-ee deliveries recover --provider github --repos-file repos.txt --since 72h --gateway https://gw.example.com",
            "k8s-ee deliveries recover --provider gitlab --group acme --since 7d --dry-run --gateway https://gw.example.com",
            "k8s-ee deliveries recover --provider bitbucket-cloud --repo acme/web --since 24h --gateway https://gw.example.com",
        ),
    )
    add_scope_options(recover)
    recover.add_argument("--since", default="72h", help="how far back: 90m, 72h, 7d (default 72h)")
    recover.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    recover.set_defaults(run=run_recover)


def _gateway(args: Any) -> Any:
    from gateway.cli.client import admin_gateway

    return admin_gateway(args.gateway)


def _delivery(gateway: Any, args: Any) -> dict[str, Any]:
    found = gateway.find(f"/api/v1/deliveries/{quote(args.delivery_id, safe='')}", provider=args.provider)
    if found is None:
        raise CliError(
            f"no delivery {args.delivery_id} in the gateway's log (it keeps them for its retention period)"
        )
    return dict(found)


def run_list(args: Any) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be 1 or more")
    with _gateway(args) as gateway:
        items = gateway.pages(
            "/api/v1/deliveries",
            args.limit,
            provider=args.provider,
            repository=args.repository,
            verdict=args.verdict,
        )
    if args.json:
        print_json(items)
        return OK
    table(
        items,
        [
            ("received_at", "received"),
            ("provider", "provider"),
            ("delivery_id", "delivery"),
            ("attempt", "#"),
            ("verdict", "verdict"),
            ("status", "status"),
            ("event_type", "event"),
            ("repository", "repository"),
            ("reason", "reason"),
        ],
        colour_by="verdict",
    )
    return OK


def run_show(args: Any) -> int:
    with _gateway(args) as gateway:
        delivery = _delivery(gateway, args)
    if args.json:
        print_json(delivery)
        return OK
    for attempt in delivery.get("attempts") or []:
        event = attempt.get("event") or {}
        applied = attempt.get("applied") or {}
        fields(
            [
                ("attempt", attempt.get("attempt")),
                ("provider", attempt.get("provider")),
                ("received", attempt.get("received_at")),
                ("verdict", attempt.get("verdict")),
                ("status", attempt.get("status")),
                ("reason", attempt.get("reason")),
                ("event", attempt.get("event_type")),
                (
                    "change",
                    f"{event.get('repository')}#{event.get('number')}"
                    if event
                    else attempt.get("repository"),
                ),
                ("head", event.get("head_sha")),
                ("applied by", applied.get("reconcile") or applied.get("note")),
                ("left it", applied.get("state")),
            ]
        )
        request = attempt.get("request")
        if args.body and request:
            print("headers:")
            for name, value in sorted((request.get("headers") or {}).items()):
                print(f"  {name}: {value}")
            print("body:")
            print(request.get("body"))
        print()
    return OK


def run_explain(args: Any) -> int:
    from gateway.cli.explain import explain
    from gateway.endpoints import endpoint_for
    from providers.events import Provider

    with _gateway(args) as gateway:
        delivery = _delivery(gateway, args)
        attempts = delivery.get("attempts") or []
        event = next((a.get("event") for a in attempts if a.get("event")), None)
        environment = None
        if event and event.get("number") is not None:
            from gateway.cli.client import environment_path

            environment = gateway.find(
                environment_path(f"{event['provider']}:{event['repository']}:{event['number']}")
            )
    provider = Provider(attempts[0]["provider"]) if attempts else Provider.GITHUB
    secrets = endpoint_for(provider).secret_names()
    lines = explain(delivery, environment, secrets)
    if args.json:
        print_json({"delivery": delivery, "environment": environment, "explanation": lines})
    else:
        print("\n".join(lines))
    return OK


def run_replay(args: Any) -> int:
    with _gateway(args) as gateway:
        path = f"/api/v1/deliveries/{quote(args.delivery_id, safe='')}/replay"
        _, answer = gateway.request("POST", path, params={"provider": args.provider})
    if args.json:
        print_json(answer)
    else:
        event = answer.get("event") or {}
        print(
            f"queued again as attempt {answer.get('attempt')}: {event.get('type')} of "
            f"{event.get('repository')}#{event.get('number')}"
        )
    return OK


def since(text: str, now: datetime | None = None) -> datetime:
    found = _SINCE.fullmatch(text.strip())
    if not found:
        raise UsageError(f"--since must be a number and s, m, h or d: 90m, 72h, 7d (got {text!r})")
    amount, unit = int(found.group(1)), found.group(2)
    return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})


def run_recover(args: Any) -> int:
    from gateway.cli import recover
    from gateway.cli.scopes import each, hook_host, hook_url, scopes
    from gateway.cli.settings import load_settings
    from providers.hosts.base import HostError
    from providers.hosts.hooks import ChangeLister, DeliveryLog

    cutoff = since(args.since)
    settings = load_settings()
    chosen = scopes(args)
    host = hook_host(args.provider)
    gateway = None
    try:
        if isinstance(host, DeliveryLog):
            url = hook_url(args, settings)

            def work(scope: Any) -> recover.Recovered:
                return recover.from_log(host, scope, url, cutoff, args.dry_run)

        else:
            assert isinstance(host, ChangeLister)
            if any(scope.kind != "repository" for scope in chosen):
                raise UsageError(
                    "Bitbucket has no delivery log: recovery reads each repository's pull requests; pass --repo"
                )
            gateway = _gateway(args)

            def work(scope: Any) -> recover.Recovered:
                return recover.from_open_changes(
                    host, gateway, args.provider, scope.name, cutoff, args.dry_run
                )

        def guarded(scope: Any) -> recover.Recovered:
            try:
                return work(scope)
            except (HostError, CliError) as exc:
                return recover.Recovered(scope=str(scope), errors=[str(exc)])

        with Progress() as progress:
            reports = each(
                chosen, guarded, concurrency=args.concurrency, progress=progress, what="recovering"
            )
    finally:
        host.close()
        if gateway is not None:
            gateway.__exit__()
    failed = any(r.errors for r in reports)
    if args.json:
        print_json(
            {
                "since": cutoff.isoformat(),
                "dry_run": args.dry_run,
                "results": [r.model_dump() for r in reports],
            }
        )
        return FAILED if failed else OK
    table(
        [r.model_dump() for r in reports],
        [
            ("scope", "scope"),
            ("looked_at", "looked at"),
            ("missed", "missed"),
            ("recovered", "recovered"),
            ("errors", "errors"),
        ],
    )
    for report in reports:
        for line in report.done:
            print(f"{report.scope}: {line}")
    total = sum(r.recovered for r in reports)
    verb = "would recover" if args.dry_run else "recovered"
    print(
        paint(
            f"{verb} {total if not args.dry_run else sum(r.missed for r in reports)} in {len(reports)} scope(s) since {cutoff:%Y-%m-%d %H:%M} UTC",
            "red" if failed else "green",
        )
    )
    return FAILED if failed else OK
