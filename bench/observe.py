"""What the worker benchmark reads from outside the processes it measures: every Redis command (a
MONITOR stream, attributed to the process whose connection sent it), each environment's state
changes as the status records were written, and what the fake GitHub's writes show.

Nothing here sends a command to the Redis it watches besides the one MONITOR: the figures are
the gateway's and the worker's alone.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from providers.hosts.reporting import DEFAULT_DESCRIPTIONS

# A status record as MONITOR shows it: the key, then its JSON with every `"` escaped.
_STATUS = re.compile(rb'"[^"]*status:github:([^"]+):(\d+)" "\{.*?\\"state\\":\\"(\w+)\\"')
_FIELD = {
    name: re.compile(rb'\\"' + name.encode() + rb'\\":(?:\\"([^\\]*)\\"|(\d+))')
    for name in ("updated_at", "reconciles")
}
# Where a delivery ended up, once a reconcile applied it (handlers/status.py's link).
_APPLIED = re.compile(rb'"[^"]*applied:github:([^"]+)" "\{\\"reconcile\\":\\"')
_LINE = re.compile(rb'^(\d+\.\d+) \[\d+ ([^\]]+)\] "([^"]+)"(?: "((?:[^"\\]|\\.)*)")?')
# Commands of the reports: their job ids, the report records and locks, the hosts' budgets and pacing.
REPORT_WORDS = (b"report", b"rate-limit", b"bucket", b"pacing")
_HEADLINE = re.compile(r"Preview environment (\w+)")
_BY_DESCRIPTION = {text: state for state, text in DEFAULT_DESCRIPTIONS.items()}
_BY_HOST_STATE = {
    "success": "deployed",
    "inactive": "destroyed",
    "failure": "failed",
    "error": "failed",
    "pending": "deploying",
    "in_progress": "deploying",
    "queued": "queued",
}


@dataclass(frozen=True)
class Command:
    at: float  # Redis's own clock, epoch s
    port: int  # the sending connection's local port (a script's commands: its caller's)
    name: str
    first: bytes  # the first argument (a key, mostly)
    reports: bool
    scripted: bool = False  # called by a script (MONITOR's `lua` client), not sent by a process


@dataclass
class Change:
    state: str
    at: float  # the record's updated_at, epoch s
    reconciles: int


@dataclass
class Environment:
    changes: list[Change] = field(default_factory=list)
    reconciles: int = 0
    state: str | None = None


class RedisMonitor:
    """MONITOR on its own connection, read in a thread: every command, and every status record."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.commands: list[Command] = []
        self.environments: dict[int, Environment] = {}
        self.applied: set[str] = set()  # delivery ids a reconcile applied
        self._monitor = redis.Redis(port=port).monitor()  # type: ignore[no-untyped-call]
        self._monitor.__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        caller = 0
        while True:
            try:
                raw = self._monitor.connection.read_response()
            except (redis.ConnectionError, OSError):
                return
            line = raw if isinstance(raw, bytes) else str(raw).encode()
            found = _LINE.match(line)
            if found is None:
                continue
            at, client, name, first = found.groups()
            if client != b"lua":
                caller = int(client.rsplit(b":", 1)[1]) if b":" in client else 0
            command = Command(
                float(at),
                caller,
                name.decode().lower(),
                first or b"",
                any(w in line for w in REPORT_WORDS),
                client == b"lua",
            )
            status = _STATUS.search(line)
            applied = _APPLIED.search(line)
            with self.lock:
                self.commands.append(command)
                if applied is not None:
                    self.applied.add(applied.group(1).decode())
                if status is not None:
                    self._status(int(status.group(2)), status.group(3).decode(), line, float(at))

    def _status(self, number: int, state: str, line: bytes, at: float) -> None:
        env = self.environments.setdefault(number, Environment())
        updated = _FIELD["updated_at"].search(line)
        reconciles = _FIELD["reconciles"].search(line)
        env.reconciles = int(reconciles.group(2) or 0) if reconciles else env.reconciles
        if state != env.state:
            stamp = datetime.fromisoformat(updated.group(1).decode()).timestamp() if updated else at
            env.changes.append(Change(state, stamp, env.reconciles))
            env.state = state

    def environment(self, number: int) -> Environment:
        with self.lock:
            env = self.environments.get(number, Environment())
            return Environment(list(env.changes), env.reconciles, env.state)

    def was_applied(self, delivery_id: str) -> bool:
        with self.lock:
            return delivery_id in self.applied

    def since(self, index: int) -> list[Command]:
        with self.lock:
            return self.commands[index:]

    def mark(self) -> int:
        with self.lock:
            return len(self.commands)

    def close(self) -> None:
        self._monitor.connection.disconnect()


def ports_of(pid: int, redis_port: int) -> set[int]:
    """Local ports of the process's TCP connections to the Redis port (from /proc: Linux only)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == redis_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def shape(command: Command) -> tuple[str, bytes]:
    """What a command does, without its values: its name and first argument, digits blanked."""
    return command.name, re.sub(rb"\d+", b"#", command.first)


# -- what the fake GitHub's writes show -------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    at: float  # arrival at the fake host, epoch s
    number: int | None  # the pull request it is about
    state: str | None  # the environment state it shows (None: it shows none, e.g. a new deployment)


def github_writes(
    github: Any, repository: str, heads: dict[str, int], requests: list[Any], clock_offset: float
) -> list[Write]:
    """The fake GitHub's non-GET requests, each with the pull request and the state it shows; the
    comment and deployment ids are looked up in the fake's state, the commits in `heads`."""
    repo = github.repos[repository]
    comments = {c.id: c.number for c in repo.comments.values()}
    deployments = {d.id: int(d.environment.removeprefix("pr-")) for d in repo.deployments}
    found = []
    for request in requests:
        if request.method == "GET":
            continue
        parts = request.path.split("/")
        body = request.json() if request.body else {}
        number: int | None = None
        state: str | None = None
        if "comments" in parts:
            number = int(parts[-2]) if parts[-1] == "comments" else comments.get(int(parts[-1]))
            headline = _HEADLINE.search(str(body.get("body", "")))
            state = headline.group(1) if headline else None
        elif "statuses" in parts:
            number = deployments.get(int(parts[-2])) if "deployments" in parts else heads.get(parts[-1])
            description = str(body.get("description") or "")
            state = _BY_DESCRIPTION.get(description) or _BY_HOST_STATE.get(str(body.get("state")))
        found.append(Write(request.at + clock_offset, number, state))
    return found


def latencies(changes: list[Change], writes: list[Write], after: float = 0.0) -> list[float]:
    """For each state change at or after `after`: seconds until the host first got a write
    showing it, or a state that came after it (a coalesced report shows the newest state only).
    Changes never shown are left out (and counted by the caller)."""
    found = []
    for i, change in enumerate(changes):
        if change.at < after:
            continue
        later = {c.state for c in changes[i:]}
        for write in writes:
            if write.at >= change.at - 0.01 and write.state in later:
                found.append(max(0.0, write.at - change.at))
                break
    return found


def busiest_second(writes: list[Write]) -> int:
    """The most writes that arrived within any one second."""
    times = sorted(w.at for w in writes)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def now_offset() -> float:
    """What to add to a `time.monotonic()` stamp of this process to get epoch seconds."""
    return time.time() - time.monotonic()
