"""`k8s-ee trigger deploy|destroy|hibernate|wake`: the generic trigger, signed, from a CI script.

Signed the Standard Webhooks way with the gateway's K8S_EE_GENERIC_SECRET (a fresh `webhook-id`
each run: the gateway's replay key), or sent with the bearer token K8S_EE_GENERIC_TOKEN when no
secret is set (or `--auth bearer`). A `--config` file is checked here first, with the worker's
rules, and sent inline. With `--wait` the command follows the environment until the worker is done
with it, and exits 1 unless it reached the state asked for.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.output import (
    FAILED,
    OK,
    CliError,
    Command,
    Progress,
    UsageError,
    examples,
    fields,
    leaf,
    print_json,
)

ACTIONS = ("deploy", "destroy", "hibernate", "wake")
# Where CI systems put the branch being built, in the order they are tried.
BRANCH_VARIABLES = (
    "GITHUB_HEAD_REF",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
    "CI_COMMIT_REF_NAME",
    "BITBUCKET_BRANCH",
    "BRANCH_NAME",
)
DEFAULT_TIMEOUT = 600.0


def register(commands: Command) -> None:
    parser = leaf(
        commands,
        "trigger",
        "ask the gateway to deploy, destroy, hibernate or wake an environment (for CI scripts)",
        "Send the signed generic trigger and print the gateway's answer. Signed with K8S_EE_GENERIC_SECRET "
        "(Standard Webhooks, a fresh webhook-id each time), or with the bearer token K8S_EE_GENERIC_TOKEN.",
        examples(
            'k8s-ee trigger deploy --repo acme/web --number 42 --sha "$GITHUB_SHA" --config k8s-ee.yaml --wait',
            "k8s-ee trigger destroy --repo acme/web --number 42 --gateway https://gw.example.com",
        ),
    )
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("--repo", required=True, help="the repository (owner/repo, or group/sub/project)")
    parser.add_argument("--number", required=True, type=int, help="the pull or merge request number")
    parser.add_argument("--sha", help="the commit to deploy (required for deploy)")
    parser.add_argument(
        "--branch",
        help=f"its branch (deploy; default: ${', $'.join(BRANCH_VARIABLES)}, else the checked-out branch)",
    )
    parser.add_argument(
        "--provider",
        choices=("github", "gitlab", "bitbucket-cloud", "bitbucket-server"),
        help="act on that code host's environment of the same repository and number (default: the trigger's own)",
    )
    parser.add_argument("--image", help="the image to run instead of the one derived from the repository")
    parser.add_argument("--config", type=Path, help="a k8s-ee.yaml to send inline (checked here first)")
    parser.add_argument("--gateway", help="the gateway's URL (default K8S_EE_GATEWAY_URL)")
    parser.add_argument(
        "--auth",
        choices=("signature", "bearer"),
        help="how to authenticate (default: signature when K8S_EE_GENERIC_SECRET is set)",
    )
    parser.add_argument(
        "--wait", action="store_true", help="follow the environment until it is ready or failed"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds --wait waits (default 600)"
    )
    parser.set_defaults(run=run)


def _branch(given: str | None) -> str:
    if given:
        return given
    for name in BRANCH_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    try:
        # `git` from PATH, as a developer's shell would run it; only its output is read.
        found = subprocess.run(
            ["git", "symbolic-ref", "--quiet", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        found = None
    if found is not None and found.returncode == 0 and found.stdout.strip():
        return found.stdout.strip()
    raise UsageError("deploy needs the branch: pass --branch")


def _config(path: Path) -> dict[str, Any]:
    from gateway.cli.config import located_problems

    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    problems = located_problems(text, str(path))
    if problems:
        raise CliError(f"{path} is not valid; nothing was sent:\n" + "\n".join(problems))
    import yaml

    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def body(args: Any) -> dict[str, Any]:
    if args.number < 1:
        raise UsageError("--number must be 1 or more")
    payload: dict[str, Any] = {"action": args.action, "repository": args.repo, "number": args.number}
    if args.action == "deploy":
        if not args.sha:
            raise UsageError("deploy needs the commit: pass --sha")
        payload["branch"] = _branch(args.branch)
    elif args.branch:
        payload["branch"] = args.branch
    if args.sha:
        payload["sha"] = args.sha
    if args.image:
        payload["image"] = args.image
    if args.provider:
        payload["provider"] = args.provider
    if args.config is not None:
        payload["config"] = _config(args.config)
    return payload


def signed_headers(settings: Any, auth: str | None, raw: bytes) -> dict[str, str]:
    from providers.signing import standard_webhook_signature

    secret = settings.first("generic_secret")
    token = settings.first("generic_token")
    chosen = auth or ("signature" if secret else "bearer")
    if chosen == "signature":
        if not secret:
            raise UsageError(
                "signing needs K8S_EE_GENERIC_SECRET (or use --auth bearer with K8S_EE_GENERIC_TOKEN)"
            )
        msg_id = f"k8s-ee-cli-{uuid.uuid4().hex}"
        timestamp = str(int(time.time()))
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": standard_webhook_signature(secret.encode(), msg_id, timestamp, raw),
        }
    if not token:
        raise UsageError("set K8S_EE_GENERIC_SECRET (signed) or K8S_EE_GENERIC_TOKEN (bearer) to trigger")
    return {"Authorization": f"Bearer {token}"}


def run(args: Any) -> int:
    import httpx

    from gateway.cli.client import Gateway, gateway_url
    from gateway.cli.settings import load_settings

    settings = load_settings()
    url = gateway_url(args.gateway, settings)
    payload = body(args)
    raw = json.dumps(payload, separators=(",", ":"), default=str).encode()
    headers = {"Content-Type": "application/json", **signed_headers(settings, args.auth, raw)}
    sent_at = datetime.now(UTC)
    try:
        answer = httpx.post(f"{url}/webhooks/generic", content=raw, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the gateway at {url}: {type(exc).__name__}") from None
    try:
        reply: dict[str, Any] = answer.json()
    except ValueError:
        reply = {"status": "error", "reason": answer.text[:300]}
    reply["http_status"] = answer.status_code
    accepted = answer.status_code == 202
    if not args.wait:
        _show(args, reply)
        return OK if answer.status_code < 400 else FAILED
    if not accepted:
        _show(args, reply)
        return OK if reply.get("status") == "duplicate" else FAILED
    if not args.json:
        _show(args, reply)
    from gateway.cli.follow import follow, show

    event = reply.get("event") or {}
    # The environment the trigger acts on: the named code host's, or the trigger's own.
    provider = str(event.get("target_provider") or event.get("provider") or "generic")
    key = f"{provider}:{args.repo}:{args.number}"
    with Gateway(url, settings.first("admin_token")) as gateway, Progress() as progress:
        outcome = follow(
            gateway,
            key,
            str(event.get("provider", "generic")),  # the delivery is logged under the sender's
            str(reply["delivery_id"]),
            str(event.get("type") or f"env.{args.action}"),
            sent_at,
            timeout=args.timeout,
            progress=progress,
        )
    return show(outcome, reply, args.json)


def _show(args: Any, reply: dict[str, Any]) -> None:
    if args.json:
        print_json(reply)
        return
    event = reply.get("event") or {}
    fields(
        [
            ("status", reply.get("status")),
            ("delivery", reply.get("delivery_id")),
            (
                "event",
                f"{event.get('type')} {event.get('repository')}#{event.get('number')}" if event else None,
            ),
            ("reason", reply.get("reason")),
        ]
    )
