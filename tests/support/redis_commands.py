"""Every command a Redis server receives over a span of time, as MONITOR shows them.

A client's command is counted once however it travels (alone, in a pipeline, in MULTI/EXEC);
a script is one command (its EVALSHA), and what it calls inside is kept apart (`in_scripts`),
since it costs the server a call but no round trip. The recorder's own connection and the
test's reads are left out by port (`ignore`).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...]
    port: str  # the client's port; "" for a script's own calls


@dataclass
class Recorded:
    # What clients sent, and what the scripts among them called inside, in the order seen.
    sent: list[Command] = field(default_factory=list)
    in_scripts: list[Command] = field(default_factory=list)

    def by_name(self) -> Counter[str]:
        return Counter(c.name for c in self.sent)

    def naming(self, fragment: str) -> list[Command]:
        """The commands sent whose arguments name something containing `fragment`."""
        return [c for c in self.sent if any(fragment in a for a in c.args)]


class CommandRecorder:
    """MONITOR in a thread of its own, from `start` until `stop`."""

    def __init__(self, url: str) -> None:
        self.client: Any = redis.Redis.from_url(url, decode_responses=False)
        self.recorded = Recorded()
        self.ignore: set[str] = set()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._monitor: Any = None

    def _listen(self) -> None:
        with self.client.monitor() as monitor:
            self._monitor = monitor
            self.ignore.add(str(monitor.connection._sock.getsockname()[1]))
            self._ready.set()
            try:
                while True:
                    self._take(monitor.next_command())
            except (RedisConnectionError, OSError, AttributeError, ValueError):
                return  # stopped: the connection was closed under it

    def _take(self, seen: dict[str, Any]) -> None:
        words = seen["command"].split(" ")
        name = words[0].upper()
        if seen["client_type"] == "lua":
            with self._lock:
                self.recorded.in_scripts.append(Command(name, tuple(words[1:]), ""))
            return
        if seen["client_port"] in self.ignore:
            return
        with self._lock:
            self.recorded.sent.append(Command(name, tuple(words[1:]), seen["client_port"]))

    def start(self) -> CommandRecorder:
        self._thread.start()
        self._ready.wait(5)
        return self

    def mark(self) -> tuple[int, int]:
        """Where the record is now (MONITOR lags a little behind the commands: settle first)."""
        with self._lock:
            return len(self.recorded.sent), len(self.recorded.in_scripts)

    def since(self, mark: tuple[int, int]) -> Recorded:
        with self._lock:
            return Recorded(self.recorded.sent[mark[0] :], self.recorded.in_scripts[mark[1] :])

    def stop(self) -> Recorded:
        if self._monitor is not None:
            self._monitor.connection.disconnect()
        self._thread.join(5)
        self.client.close()
        return self.recorded
