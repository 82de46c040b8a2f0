"""Headless Chromium, started by the test itself, driven over the DevTools protocol.

    with Browser(proxy=ingress.url) as browser:
        browser.open("http://shop-pr-1.preview.example.com/")
        browser.wait_for("document.body.innerText.includes('ready')")

Debian's `chromium` with the flags the project's tests use (a fresh profile each time), an
HTTP proxy for every non-loopback request (so preview hosts resolve to the test ingress), and
`--remote-debugging-port=0`: the browser picks a port and writes it to its profile, where this
reads it. Pages are read with `Runtime.evaluate`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def available() -> bool:
    return Path(CHROMIUM).exists()


class Browser:
    def __init__(self, *, proxy: str | None = None) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="k8s-ee-chromium-"))
        self.proxy = proxy
        self.process: subprocess.Popen[bytes] | None = None
        self.socket: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._open = contextlib.ExitStack()

    def __enter__(self) -> Browser:
        args = [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0"]
        if self.proxy:
            args += [f"--proxy-server={self.proxy}", "--proxy-bypass-list=<-loopback>"]
        self.process = subprocess.Popen(
            [*args, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        port = self._devtools_port()
        deadline = time.monotonic() + 20
        while True:
            targets = json.loads(
                urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read()
            )
            pages = [t for t in targets if t.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.socket = self._open.enter_context(connect(pages[0]["webSocketDebuggerUrl"], max_size=None))
        self.call("Page.enable")
        self.call("Runtime.enable")
        return self

    def _devtools_port(self) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 20
        while not marker.exists() or not marker.read_text().strip():
            if time.monotonic() > deadline or (self.process and self.process.poll() is not None):
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        return int(marker.read_text().split()[0])

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.socket is not None
        ident = next(self._ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            return None  # the page is between documents (loading)
        return answer.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                text = self.evaluate("document.body ? document.body.innerText : ''")
                raise AssertionError(f"page never had {expression!r}; it shows: {text!r}")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._open.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)
