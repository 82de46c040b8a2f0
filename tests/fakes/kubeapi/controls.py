"""What a test steers and observes besides the objects: the request log and injected faults."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl


class RequestRecord(NamedTuple):
    """One API call as the server received it (control calls under /_test are not logged)."""

    method: str
    path: str
    query: str
    content_type: str
    # Wall-clock time (time.time()) the request arrived: the benchmark times environments by it.
    at: float = 0.0
    user_agent: str = ""

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def to_json(self) -> dict[str, str]:
        return self._asdict()


@dataclass
class Fault:
    """Answer the next `times` matching calls with `status` (a Status body), after sleeping `delay`
    seconds. With `status=None` the call is served normally after the delay (a slow server);
    `times=-1` matches forever. `action`, when given, runs first: something that happens in the
    cluster just as this call arrives (a namespace starts terminating)."""

    method: str
    path_regex: str
    status: int | None = 500
    times: int = 1
    delay: float = 0.0
    message: str = ""
    action: Callable[[], None] | None = field(default=None, repr=False)
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        self._pattern = re.compile(self.path_regex)
        if not self.message and self.status is not None:
            self.message = f"injected fault: HTTP {self.status}"

    def matches(self, method: str, path: str) -> bool:
        return self.times != 0 and self.method in ("*", method) and self._pattern.search(path) is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path_regex": self.path_regex,
            "status": self.status,
            "times": self.times,
            "delay": self.delay,
            "message": self.message,
        }


# Every distinct (method, path, query, content type, user agent) any server of this process
# received, kept across resets and servers: what tests/charts/test_rbac.py checks the chart's
# RBAC against.
SESSION_REQUESTS: set[tuple[str, str, str, str, str]] = set()
_session_lock = threading.Lock()


class Controls:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._faults: list[Fault] = []

    def record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)
        with _session_lock:
            SESSION_REQUESTS.add(
                (record.method, record.path, record.query, record.content_type, record.user_agent)
            )

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> int:
        with self._lock:
            cleared = len(self._requests)
            self._requests.clear()
            return cleared

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
            return fault

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first fault matching this call, with one use of it spent."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times > 0:
                        fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
            return None
