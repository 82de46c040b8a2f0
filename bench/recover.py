"""Recovery benchmark: `k8s-ee deliveries recover` over many repositories, against a fake host.

The fake GitHub (or GitLab) of tests/fakes/fakehosts serves every repository's hook and its delivery log
(each repository with `--failed` deliveries that no attempt delivered and `--ok` that were); the
command line runs in its own process, exactly as an operator runs it, with the host's default
pacing (GitHub: a quarter second between requests, a second between writes, as GitHub asks of
integrations). It prints the wall time, the calls made to the host, and whether exactly the
failed deliveries were redelivered. Figures are printed, never asserted.

    .venv/bin/python -m bench.recover [--repos 100] [--failed 2] [--ok 20] [--provider github|gitlab] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
URL = "https://gateway.example.com/webhooks/{}"


def fakes() -> Any:
    # The fake hosts are test code, outside what mypy checks: imported by name, not followed.
    return importlib.import_module("tests.fakes.fakehosts")


def github(repos: int, failed: int, ok: int) -> tuple[Any, dict[str, str], list[str]]:
    fake = fakes().FakeGitHub()
    fake.add_token(TOKEN)
    names = [f"bench/svc-{n:03d}" for n in range(repos)]
    now = datetime.now(UTC).replace(microsecond=0)
    for name in names:
        fake.add_repo(name)
        hook = fake.add_hook(name, URL.format("github"))
        for k in range(ok):
            fake.add_delivery(name, hook.id, 202, delivered_at=now - timedelta(minutes=k))
        for k in range(failed):
            fake.add_delivery(name, hook.id, 502, delivered_at=now - timedelta(hours=1, minutes=k))
    fake.start()
    return fake, {"K8S_EE_GITHUB_API_URL": fake.url, "K8S_EE_GITHUB_TOKEN": TOKEN}, names


def gitlab(repos: int, failed: int, ok: int) -> tuple[Any, dict[str, str], list[str]]:
    fake = fakes().FakeGitLab()
    fake.add_token(TOKEN)
    names = [f"bench/svc-{n:03d}" for n in range(repos)]
    fake.resend_limit = max(fake.resend_limit, failed)
    for name in names:
        fake.add_project(name)
        hook = fake.add_hook(name, URL.format("gitlab"))
        fake.receiver = lambda url, headers, body: 202
        for _ in range(ok):
            fake.deliver(name, hook.id)
        fake.receiver = lambda url, headers, body: 502
        for _ in range(failed):
            fake.deliver(name, hook.id)
    fake.receiver = lambda url, headers, body: 202
    fake.start()
    return fake, {"K8S_EE_GITLAB_URL": fake.origin, "K8S_EE_GITLAB_API_TOKEN": TOKEN}, names


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=int, default=100)
    parser.add_argument("--failed", type=int, default=2, help="undelivered deliveries per repository")
    parser.add_argument("--ok", type=int, default=20, help="delivered ones per repository")
    parser.add_argument("--provider", choices=("github", "gitlab"), default="github")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    fake, env, names = (github if args.provider == "github" else gitlab)(args.repos, args.failed, args.ok)
    listing = ROOT / "var" / "bench-recover-repos.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("\n".join(names) + "\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("K8S_EE_")}
    command = [
        sys.executable,
        "-m",
        "gateway.cli",
        "deliveries",
        "recover",
        "--provider",
        args.provider,
        "--repos-file",
        str(listing),
        "--url",
        URL.format(args.provider),
        "--since",
        "72h",
        "--concurrency",
        str(args.concurrency),
        "--json",
    ]
    try:
        started = time.monotonic()
        done = subprocess.run(command, env={**clean, **env}, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - started
    finally:
        fake.stop()
        listing.unlink(missing_ok=True)
    if done.returncode != 0:
        sys.exit(f"recover exited {done.returncode}: {done.stderr[-2000:]}")
    results = json.loads(done.stdout)["results"]
    recovered = sum(r["recovered"] for r in results)
    calls = Counter(method for method, _ in fake.calls())
    print(
        f"provider {args.provider}, {args.repos} repositories, {args.failed} undelivered + {args.ok} delivered each"
    )
    print(f"  wall time           {elapsed:8.1f} s  (concurrency {args.concurrency})")
    print(
        f"  host calls          {sum(calls.values()):8d}  ({', '.join(f'{m} {n}' for m, n in sorted(calls.items()))})"
    )
    print(f"  redelivered         {recovered:8d}  (expected {args.repos * args.failed})")
    print(f"  per repository      {elapsed / max(1, args.repos):8.2f} s")


if __name__ == "__main__":
    main()
