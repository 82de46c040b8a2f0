"""The waiting page in a real browser: headless Chromium, started here, visits a hibernated
preview through an ingress controller routing as ingress-nginx (and as Traefik) does.

The page loads, shows its progress (asked, then starting the app), and lands on the app by
itself once the test marks the app's pod ready: the wake service's stream tells it, it checks the
host is routed to the app again, and it reloads. No step of this is timed by the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.kubeapi import KubeAPIServer
from tests.support.chromium import Browser, available
from tests.support.ingress import PreviewIngress
from tests.support.lifecycle import (
    DOMAIN,
    WAKE_HOST,
    Gateway,
    gateway_with_wake,
    hold_pods,
    ingress_backend,
    lifecycle_config,
    mark_ready,
    operators,
)
from tests.support.loopback_server import LoopbackServer, QuietHandler
from tests.support.pull_requests import REPO, send, sha
from tests.support.worker import BackgroundWorker, drain, kube_cluster, wait_for

pytestmark = pytest.mark.skipif(not available(), reason="needs Debian's chromium")

CONFIG = "projectId: shop\napp:\n  port: 8080\n"
NS = "shop-pr-42"
APP_PAGE = b"<!doctype html><title>the app</title><h1 id='app'>Hello from the app</h1>"


class App(QuietHandler):
    """The app's pods, once the ingress sends the host to them."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(APP_PAGE)))
        self.end_headers()
        self.wfile.write(APP_PAGE)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()


@pytest.fixture
def gw(redis_server: Any, redis_client: Any) -> Iterator[Gateway]:
    with gateway_with_wake(redis_server.url) as gateway:
        yield gateway


@pytest.mark.parametrize("mode", ["ingress-nginx", "traefik"])
def test_the_waiting_page_shows_progress_and_lands_on_the_app(
    mode: str, gw: Gateway, kube: KubeAPIServer, tmp_path: Path, redis_server: Any
) -> None:
    config = lifecycle_config(tmp_path, redis_server.url, CONFIG)
    operators(kube)
    send(gw.api, "opened", 42, sha(1), 0)
    drain(config, kube_cluster(kube.url))
    assert gw.environment(NS)["state"] == "deployed"
    gw.act(f"github:{REPO}:42", "hibernate")
    drain(config, kube_cluster(kube.url))
    assert gw.environment(NS)["state"] == "hibernated" and ingress_backend(kube, NS) == f"{NS}-wake"

    with LoopbackServer.serving(App) as app:
        ingress = PreviewIngress(kube, {WAKE_HOST: gw.wake_url}, app.origin, mode=mode)
        hold_pods(kube)  # the woken app's pod stays unready until the test says otherwise
        try:
            with BackgroundWorker(config, kube_cluster(kube.url)), Browser(proxy=ingress.url) as browser:
                browser.open(f"http://{NS}.{DOMAIN}/catalog?page=2")
                # The waiting page: what wakes, and its steps.
                browser.wait_for("document.title === 'Waking up the preview'")
                assert NS in browser.evaluate("document.body.innerText")
                # Progress: the worker woke it, and the app is starting.
                browser.wait_for("document.body.dataset.phase === 'starting'")
                browser.wait_for("document.getElementById('step-asked').className === 'done'")
                assert browser.evaluate("document.getElementById('step-starting').className") == "now"
                # The test marks the app's pod ready: the page lands on the app by itself.
                wait_for(lambda: kube.get_object("Deployment", NS, f"{NS}-app")["spec"]["replicas"] == 1)  # type: ignore[index]
                mark_ready(kube)
                browser.wait_for("document.getElementById('app') !== null", timeout=30)
                assert browser.evaluate("location.href") == f"http://{NS}.{DOMAIN}/catalog?page=2"
                assert browser.evaluate("document.title") == "the app"
        finally:
            ingress.close()
    assert gw.environment(NS)["state"] == "deployed"
    assert ingress_backend(kube, NS) == f"{NS}-app"
    # The browser's requests for the preview went to the wake service first, then to the app.
    routed = [where for url, where in ingress.routed if url.startswith(f"{NS}.{DOMAIN}/")]
    assert routed[0].endswith(f":{gw.wake_url.rsplit(':', 1)[1]}") and routed[-1] == app.origin
    # It learnt of readiness from the event stream (one request held open), not by polling.
    urls = [url for url, _ in ingress.routed]
    assert any("/.k8s-ee-wake/events" in url for url in urls)
    assert not any("/.k8s-ee-wake/status" in url for url in urls)
    assert sum(1 for url in urls if url == f"{NS}.{DOMAIN}/catalog?page=2") <= 12  # the page, probes, the app
