"""`k8s-ee hooks ensure|list|delete|test`: the gateway's webhook on each host, through the hosts' SDKs.

`ensure` reads every page of hooks, matches on the normalised URL, updates the match (events,
secret, active) and creates one only when none matches; duplicates are removed, and ten runs at
once leave one hook (providers/hosts/hooks.py says how). A hook GitLab disabled is re-enabled, and
the output says it was. Secrets are sent, never printed. The host credentials are the worker's
(K8S_EE_GITHUB_TOKEN, …); managing hooks needs admin rights on the repository or group.
"""

from __future__ import annotations

import contextlib
from typing import Any

from gateway.cli.output import (
    FAILED,
    OK,
    CliError,
    Command,
    Progress,
    examples,
    group,
    leaf,
    print_json,
    table,
)
from gateway.cli.scopes import add_scope_options, each, hook_host, hook_spec, hook_url, scopes

EXAMPLES = {
    "ensure": examples(
        "k8s-ee hooks ensure --provider github --repo acme/web --url https://gw.example.com/webhooks/github",
        "k8s-ee hooks ensure --provider gitlab --group acme --gateway https://gw.example.com --dry-run",
        "k8s-ee hooks ensure --provider github --app --gateway https://gw.example.com",
    ),
    "list": examples("k8s-ee hooks list --provider bitbucket-cloud --repo acme/web"),
    "delete": examples(
        "k8s-ee hooks delete --provider bitbucket-server --repo PROJ/web --url https://gw.example.com/webhooks/bitbucket"
    ),
    "test": examples("k8s-ee hooks test --provider gitlab --repo acme/web --gateway https://gw.example.com"),
}


def register(commands: Command) -> None:
    sub = group(
        commands,
        "hooks",
        "register and check the gateway's webhook on the code hosts",
        "Webhooks on the code hosts.",
    )
    ensure = leaf(
        sub,
        "ensure",
        "make sure exactly one hook sends the gateway what it needs",
        "Create or update the gateway's hook: every page of hooks is read, the one with the same URL is updated "
        "(events, secret, active), duplicates are removed, and one is created only when none matches. A hook "
        "the host disabled is re-enabled. Safe to run any number of times, at once too.",
        EXAMPLES["ensure"],
    )
    add_scope_options(ensure, secrets=True)
    ensure.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    ensure.set_defaults(run=run_ensure)

    listing = leaf(
        sub,
        "list",
        "list the hooks",
        "List the hooks; those with the gateway's URL are marked.",
        EXAMPLES["list"],
    )
    add_scope_options(listing)
    listing.set_defaults(run=run_list)

    delete = leaf(
        sub,
        "delete",
        "remove the gateway's hooks",
        "Remove every hook with the gateway's URL (its duplicates too).",
        EXAMPLES["delete"],
    )
    add_scope_options(delete)
    delete.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    delete.set_defaults(run=run_delete)

    test = leaf(
        sub,
        "test",
        "have the host send the gateway a test delivery",
        "Have the host send a test delivery to the gateway's hook: GitHub a ping, GitLab its test push event "
        "(which also re-enables a disabled hook), Data Center its connection test. Bitbucket Cloud has no test API.",
        EXAMPLES["test"],
    )
    add_scope_options(test)
    test.set_defaults(run=run_test)


def _setup(args: Any, *, spec: bool = False) -> tuple[Any, list[Any], str, Any]:
    from gateway.cli.settings import load_settings

    settings = load_settings()
    chosen = scopes(args)
    url = hook_url(args, settings)
    wanted = hook_spec(args, settings, url) if spec else None
    return hook_host(args.provider), chosen, url, wanted


def _guard(work: Any) -> Any:
    """Per scope: a host error is that scope's result, not the end of the run."""
    from providers.hosts.base import HostError

    def run(scope: Any) -> Any:
        try:
            return work(scope)
        except HostError as exc:
            return exc

    return run


def _failed(results: list[Any]) -> list[str]:
    from providers.hosts.base import HostError

    return [str(r) for r in results if isinstance(r, HostError)]


def tell_resync(args: Any, repositories: list[str], *, registered: bool) -> tuple[list[str], str | None]:
    """Register (or take out) `repositories` with the gateway's resync through its admin API, so
    the resync reads them before they have an environment. The repositories done, and a warning
    when the gateway could not be told (the hooks are in place all the same)."""
    from urllib.parse import quote

    from gateway.cli.client import admin_gateway

    if not repositories:
        return [], None
    done: list[str] = []
    try:
        with admin_gateway(args.gateway) as gateway:
            for repository in repositories:
                path = f"/api/v1/resync-repositories/{quote(args.provider)}/{quote(repository, safe='/')}"
                gateway.request("PUT" if registered else "DELETE", path)
                done.append(repository)
    except CliError as exc:
        left = [r for r in repositories if r not in done]
        if registered:
            hint = ", ".join(f"{args.provider}:{r}" for r in left)
            return done, (
                f"the gateway's resync was not told of {len(left)} repositories ({exc}); until it is "
                f"(run this again with --gateway and K8S_EE_ADMIN_TOKEN), list them in "
                f"K8S_EE_RESYNC_REPOSITORIES: {hint}"
            )
        return (
            done,
            f"the gateway's resync was not told that {len(left)} repositories lost their hook ({exc})",
        )
    return done, None


