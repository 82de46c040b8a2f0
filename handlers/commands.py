"""Chat commands in pull request comments: what a comment asks for. Pure.

A command is a line that starts with `/` and one of the names below, outside code
(fenced with ``` or ~~~, or indented four spaces), outside quotes (`>`) and outside
HTML comments, which is where the gateway's own answers keep their markers. One comment
may hold several commands; each is answered.

`parse` returns, in order, each command found (`Command`) and each line that looks like
one of ours but is not right (`Invalid`: an unknown name that uses our words, a bad
argument), which gets the help text as its answer. Other `/words` (`/lgtm`, `/retest`,
`/path/to/file`) belong to other tools and are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Name(StrEnum):
    DEPLOY = "deploy-preview"
    DESTROY = "destroy-preview"
    WAKE = "wake-preview"
    HELP = "preview-help"
    PRESERVE = "preserve"
    UNPRESERVE = "unpreserve"


# A command word that uses one of these is ours: unknown or misspelt, it gets the help text.
_OUR_WORDS = ("preview", "preserve", "deploy", "destroy", "wake")
# At most this many commands are taken from one comment; the rest are refused together.
MAX_COMMANDS = 10

_COMMAND = re.compile(r"^ {0,3}/([A-Za-z][A-Za-z0-9_-]*)(?:[ \t]+(.*?))?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_QUOTE = re.compile(r"^ {0,3}>")
_INDENTED = re.compile(r"^( {4}|\t)")
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
_HOURS = re.compile(r"^([0-9]{1,5})h?$")

HELP = "\n".join(
    [
        "Preview environment commands (at the start of a line; write access needed):",
        "",
        "- `/deploy-preview`: deploy this change now (also a draft, or an approval of a fork's head commit)",
        "- `/deploy-preview <sha>`: approve and deploy exactly that commit, if it is still the head",
        "- `/destroy-preview`: remove the environment",
        "- `/wake-preview`: wake a hibernated environment",
        "- `/preserve [hours]`: keep the environment after the change closes (default {default} h, renewable)",
        "- `/unpreserve`: stop preserving it",
        "- `/preview-help`: this list",
    ]
)


@dataclass(frozen=True, slots=True)
class Command:
    name: Name
    # `/deploy-preview <sha>`: the commit to approve (lower case, 7 to 64 hex digits).
    sha: str | None = None
    # `/preserve <hours>`.
    hours: int | None = None

    def __str__(self) -> str:
        argument = self.sha or (str(self.hours) if self.hours is not None else "")
        return f"/{self.name.value}" + (f" {argument}" if argument else "")


@dataclass(frozen=True, slots=True)
class Invalid:
    # The line as written (cut short), and what is wrong with it.
    text: str
    problem: str


Parsed = Command | Invalid


def help_text(default_hours: int) -> str:
    return HELP.format(default=default_hours)


def parse(body: str, *, max_hours: int) -> list[Parsed]:
    """The commands of a comment, in order; an exact repeat counts once."""
    found: list[Parsed] = []
    for line in _command_lines(body):
        match = _COMMAND.match(line)
        if match is None:
            continue
        word, argument = match.group(1).lower(), (match.group(2) or "").strip()
        parsed = _command(word, argument, max_hours)
        if parsed is None or parsed in found:
            continue
        if len(found) == MAX_COMMANDS:
            found.append(Invalid(_shown(line), f"at most {MAX_COMMANDS} commands are read from one comment"))
            break
        found.append(parsed)
    return found


def _command(word: str, argument: str, max_hours: int) -> Parsed | None:
    shown = _shown(f"/{word} {argument}".strip())
    try:
        name = Name(word)
    except ValueError:
        if any(ours in word for ours in _OUR_WORDS):
            return Invalid(shown, f"`/{_shown(word)}` is not a command")
        return None
    if name == Name.DEPLOY and argument:
        if not _SHA.match(argument):
            return Invalid(
                shown, "`/deploy-preview` takes a commit SHA (7 to 64 hexadecimal digits) or nothing"
            )
        return Command(name, sha=argument.lower())
    if name == Name.PRESERVE and argument:
        hours = _HOURS.match(argument)
        if hours is None or not 1 <= int(hours.group(1)) <= max_hours:
            return Invalid(shown, f"`/preserve` takes a number of hours from 1 to {max_hours}, or nothing")
        return Command(name, hours=int(hours.group(1)))
    if argument:
        return Invalid(shown, f"`/{name.value}` takes no argument")
    return Command(name)


def _shown(text: str, limit: int = 80) -> str:
    # Quoted back in answers inside backticks: no backtick may close them early.
    text = " ".join(text.replace("`", "'").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _command_lines(body: str) -> list[str]:
    """The lines of `body` that are plain text: not code, not a quote, not an HTML comment."""
    lines: list[str] = []
    fence: str | None = None
    in_html_comment = False
    for line in body.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if fence is not None:
            stripped = line.strip()
            # A fence closes with the same character, at least as many, and nothing after them.
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                fence = None
            continue
        if in_html_comment:
            in_html_comment = "-->" not in line
            continue
        opening = _FENCE.match(line)
        if opening is not None:
            fence = opening.group(1)
            continue
        if line.lstrip().startswith("<!--"):
            in_html_comment = "-->" not in line
            continue
        if _QUOTE.match(line) or _INDENTED.match(line):
            continue
        lines.append(line)
    return lines
