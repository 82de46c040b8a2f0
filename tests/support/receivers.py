"""A status-webhook subscriber for the tests: it checks each signature its own way (not ours)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from tests.support.loopback_server import LoopbackServer, QuietHandler

SUBSCRIBER_SECRET = "whsec_" + base64.b64encode(b"subscriber-secret-of-32-bytes!!!").decode()


class Receiver:
    """A status-webhook subscriber that checks each signature its own way."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = base64.b64decode(SUBSCRIBER_SECRET.removeprefix("whsec_"))
                signed = f"{self.headers['webhook-id']}.{self.headers['webhook-timestamp']}.".encode() + body
                expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
                ok = f"v1,{expected}" in self.headers["webhook-signature"].split()
                received.append({"ok": ok, "body": json.loads(body)})
                self.send_response(200 if ok else 401)
                self.end_headers()

        self.server = LoopbackServer.serving(Handler)
        self.url = f"{self.server.origin}/hooks"

    def close(self) -> None:
        self.server.stop()
