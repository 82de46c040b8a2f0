"""A Prometheus for the tests: the instant-query API (`GET /api/v1/query`) over stored series.

It evaluates the one shape of query the gateway sends, `sum by (label) (metric{matchers})` with
`=`, `!=`, `=~` and `!~` matchers (regexes anchored, as PromQL's are), and answers in Prometheus's
own vector format; any other query is a 400, as a real one would refuse what it cannot parse.
Tests set the series (`set`) the ingress controllers would have exported.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback_server import LoopbackServer, QuietHandler

_QUERY = re.compile(r"^sum by \((?P<by>\w+)\) \((?P<metric>\w+)\{(?P<matchers>[^}]*)\}\)$")
_MATCHER = re.compile(r'(?P<label>\w+)(?P<op>=~|!~|!=|=)"(?P<value>[^"]*)"')


def _matches(labels: dict[str, str], matchers: str) -> bool:
    for found in _MATCHER.finditer(matchers):
        actual = labels.get(found["label"], "")
        op, value = found["op"], found["value"]
        if op == "=" and actual != value:
            return False
        if op == "!=" and actual == value:
            return False
        if op == "=~" and not re.fullmatch(value, actual):
            return False
        if op == "!~" and re.fullmatch(value, actual):
            return False
    return True


class FakePrometheus:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.series: list[tuple[str, dict[str, str], float]] = []
        self.queries: list[str] = []
        fake = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = (parse_qs(url.query).get("query") or [""])[0]
                status, body = fake.answer(url.path, query)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = LoopbackServer.serving(Handler)
        self.url = self.server.origin

    def set(self, metric: str, labels: dict[str, str], value: float) -> None:
        """The current value of one series (a counter's total, a gauge's reading)."""
        with self.lock:
            self.series = [s for s in self.series if not (s[0] == metric and s[1] == labels)]
            self.series.append((metric, dict(labels), value))

    def answer(self, path: str, query: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.queries.append(query)
            if path != "/api/v1/query":
                return 404, {"status": "error", "error": "not found"}
            shape = _QUERY.fullmatch(query.strip())
            if shape is None:
                return 400, {"status": "error", "errorType": "bad_data", "error": "parse error"}
            sums: dict[str, float] = {}
            for metric, labels, value in self.series:
                if metric == shape["metric"] and _matches(labels, shape["matchers"]):
                    key = labels.get(shape["by"], "")
                    sums[key] = sums.get(key, 0.0) + value
        result = [{"metric": {shape["by"]: key}, "value": [0, repr(total)]} for key, total in sums.items()]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}

    def close(self) -> None:
        self.server.stop()
