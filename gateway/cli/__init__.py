"""`k8s-ee`: the command line. `serve` and `worker` run the service; the rest drive and inspect it.

One module per command group (`run`, `hooks`, `envs`, `trigger`, `deliveries`, `config`), each adding
its parsers with `register`. Building the parser imports nothing heavy: each command imports what
it needs when it runs, so `k8s-ee --help` is quick and `import gateway.cli` loads no code host SDK.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from gateway.cli import config, deliveries, envs, hooks, run, trigger
from gateway.cli.output import CliError, examples


class _Version(argparse.Action):
    """`--version`, reading the installed version only when asked."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None
    ) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("k8s-ee-gateway")
        except PackageNotFoundError:
            found = "unknown"
        sys.stdout.write(f"k8s-ee {found}\n")
        parser.exit()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="k8s-ee",
        description="k8s-ee gateway: a preview environment for every pull request.",
        epilog=examples(
            "k8s-ee hooks ensure --provider github --repo acme/web --url https://gw.example.com/webhooks/github",
            'k8s-ee trigger deploy --repo acme/web --number 42 --sha "$GIT_SHA" --wait',
            "k8s-ee config validate k8s-ee.yaml",
        )
        + "\n\nexit codes: 0 done, 1 failed, 2 usage (bad arguments or settings).\n"
        "--json on any command prints JSON; NO_COLOR turns colour off.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, hooks, envs, trigger, deliveries, config):
        module.register(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Imported after parsing: `--help` stays quick.
    from providers.settings import SettingsError

    try:
        return int(args.run(args) or 0)
    except SettingsError as exc:
        print(f"k8s-ee: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"k8s-ee: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
