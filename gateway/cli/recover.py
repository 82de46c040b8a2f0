"""`deliveries recover --since 72h`: find the deliveries the gateway missed, and have them sent again.

GitHub and GitLab keep a log of each hook's deliveries (GitHub about three days, GitLab seven): the
deliveries none of whose attempts the gateway answered with success are redelivered, the latest
attempt of each once (GitHub's redelivery, GitLab's resend). They keep their delivery id (GitHub's
GUID, GitLab's Idempotency-Key), so one that did arrive after all is answered `duplicate`: a
recovery can be run as often as wanted.

Bitbucket keeps no delivery log an API can read. Instead the open pull requests are read from the
host and compared with the environments the gateway knows: an open pull request updated within
`--since` whose environment is missing, or at another commit, and a known environment whose pull
request is no longer open, are told to the gateway (`POST …/sync` on the admin API) as the event
the missed webhook would have been: the worker's policy then decides as for any event. Each such
request carries an Idempotency-Key made of the change and its head, so running twice sends it once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

SYNC_KEY = "recover:{provider}:{repository}:{number}:{state}:{head}"


class Recovered(BaseModel):
    """What one scope's recovery found and did."""

    scope: str
    looked_at: int = 0  # attempts read (GitHub, GitLab), or open pull requests (Bitbucket)
    missed: int = 0  # deliveries with no successful attempt, or changes the gateway has out of date
    recovered: int = 0  # redelivered, or synced
    done: list[str] = []
    errors: list[str] = []


def from_log(host: Any, scope: Any, url: str, since: datetime, dry_run: bool) -> Recovered:
    """GitHub, GitLab: redeliver what no attempt delivered."""
    from providers.hosts.base import HostError
    from providers.hosts.hooks import same_url, unanswered

    report = Recovered(scope=str(scope))
    hooks = [hook for hook in host.list_hooks(scope) if same_url(hook.url, url)]
    if not hooks:
        report.errors.append(f"no hook for {url} (run `k8s-ee hooks ensure`)")
        return report
    for hook in hooks:
        attempts = host.hook_attempts(scope, hook, since)
        report.looked_at += len(attempts)
        missed = unanswered(attempts)
        report.missed += len(missed)
        for attempt in missed:
            what = (
                f"{attempt.event or 'delivery'} {attempt.delivery} (last answer {attempt.status or 'none'})"
            )
            if dry_run:
                report.done.append(f"would redeliver {what}")
                continue
            try:
                host.redeliver(scope, hook, attempt)
            except HostError as exc:
                report.errors.append(f"redelivering {what}: {exc}")
                continue
            report.recovered += 1
            report.done.append(f"redelivered {what}")
    return report


def _sync(
    gateway: Any, provider: str, repository: str, change: Any, dry_run: bool, report: Recovered
) -> None:
    from gateway.cli.client import environment_path

    key = f"{provider}:{repository}:{change.number}"
    what = f"{key} {change.state} at {change.head_sha[:12]}"
    if dry_run:
        report.done.append(f"would sync {what}")
        return
    body = {
        "state": change.state,
        "head_sha": change.head_sha or None,
        "head_ref": change.head_ref or None,
        "base_ref": change.base_ref,
        "draft": change.draft,
        "title": change.title,
        "url": change.url,
        "updated_at": change.updated_at.isoformat() if change.updated_at else None,
        "fork": getattr(change, "fork", False),
    }
    idempotency = SYNC_KEY.format(
        provider=provider,
        repository=repository,
        number=change.number,
        state=change.state,
        head=change.head_sha,
    )
    _, answer = gateway.request(
        "POST", f"{environment_path(key)}/sync", json=body, headers={"Idempotency-Key": idempotency[:200]}
    )
    report.recovered += 1
    report.done.append(f"synced {what}: {answer.get('status')}")


def from_open_changes(
    host: Any, gateway: Any, provider: str, repository: str, since: datetime, dry_run: bool
) -> Recovered:
    """Bitbucket: tell the gateway what it has out of date, from the open pull requests."""
    from handlers.policy import same_commit
    from providers.hosts.base import ListedChange

    report = Recovered(scope=f"repository {repository}")
    open_changes = host.open_changes(repository)
    report.looked_at = len(open_changes)
    known = gateway.get("/api/v1/environments", provider=provider, repository=repository).get("items") or []
    by_number = {int(env["number"]): env for env in known}
    for change in open_changes:
        if change.updated_at is not None and change.updated_at < since:
            continue  # nothing happened to it in the window: nothing could have been missed
        env = by_number.get(change.number)
        if env is not None and (same_commit(env.get("head_sha"), change.head_sha) or not change.head_sha):
            continue
        report.missed += 1
        _sync(gateway, provider, repository, change, dry_run, report)
    still_open = {change.number for change in open_changes}
    for number, env in by_number.items():
        if number in still_open or env.get("state") == "destroyed":
            continue
        now = host.change(repository, number)
        if now.state == "open":
            continue
        report.missed += 1
        _sync(
            gateway,
            provider,
            repository,
            ListedChange.model_validate({**now.model_dump(), "number": number}),
            dry_run,
            report,
        )
    return report
