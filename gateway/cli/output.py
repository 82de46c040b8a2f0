"""How every `k8s-ee` command answers: tables for people, `--json` for scripts, progress on stderr, exit codes.

Exit codes: 0 done; 1 failed (the gateway, a host or the file said no, or an environment failed);
2 usage (bad arguments or settings). Colour only on a terminal, and never with `NO_COLOR` set
(https://no-color.org). Anything that may take more than a second shows what it is doing on
stderr, so stdout stays the answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TextIO

OK, FAILED, USAGE = 0, 1, 2
EXAMPLE = "example:\n  {}"
# argparse's own type for what `add_subparsers` returns.
Command = Any


def examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


class CliError(Exception):
    """A command failed; the message is for the person running it (never a secret)."""

    code = FAILED


class UsageError(CliError):
    code = USAGE


def leaf(commands: Command, name: str, help: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A command with the options every command has (`--json`)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")
    return parser


def group(commands: Command, name: str, help: str, description: str) -> Command:
    parser = commands.add_parser(name, help=help, description=description)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


# -- colour ------------------------------------------------------------------------------------------

_COLOURS = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "bold": "1"}
STATE_COLOURS = {
    "deployed": "green",
    "accepted": "green",
    "created": "green",
    "failed": "red",
    "rejected": "red",
    "deploying": "yellow",
    "queued": "yellow",
    "updated": "yellow",
}


def colour_enabled(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def paint(text: str, colour: str | None, stream: TextIO | None = None) -> str:
    stream = stream or sys.stdout
    if not colour or not colour_enabled(stream):
        return text
    return f"\033[{_COLOURS[colour]}m{text}\033[0m"


# -- answers -----------------------------------------------------------------------------------------


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value) or "-"
    return " ".join(str(value).split())


def table(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]], colour_by: str | None = None
) -> None:
    """Rows as aligned columns, `columns` being (key, heading); an empty table says so."""
    texts = [[cell(row.get(key)) for key, _ in columns] for row in rows]
    if not texts:
        print("(none)")
        return
    widths = [max(len(heading), *(len(r[i]) for r in texts)) for i, (_, heading) in enumerate(columns)]
    print(
        paint(
            "  ".join(h.upper().ljust(w) for (_, h), w in zip(columns, widths, strict=True)).rstrip(), "bold"
        )
    )
    keys = [key for key, _ in columns]
    for values in texts:
        padded = [v.ljust(w) for v, w in zip(values, widths, strict=True)]
        if colour_by is not None:
            i = keys.index(colour_by)
            padded[i] = paint(padded[i], STATE_COLOURS.get(values[i]))
        print("  ".join(padded).rstrip())


def fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """`name: value` lines, names aligned."""
    shown = [(name, cell(value)) for name, value in pairs]
    width = max((len(name) for name, _ in shown), default=0)
    for name, value in shown:
        print(f"{name + ':':<{width + 1}} {paint(value, STATE_COLOURS.get(value))}")


# -- progress ----------------------------------------------------------------------------------------


class Progress:
    """What a slow command is doing, on stderr, once it has taken longer than a second.

    On a terminal one line is rewritten in place; elsewhere (a CI log) a line is written when the
    message changes, at most every few seconds. A ticker thread keeps the elapsed time current while
    the command waits on a slow call."""

    DELAY = 1.0
    LOG_EVERY = 5.0

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.message = ""
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._shown = ""
        self._shown_at = 0.0
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1)
        with self._lock:
            if self._tty and self._shown:
                self.stream.write("\r\033[K")
                self.stream.flush()

    def update(self, message: str) -> None:
        self.message = message

    def say(self, message: str) -> None:
        """A line that stays (an event worth keeping in the log), above the progress line."""
        with self._lock:
            if self._tty and self._shown:
                self.stream.write("\r\033[K")
                self._shown = ""
            self.stream.write(message + "\n")
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.2):
            elapsed = time.monotonic() - self._started
            if elapsed < self.DELAY or not self.message:
                continue
            text = f"{self.message} ({elapsed:.0f}s)"
            with self._lock:
                if self._tty:
                    if text != self._shown:
                        self.stream.write("\r\033[K" + text[:200])
                        self.stream.flush()
                        self._shown = text
                else:
                    since = time.monotonic() - self._shown_at
                    if (self.message != self._shown and since >= 1.0) or since >= self.LOG_EVERY:
                        self.stream.write(text + "\n")
                        self.stream.flush()
                        self._shown, self._shown_at = self.message, time.monotonic()