def run_ensure(args: Any) -> int:
    from providers.hosts.hooks import ensure

    host, chosen, url, spec = _setup(args, spec=True)
    with contextlib.closing(host), Progress() as progress:
        results = each(
            chosen,
            _guard(lambda scope: ensure(host, scope, spec, dry_run=args.dry_run)),
            concurrency=args.concurrency,
            progress=progress,
            what="ensuring hooks",
        )
    errors = _failed(results)
    done = [r for r in results if not isinstance(r, Exception)]
    # Each repository with a working hook is one the resync reads from now on (a group's or the
    # App's hook names no repository: those stay in K8S_EE_RESYNC_REPOSITORIES, or get found
    # through their environments).
    hooked = [
        scope.name
        for scope, r in zip(chosen, results, strict=True)
        if scope.kind == "repository" and not isinstance(r, Exception) and r.ok and r.hook is not None
    ]
    told, warning = ([], None) if args.dry_run else tell_resync(args, hooked, registered=True)
    if args.json:
        print_json(
            {
                "url": url,
                "results": [r.model_dump(mode="json") for r in done],
                "errors": errors,
                "resync": {"registered": told, "warning": warning},
            }
        )
    else:
        table(
            [
                {
                    "scope": r.scope,
                    "action": r.action,
                    "hook": r.hook.id if r.hook else None,
                    "changes": r.changes,
                    "removed": [f"duplicate {i}" for i in r.removed],
                    "notes": r.notes,
                }
                for r in done
            ],
            [
                ("scope", "scope"),
                ("action", "action"),
                ("hook", "hook"),
                ("changes", "changes"),
                ("removed", "removed"),
                ("notes", "notes"),
            ],
            colour_by="action",
        )
        for error in errors:
            print(f"error: {error}")
        if told:
            print(f"the gateway's resync reads {len(told)} repositories from now on, environments or not")
        if warning:
            print(f"warning: {warning}")
    return FAILED if errors or any(not r.ok for r in done) else OK


def run_list(args: Any) -> int:
    from providers.hosts.hooks import same_url

    host, chosen, url, _ = _setup(args)
    with contextlib.closing(host), Progress() as progress:
        results = each(
            chosen,
            _guard(host.list_hooks),
            concurrency=args.concurrency,
            progress=progress,
            what="listing hooks",
        )
    rows = []
    for scope, found in zip(chosen, results, strict=True):
        if isinstance(found, Exception):
            continue
        for hook in found:
            rows.append(
                {"scope": str(scope), **hook.model_dump(mode="json"), "ours": same_url(hook.url, url)}
            )
    errors = _failed(results)
    if args.json:
        print_json({"url": url, "hooks": rows, "errors": errors})
    else:
        table(
            rows,
            [
                ("scope", "scope"),
                ("id", "id"),
                ("ours", "gateway's"),
                ("url", "url"),
                ("events", "events"),
                ("active", "active"),
                ("disabled", "disabled"),
            ],
        )
        for error in errors:
            print(f"error: {error}")
    return FAILED if errors else OK


def run_delete(args: Any) -> int:
    from providers.hosts.base import NotFound
    from providers.hosts.hooks import same_url

    host, chosen, url, _ = _setup(args)

    def delete(scope: Any) -> list[str]:
        removed = []
        for hook in host.list_hooks(scope):
            if same_url(hook.url, url):
                if not args.dry_run:
                    with contextlib.suppress(NotFound):  # removed meanwhile
                        host.delete_hook(scope, hook)
                removed.append(hook.id)
        return removed

    with contextlib.closing(host), Progress() as progress:
        results = each(
            chosen, _guard(delete), concurrency=args.concurrency, progress=progress, what="removing hooks"
        )
    errors = _failed(results)
    rows = [
        {"scope": str(scope), "removed": found, "action": "would remove" if args.dry_run else "removed"}
        for scope, found in zip(chosen, results, strict=True)
        if not isinstance(found, Exception)
    ]
    unhooked = [
        scope.name
        for scope, found in zip(chosen, results, strict=True)
        if scope.kind == "repository" and not isinstance(found, Exception)
    ]
    told, warning = ([], None) if args.dry_run else tell_resync(args, unhooked, registered=False)
    if args.json:
        print_json(
            {
                "url": url,
                "results": rows,
                "errors": errors,
                "resync": {"unregistered": told, "warning": warning},
            }
        )
    else:
        table(rows, [("scope", "scope"), ("action", "action"), ("removed", "hooks")])
        for error in errors:
            print(f"error: {error}")
        if warning:
            print(f"warning: {warning}")
    return FAILED if errors else OK


def run_test(args: Any) -> int:
    from providers.hosts.base import HostError
    from providers.hosts.hooks import same_url

    host, chosen, url, _ = _setup(args)

    def test(scope: Any) -> str:
        ours = [hook for hook in host.list_hooks(scope) if same_url(hook.url, url)]
        if not ours:
            raise HostError(f"{scope} has no hook for {url}: run `k8s-ee hooks ensure` first")
        return str(host.test_hook(scope, ours[0]))

    with contextlib.closing(host), Progress() as progress:
        results = each(
            chosen, _guard(test), concurrency=args.concurrency, progress=progress, what="testing hooks"
        )
    rows = [
        {"scope": str(scope), "result": "failed" if isinstance(r, Exception) else "ok", "answer": str(r)}
        for scope, r in zip(chosen, results, strict=True)
    ]
    if args.json:
        print_json({"url": url, "results": rows})
    else:
        table(rows, [("scope", "scope"), ("result", "result"), ("answer", "answer")])
    if not rows:
        raise CliError("nothing tested")
    return FAILED if _failed(results) else OK
