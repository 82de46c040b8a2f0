"""What `hooks` and `deliveries recover` share: which hooks they work on, the hook the gateway needs, the
host client, and running over many repositories at once with a bound.

A scope is a repository (`--repo`, repeatable, or `--repos-file`), a group of them (`--group`: a
GitHub organisation, GitLab group, Bitbucket Cloud workspace or Data Center project), or a GitHub
App's own webhook (`--app`). The hook's URL is `--url`, else `{gateway}/webhooks/{endpoint}`; its
secret is the gateway's own setting (its first value), or the variable `--secret-from-env` names.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.cli.output import Progress, UsageError

T = TypeVar("T")
PROVIDERS = ("github", "gitlab", "bitbucket-cloud", "bitbucket-server")
# The command line waits out a host's rate-limit pause up to this long (the worker hands longer
# ones back to its queue instead; here nobody else is held).
CLI_MAX_WAIT = 120.0
DEFAULT_CONCURRENCY = 8


def add_scope_options(parser: argparse.ArgumentParser, *, secrets: bool = False) -> None:
    parser.add_argument("--provider", required=True, choices=PROVIDERS, help="the code host")
    parser.add_argument("--repo", action="append", default=[], help="a repository (repeat for more)")
    parser.add_argument("--repos-file", type=Path, help="a file of repositories, one a line")
    parser.add_argument(
        "--group",
        help="a GitHub organisation, GitLab group, Bitbucket Cloud workspace or Data Center project: its own hooks",
    )
    parser.add_argument(
        "--app", action="store_true", help="GitHub: the App's own webhook (needs the App's credentials)"
    )
    parser.add_argument(
        "--url", help="the webhook URL (default {gateway}/webhooks/{github|gitlab|bitbucket})"
    )
    parser.add_argument("--gateway", help="the gateway's public URL (default K8S_EE_GATEWAY_URL)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"repositories worked on at once (default {DEFAULT_CONCURRENCY})",
    )
    if secrets:
        parser.add_argument(
            "--secret-from-env",
            metavar="VAR",
            help="take the hook's secret from this variable instead of the gateway's setting",
        )


def scopes(args: Any) -> list[Any]:
    from providers.hosts.hooks import HookScope

    repositories = list(args.repo)
    if args.repos_file is not None:
        try:
            lines = args.repos_file.read_text().splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read {args.repos_file}: {exc.strerror}") from None
        repositories += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    chosen = [HookScope(kind="repository", name=r) for r in dict.fromkeys(repositories)]
    if args.group:
        chosen.append(HookScope(kind="group", name=args.group))
    if args.app:
        if args.provider != "github":
            raise UsageError("--app is GitHub's: the App's own webhook")
        chosen.append(HookScope(kind="app"))
    if not chosen:
        raise UsageError("say where: --repo R (or --repos-file F), --group G, or --app")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be 1 or more")
    return chosen


def hook_url(args: Any, settings: Any) -> str:
    from gateway.cli.client import gateway_url
    from gateway.endpoints import endpoint_for
    from providers.events import Provider

    if args.url:
        if not args.url.startswith(("http://", "https://")):
            raise UsageError(f"--url must be an http:// or https:// URL (got {args.url!r})")
        return str(args.url)
    try:
        base = gateway_url(args.gateway, settings)
    except UsageError:
        raise UsageError(
            "which URL? pass --url, or --gateway (or K8S_EE_GATEWAY_URL) for its /webhooks/… URL"
        ) from None
    return f"{base}/webhooks/{endpoint_for(Provider(args.provider)).name}"


def hook_spec(args: Any, settings: Any, url: str) -> Any:
    from pydantic import SecretStr

    from gateway.endpoints import endpoint_for
    from providers.events import Provider
    from providers.hosts.hooks import EVENTS, HookSpec
    from providers.settings import env_name

    provider = Provider(args.provider)
    endpoint = endpoint_for(provider)
    signing = settings.first("gitlab_signing_token") if provider == Provider.GITLAB else None
    if args.secret_from_env:
        secret = os.environ.get(args.secret_from_env)
        if not secret:
            raise UsageError(f"{args.secret_from_env} is not set")
    else:
        secret = settings.first(endpoint.secrets[0].setting)
    if secret is None and signing is None:
        raise UsageError(
            f"no webhook secret: set {env_name(endpoint.secrets[0].setting)} (the gateway's) or pass "
            "--secret-from-env VAR; the gateway refuses deliveries it cannot verify"
        )
    return HookSpec(
        url=url,
        events=EVENTS[provider],
        secret=SecretStr(secret) if secret else None,
        signing_token=SecretStr(signing) if signing else None,
    )


def hook_host(provider: str) -> Any:
    """The host client that manages hooks, its rate-limit waits bounded for a command line."""
    from providers.events import Provider
    from providers.hosts.base import HostError
    from providers.hosts.build import build_hook_host
    from providers.hosts.http import HttpPolicy
    from providers.hosts.settings import load_host_settings

    settings = load_host_settings()
    policy = HttpPolicy.from_settings(settings)
    policy = dataclasses.replace(policy, max_wait=max(policy.max_wait, CLI_MAX_WAIT))
    try:
        return build_hook_host(Provider(provider), settings, policy)
    except HostError as exc:
        raise UsageError(str(exc)) from None


def each(
    items: Sequence[Any], work: Callable[[Any], T], *, concurrency: int, progress: Progress, what: str
) -> list[T]:
    """`work(item)` for every item, `concurrency` at once; results in the items' order."""
    done = [0]
    lock = threading.Lock()
    progress.update(f"{what}: 0/{len(items)}")

    def one(item: Any) -> T:
        try:
            return work(item)
        finally:
            with lock:
                done[0] += 1
                progress.update(f"{what}: {done[0]}/{len(items)}")

    with ThreadPoolExecutor(max_workers=min(concurrency, max(1, len(items)))) as pool:
        return list(pool.map(one, items))
