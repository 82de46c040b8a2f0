"""Outbound status webhooks: configuration, filters, signing, retries, dead letters, refusals, admin API.

Deliveries go to a real HTTP(S) receiver on loopback that checks each signature
with its own implementation of Standard Webhooks (written here from the
specification, not with providers/signing.py), through the real job function
and, end to end, a real arq worker on the session's Redis.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from arq import Retry
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import Worker
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from handlers.keys import Keys
from handlers.queue import Job
from handlers.settings import WorkerConfig, load_worker_config
from handlers.status import EnvironmentStatus
from handlers.status_webhooks.config import Subscriber, redact_url
from handlers.status_webhooks.deliver import send
from handlers.status_webhooks.destination import (
    Address,
    Refused,
    checked_addresses,
    refusal,
    system_resolver,
)
from handlers.status_webhooks.payload import SCHEMA_PATH, StatusEvent, schema_text
from handlers.status_webhooks.queue import (
    CTX_KEY,
    MAX_TRIES,
    Backoff,
    Runtime,
    deliver_status_webhook,
    enqueue_status_event,
    job_expiry_s,
    status_webhook_function,
)
from handlers.status_webhooks.store import DeliveryRecords, StatusDelivery
from handlers.worker import worker_settings
from providers.events import Provider
from providers.settings import SettingsError
from tests.support.loopback_server import LoopbackServer, QuietHandler
from tests.support.senders import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "whsec_" + base64.b64encode(b"status-webhook-key-of-32-bytes!!").decode()
OTHER_SECRET = "a-plain-secret-of-enough-bytes"
URL_TOKEN = "query-token-never-shown"
T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


# -- the receiver's own Standard Webhooks check ---------------------------------------


def standard_webhooks_valid(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Per the Standard Webhooks spec: HMAC-SHA256 over "{id}.{timestamp}.{body}", base64, "v1," prefix."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    given = [p.split(",", 1)[1].encode() for p in headers["webhook-signature"].split() if p.startswith("v1,")]
    return any(hmac.compare_digest(expected, g) for g in given)


def test_the_receivers_check_matches_the_specifications_vector() -> None:
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert standard_webhooks_valid(secret, headers, b'{"test": 2432232314}')
    assert not standard_webhooks_valid(secret, headers, b'{"test": 2432232315}')


# -- a receiver on loopback ------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    valid: bool


@dataclass
class Receiver:
    """Answers with `script` in order (the last answer repeats), checking each signature with `secret`."""

    secret: str
    script: list[int] = field(default_factory=lambda: [200])
    delay_s: float = 0.0
    tls: ssl.SSLContext | None = None
    received: list[Received] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                valid = standard_webhooks_valid(receiver.secret, headers, body)
                receiver.received.append(Received(self.path, headers, body, valid))
                status = receiver.script[min(len(receiver.received), len(receiver.script)) - 1]
                time.sleep(receiver.delay_s)
                answer = json.dumps({"answered": status, "valid": valid}).encode()
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)  # type: ignore[assignment]
        self.server = LoopbackServer.serving(Handler, tls=self.tls)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/k8s-ee?token={URL_TOKEN}"

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(**options: Any) -> Receiver:
        options.setdefault("secret", SECRET)
        started.append(Receiver(**options))
        return started[-1]

    yield start
    for r in started:
        r.close()


def mapped(table: dict[str, str]) -> Callable[[str, int], Awaitable[list[Address]]]:
    """A resolver answering from `table` (no DNS), counting its lookups."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[Address]:
        calls.append(host)
        return [ipaddress.ip_address(table[host])]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


# -- helpers ----------------------------------------------------------------------------


def settings(subscribers: list[dict[str, Any]], **overrides: Any) -> WorkerConfig:
    values: dict[str, Any] = {
        "status_webhooks": json.dumps(subscribers),
        "status_webhooks_allow_private": True,
    }
    return load_worker_config(**(values | overrides))


def environment(state: str = "deployed", repository: str = "acme/shop", **extra: Any) -> EnvironmentStatus:
    return EnvironmentStatus(
        provider=Provider.GITHUB,
        repository=repository,
        number=42,
        state=state,  # type: ignore[arg-type]
        namespace="shop-pr-42",
        head_sha="0123456789abcdef0123456789abcdef01234567",
        head_ref="feature/x",
        preview_url="https://shop-pr-42.preview.example",
        updated_at=T0,
        **extra,
    )


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


async def pool(url: str) -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(url))


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


# -- configuration ---------------------------------------------------------------------


def test_the_variable_is_parsed_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "K8S_EE_STATUS_WEBHOOKS",
        json.dumps(
            [
                {"url": "https://hooks.example/a", "secret": SECRET},
                {
                    "url": "http://hooks.example/b",
                    "secret": OTHER_SECRET,
                    "states": ["deployed", "failed"],
                    "repositories": ["Acme/*", "other/one"],
                },
            ]
        ),
    )
    monkeypatch.setenv("K8S_EE_STATUS_WEBHOOKS_RETRY_HOURS", "36")
    loaded = load_worker_config()
    first, second = loaded.worker.status_webhooks
    assert first.states is None and first.repositories is None
    assert second.states == ("deployed", "failed") and second.repositories == ("acme/*", "other/one")
    assert second.secret.get_secret_value() == OTHER_SECRET
    assert SECRET not in repr(loaded) and OTHER_SECRET not in str(loaded.worker.status_webhooks)
    assert (
        loaded.worker.status_webhooks_retry_hours == 36
        and loaded.worker.status_webhooks_allow_private is False
    )
    monkeypatch.delenv("K8S_EE_STATUS_WEBHOOKS")
    assert load_worker_config().worker.status_webhooks == []


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("[{", "is not valid JSON"),
        ('{"url": "https://a.example", "secret": "x"}', "list"),
        (json.dumps([{"url": "ftp://a.example/", "secret": SECRET}]), "entry 0, url: must be an http"),
        (json.dumps([{"url": "https://u:p@a.example/", "secret": SECRET}]), "user or password"),
        (json.dumps([{"url": "https://a.example/", "secret": "short-secret"}]), "entry 0, secret"),
        (json.dumps([{"url": "https://a.example/", "secret": "whsec_!!!not-base64!!!"}]), "not base64"),
        (json.dumps([{"url": "https://a.example/", "secret": SECRET, "states": ["up"]}]), "entry 0, states"),
        (json.dumps([{"url": "https://a.example/", "secret": SECRET, "states": []}]), "is empty"),
        (
            json.dumps([{"url": "https://a.example/", "secret": SECRET, "repositories": ["acme"]}]),
            "owner/repo",
        ),
        (
            json.dumps([{"url": "https://a.example/", "secret": SECRET, "state": ["failed"]}]),
            "entry 0, state",
        ),
        (
            json.dumps(
                [
                    {"url": "https://a.example/", "secret": SECRET},
                    {"url": "https://a.example/", "secret": SECRET},
                ]
            ),
            "entry 1: url appears twice",
        ),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable_and_never_the_secret(
    monkeypatch: pytest.MonkeyPatch, value: str, complaint: str
) -> None:
    monkeypatch.setenv("K8S_EE_STATUS_WEBHOOKS", value)
    with pytest.raises(SettingsError) as failure:
        load_worker_config()
    message = str(failure.value)
    assert "K8S_EE_STATUS_WEBHOOKS:" in message and complaint in message
    for secret in (SECRET, "short-secret", "!!!not-base64!!!", "u:p@"):
        assert secret not in message


def test_the_worker_registers_the_job_with_retries_left_to_the_window() -> None:
    functions = {f.name: f for f in worker_settings(load_worker_config())["functions"]}
    job = functions[Job.STATUS_WEBHOOK]
    assert job.max_tries == MAX_TRIES == status_webhook_function().max_tries
    # arq would need MAX_TRIES runs before stopping: more than a week of retries one second apart.
    assert MAX_TRIES > 7 * 86_400
    # The job's key (set once, at enqueue) outlives the window plus the longest last backoff.
    assert job_expiry_s(load_worker_config()) > 24 * 3600 + 2 * Backoff().cap_s


def test_redacted_urls_drop_the_query() -> None:
    assert redact_url(f"https://h.example:8443/p?token={URL_TOKEN}") == "https://h.example:8443/p?…"
    assert redact_url("https://h.example/p") == "https://h.example/p"


# -- filters -------------------------------------------------------------------------------


def test_states_and_repositories_filters() -> None:
    def subscriber(**filters: Any) -> Subscriber:
        return Subscriber.model_validate({"url": "https://h.example/", "secret": SECRET, **filters})

    everything = subscriber()
    failures = subscriber(states=["failed"])
    acme = subscriber(repositories=["ACME/*"])
    exact = subscriber(repositories=["other/one"], states=["deployed", "destroyed"])
    assert everything.wants("any/thing", "queued")
    assert failures.wants("any/thing", "failed") and not failures.wants("any/thing", "deployed")
    assert acme.wants("acme/shop", "deployed") and acme.wants("Acme/Group/Sub", "deployed")
    assert not acme.wants("acmex/shop", "deployed") and not acme.wants("other/acme", "deployed")
    assert exact.wants("Other/One", "destroyed") and not exact.wants("other/one", "failed")
    assert not exact.wants("other/one2", "deployed")


def test_one_delivery_per_matching_subscriber_and_none_twice(redis_server: Any, redis_client: Any) -> None:
    config = settings(
        [
            {"url": "https://all.example/", "secret": SECRET},
            {"url": "https://failures.example/", "secret": SECRET, "states": ["failed"]},
            {"url": "https://acme.example/", "secret": SECRET, "repositories": ["acme/*"]},
            {"url": "https://other.example/", "secret": SECRET, "repositories": ["other/*"]},
        ]
    )

    async def scenario() -> tuple[list[str], list[str], list[str], list[str]]:
        redis = await pool(redis_server.url)
        try:
            deployed = await enqueue_status_event(redis, config, environment("deployed"), "deploying")
            again = await enqueue_status_event(redis, config, environment("deployed"), "deploying")
            failed = await enqueue_status_event(
                redis, config, environment("failed", last_error="boom"), "deploying"
            )
            unchanged = await enqueue_status_event(redis, config, environment("deployed"), "deployed")
            return deployed, again, failed, unchanged
        finally:
            await redis.aclose()

    deployed, again, failed, unchanged = run(scenario())
    assert len(deployed) == 2 and again == deployed
    assert len(failed) == 3 and unchanged == []
    # One arq job per delivery, however often the change was reported.
    assert redis_client.zcard(load_worker_config().connection.queue_name) == 5
    urls = {json.loads(redis_client.get(f"k8s-ee:status-webhook:{i}"))["url"] for i in deployed}
    assert urls == {"https://all.example/", "https://acme.example/"}


# -- delivery ----------------------------------------------------------------------------


def test_retried_after_500s_then_delivered_by_the_worker(
    redis_server: Any, redis_client: Any, receiver: Callable[..., Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    hook = receiver(script=[500, 500, 200])
    config = settings([{"url": hook.url, "secret": SECRET}])
    caplog.set_level(logging.DEBUG)

    async def scenario() -> list[str]:
        redis = await pool(redis_server.url)
        try:
            ids = await enqueue_status_event(redis, config, environment("deployed"), "deploying")
            runtime = Runtime(
                settings=config,
                records=DeliveryRecords(redis, config.keys),
                backoff=Backoff(first_s=0.05, cap_s=0.1),
            )
            worker = Worker(
                functions=[status_webhook_function()],
                redis_pool=redis,
                queue_name=config.connection.queue_name,
                burst=True,
                poll_delay=0.01,
                handle_signals=False,
                ctx={"settings": config, CTX_KEY: runtime},
            )
            try:
                await worker.main()
            finally:
                await worker.close()
            return ids
        finally:
            await redis.aclose()

    [delivery] = run(scenario())
    assert [r.valid for r in hook.received] == [True, True, True]
    assert len({r.headers["webhook-id"] for r in hook.received}) == 1
    assert len({r.body for r in hook.received}) == 1
    first = hook.received[0]
    assert first.path == f"/hooks/k8s-ee?token={URL_TOKEN}"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["host"] == f"127.0.0.1:{hook.port}"
    assert abs(int(first.headers["webhook-timestamp"]) - time.time()) < 60

    body = json.loads(first.body)
    jsonschema.validate(body, json.loads(SCHEMA_PATH.read_text()))
    assert body["id"] == first.headers["webhook-id"] and body["type"] == "environment.state_changed"
    assert body["environment"] == {
        "provider": "github",
        "repository": "acme/shop",
        "number": 42,
        "namespace": "shop-pr-42",
        "state": "deployed",
        "previous_state": "deploying",
        "head_sha": "0123456789abcdef0123456789abcdef01234567",
        "head_ref": "feature/x",
        "preview_url": "https://shop-pr-42.preview.example",
        "last_error": None,
    }
    assert dt.datetime.fromisoformat(body["occurred_at"]) == T0

    record = json.loads(redis_client.get(f"k8s-ee:status-webhook:{delivery}"))
    assert record["state"] == "delivered" and record["attempts"] == 3
    assert record["last_status"] == 200 and record["last_error"] is None
    assert record["url"] == f"http://127.0.0.1:{hook.port}/hooks/k8s-ee?…"
    assert_no_secrets(redis_client, caplog.text)


def assert_no_secrets(redis_client: Any, *texts: str) -> None:
    stored = b"".join(
        redis_client.dump(key) or b"" for key in redis_client.scan_iter() if redis_client.type(key) != b"none"
    )
    decoded_key = base64.b64decode(SECRET.removeprefix("whsec_"))
    for secret in (SECRET.encode(), SECRET.removeprefix("whsec_").encode(), decoded_key, URL_TOKEN.encode()):
        assert secret not in stored
        for text in texts:
            assert secret.decode("latin-1") not in text


def test_dead_after_the_retry_window_with_the_last_answer_kept(
    redis_server: Any, redis_client: Any, receiver: Callable[..., Receiver], gateway: Any
) -> None:
    hook = receiver(script=[503])
    config = settings([{"url": hook.url, "secret": SECRET}], status_webhooks_retry_hours=24)
    clock = Clock(T0)

    async def enqueue() -> str:
        redis = await pool(redis_server.url)
        try:
            [delivery] = await enqueue_status_event(redis, config, environment("failed"), "deploying", now=T0)
            return delivery
        finally:
            await redis.aclose()

    delivery = run(enqueue())

    def job(now: dt.datetime) -> str:
        clock.now = now

        async def once() -> str:
            redis = await pool(redis_server.url)
            runtime = Runtime(
                settings=config,
                records=DeliveryRecords(redis, config.keys),
                clock=clock,
                backoff=Backoff(first_s=10, cap_s=3600),
            )
            try:
                return await deliver_status_webhook({"settings": config, CTX_KEY: runtime}, delivery)
            finally:
                await redis.aclose()

        try:
            return run(once())
        except Retry as retry:
            return f"retry {(retry.defer_score or 0) / 1000:.1f}"

    first = job(T0)
    assert first.startswith("retry ") and 5 <= float(first.split()[1]) <= 10
    record = json.loads(redis_client.get(f"k8s-ee:status-webhook:{delivery}"))
    assert record["state"] == "pending" and record["attempts"] == 1 and record["next_attempt_at"]
    later = job(T0 + dt.timedelta(hours=23, minutes=59))
    # The second failure: 20 s planned, half of it jittered.
    assert later.startswith("retry ") and 10 <= float(later.split()[1]) <= 20
    # The time signed is the attempt's: each retry carries its own timestamp.
    assert int(hook.received[1].headers["webhook-timestamp"]) == int(
        (T0 + dt.timedelta(hours=23, minutes=59)).timestamp()
    )
    assert job(T0 + dt.timedelta(hours=24)) == "dead"
    assert job(T0 + dt.timedelta(hours=25)) == "already dead"
    assert len(hook.received) == 3 and all(r.valid for r in hook.received)

    record = json.loads(redis_client.get(f"k8s-ee:status-webhook:{delivery}"))
    assert record["state"] == "dead" and record["attempts"] == 3 and record["last_status"] == 503
    assert record["last_error"] == "answered 503"
    assert json.loads(record["last_response"]) == {"answered": 503, "valid": True}
    assert record["first_attempt_at"].startswith("2026-05-01T12:00:00")

    client = gateway()
    dead = client.get("/api/v1/status-deliveries?state=dead", headers=ADMIN).json()
    assert [i["id"] for i in dead["items"]] == [delivery]
    assert dead["items"][0]["payload"]["environment"]["state"] == "failed"
    assert client.get("/api/v1/status-deliveries?state=pending", headers=ADMIN).json()["items"] == []


def test_410_gone_is_dead_at_once(
    redis_server: Any, redis_client: Any, receiver: Callable[..., Receiver]
) -> None:
    hook = receiver(script=[410])
    config = settings([{"url": hook.url, "secret": SECRET}])

    async def scenario() -> str:
        redis = await pool(redis_server.url)
        try:
            [delivery] = await enqueue_status_event(redis, config, environment(), "deploying")
            runtime = Runtime(settings=config, records=DeliveryRecords(redis, config.keys))
            return await deliver_status_webhook({"settings": config, CTX_KEY: runtime}, delivery)
        finally:
            await redis.aclose()

    assert run(scenario()) == "dead"
    assert len(hook.received) == 1


def test_redis_unavailable_is_retried_by_arq() -> None:
    from redis.asyncio import Redis

    config = settings([{"url": "https://hooks.example/", "secret": SECRET}])
    with socket_on_loopback() as port:
        pass

    async def scenario() -> None:
        redis = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
        runtime = Runtime(settings=config, records=DeliveryRecords(redis, config.keys))
        try:
            await deliver_status_webhook({"settings": config, CTX_KEY: runtime, "job_try": 3}, "swd_x")
        finally:
            await redis.aclose()

    with pytest.raises(Retry) as retry:
        run(scenario())
    assert 20_000 <= (retry.value.defer_score or 0) <= 40_000


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    backoff = Backoff(first_s=10, cap_s=3600)
    low = [backoff.delay(n, draw=lambda: 0.0) for n in range(1, 12)]
    high = [backoff.delay(n, draw=lambda: 1.0) for n in range(1, 12)]
    assert high[:4] == [10, 20, 40, 80] and high[-1] == 3600
    assert low == [h / 2 for h in high]
    assert all(h / 2 <= backoff.delay(n + 1) <= h for n, h in enumerate(high))
    assert backoff.delay(10_000, draw=lambda: 1.0) == 3600


# -- what is sent, and where -------------------------------------------------------------


def deliver_once(url: str, **options: Any) -> Any:
    options.setdefault("allow_private", True)
    options.setdefault("resolver", system_resolver)
    return run(send(url, SECRET.encode(), "evt_1", int(time.time()), b'{"id": "evt_1"}', **options))


def test_redirects_are_not_followed(receiver: Callable[..., Receiver]) -> None:
    hook = receiver(script=[302, 200])
    outcome = deliver_once(hook.url)
    assert not outcome.delivered and outcome.status == 302 and "redirects are not followed" in outcome.error
    assert len(hook.received) == 1


def test_a_slow_receiver_times_out(receiver: Callable[..., Receiver]) -> None:
    hook = receiver(delay_s=5.0)
    started = time.monotonic()
    outcome = deliver_once(hook.url, timeout=0.3)
    # Well under the receiver's 5 s: the timeout, not the answer, ended it.
    assert time.monotonic() - started < 4.0
    assert outcome.error == "no answer within 0.3 s" and not outcome.permanent


def test_a_closed_port_is_retried_not_dead() -> None:
    with socket_on_loopback() as port:
        pass
    outcome = deliver_once(f"http://127.0.0.1:{port}/")
    assert outcome.error.startswith("cannot connect") and not outcome.permanent


class socket_on_loopback:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_the_name_is_resolved_once_and_the_checked_address_used(receiver: Callable[..., Receiver]) -> None:
    """`hooks.example` exists in no DNS: reaching the receiver proves the pinned address was used."""
    hook = receiver()
    resolver = mapped({"hooks.example": "127.0.0.1"})
    outcome = deliver_once(f"http://hooks.example:{hook.port}/in", resolver=resolver)
    assert outcome.delivered and resolver.calls == ["hooks.example"]  # type: ignore[attr-defined]
    assert hook.received[0].headers["host"] == f"hooks.example:{hook.port}" and hook.received[0].valid


@pytest.mark.parametrize(
    ("url", "table", "reason"),
    [
        ("http://127.0.0.1:{port}/", {}, "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", {}, "cloud metadata"),
        ("http://10.0.0.1/", {}, "10.0.0.1 is a private address"),
        ("http://[::1]:{port}/", {}, "::1 is a loopback address"),
        ("http://[fd00:ec2::254]/", {}, "cloud metadata"),
        ("http://100.64.0.7/", {}, "carrier-grade NAT"),
        ("http://[::ffff:192.168.0.1]/", {}, "an IPv6 form of 192.168.0.1, a private address"),
        ("http://evil.example:{port}/", {"evil.example": "10.0.0.1"}, "evil.example resolves to 10.0.0.1"),
        (
            "http://evil.example:{port}/",
            {"evil.example": "127.0.0.1"},
            "resolves to 127.0.0.1, which is a loopback",
        ),
        ("http://metadata.google.internal/", {}, "metadata.google.internal is a cloud metadata service"),
    ],
)
def test_private_destinations_are_refused(
    receiver: Callable[..., Receiver], url: str, table: dict[str, str], reason: str
) -> None:
    hook = receiver()
    outcome = deliver_once(url.format(port=hook.port), allow_private=False, resolver=mapped(table))
    assert not outcome.delivered and outcome.permanent and reason in outcome.error
    assert outcome.error.startswith("refused: ")
    assert hook.received == []


def test_localhost_is_refused_by_what_it_resolves_to(receiver: Callable[..., Receiver]) -> None:
    hook = receiver()
    outcome = deliver_once(f"http://localhost:{hook.port}/", allow_private=False)
    assert outcome.permanent and "localhost resolves to" in outcome.error and "loopback" in outcome.error
    assert hook.received == []
    # Allowed, the same URL reaches the receiver.
    assert deliver_once(f"http://localhost:{hook.port}/", allow_private=True).delivered


def test_every_resolved_address_must_be_allowed() -> None:
    async def mixed(host: str, port: int) -> list[Address]:
        return [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.1.2.3")]

    with pytest.raises(Refused, match=r"resolves to 10\.1\.2\.3"):
        run(checked_addresses("mixed.example", 443, allow_private=False, resolver=mixed))
    assert run(checked_addresses("mixed.example", 443, allow_private=True, resolver=mixed))


def test_public_addresses_pass() -> None:
    for address in ("93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808"):
        assert refusal(ipaddress.ip_address(address)) is None
    for address in ("0.0.0.0", "224.0.0.1", "240.0.0.1", "fe80::1", "192.0.2.1", "2002:a00:1::"):
        assert refusal(ipaddress.ip_address(address)) is not None


def test_a_refused_destination_is_dead_at_once_in_the_job(redis_server: Any, redis_client: Any) -> None:
    config = settings(
        [{"url": "http://evil.example/hook", "secret": SECRET}], status_webhooks_allow_private=False
    )

    async def scenario() -> str:
        redis = await pool(redis_server.url)
        try:
            [delivery] = await enqueue_status_event(redis, config, environment(), "deploying")
            runtime = Runtime(
                settings=config,
                records=DeliveryRecords(redis, config.keys),
                resolver=mapped({"evil.example": "10.0.0.1"}),
            )
            assert await deliver_status_webhook({"settings": config, CTX_KEY: runtime}, delivery) == "dead"
            return delivery
        finally:
            await redis.aclose()

    record = json.loads(redis_client.get(f"k8s-ee:status-webhook:{run(scenario())}"))
    assert record["attempts"] == 1 and "evil.example resolves to 10.0.0.1" in record["last_error"]


# -- https: SNI and the certificate are checked against the URL's host --------------------


@dataclass
class Certificates:
    ca: Path
    chain: Path
    key: Path


def issue(hostname: str) -> Certificates:
    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test CA"))
        .issuer_name(name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name(hostname))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder = Path(tempfile.mkdtemp(prefix="k8s-ee-tls-"))
    files = Certificates(folder / "ca.pem", folder / "chain.pem", folder / "key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


def tls_receiver(receiver: Callable[..., Receiver], hostname: str) -> tuple[Receiver, ssl.SSLContext]:
    files = issue(hostname)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(files.chain, files.key)
    client = ssl.create_default_context(cafile=str(files.ca))
    return receiver(tls=server), client


def test_https_goes_to_the_checked_address_with_the_hosts_sni_and_certificate(
    receiver: Callable[..., Receiver],
) -> None:
    hook, trust = tls_receiver(receiver, "hooks.example")
    resolver = mapped({"hooks.example": "127.0.0.1"})
    outcome = deliver_once(f"https://hooks.example:{hook.port}/tls", resolver=resolver, tls=trust)
    assert outcome.delivered, outcome.error
    assert hook.sni == ["hooks.example"] and resolver.calls == ["hooks.example"]  # type: ignore[attr-defined]
    assert hook.received[0].headers["host"] == f"hooks.example:{hook.port}" and hook.received[0].valid


def test_https_refuses_a_certificate_for_another_name(receiver: Callable[..., Receiver]) -> None:
    hook, trust = tls_receiver(receiver, "someone-else.example")
    resolver = mapped({"hooks.example": "127.0.0.1"})
    outcome = deliver_once(f"https://hooks.example:{hook.port}/tls", resolver=resolver, tls=trust)
    assert not outcome.delivered and not outcome.permanent
    assert "certificate" in outcome.error.lower() and hook.received == []


# -- the payload's schema ----------------------------------------------------------------


def test_the_schema_file_is_the_models_schema() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), "run: python -m handlers.status_webhooks.payload"
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    event = StatusEvent.from_status(environment("hibernated"), None, T0).model_dump(mode="json")
    jsonschema.validate(event, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**event, "type": "something.else"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**event, "environment": {**event["environment"], "state": "up"}}, schema)
    # Every key is always sent, null when unknown.
    without_namespace = {k: v for k, v in event["environment"].items() if k != "namespace"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**event, "environment": without_namespace}, schema)
    # Derived from the change: the same change gives the same event id, another change another.
    assert StatusEvent.from_status(environment("hibernated"), None, T0).id == event["id"]
    assert StatusEvent.from_status(environment("hibernated"), "deployed", T0).id != event["id"]


# -- the admin API -----------------------------------------------------------------------


def test_the_admin_api_lists_pages_and_shows_deliveries(
    redis_server: Any, redis_client: Any, gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = settings([{"url": f"https://hooks.example/in?token={URL_TOKEN}", "secret": SECRET}])

    async def scenario() -> list[str]:
        redis = await pool(redis_server.url)
        try:
            ids = []
            for minute, state in enumerate(["queued", "deploying", "deployed"]):
                status = environment(state).model_copy(
                    update={"updated_at": T0 + dt.timedelta(minutes=minute)}
                )
                ids += await enqueue_status_event(
                    redis, config, status, None, now=T0 + dt.timedelta(minutes=minute)
                )
            return ids
        finally:
            await redis.aclose()

    oldest, middle, newest = run(scenario())
    client = gateway()
    assert client.get("/api/v1/status-deliveries").status_code == 401
    assert client.get(f"/api/v1/status-deliveries/{newest}").status_code == 401
    assert (
        client.get("/api/v1/status-deliveries", headers={"Authorization": "Bearer nope"}).status_code == 401
    )

    listing = client.get("/api/v1/status-deliveries", headers=ADMIN)
    assert listing.status_code == 200
    assert [i["id"] for i in listing.json()["items"]] == [newest, middle, oldest]
    first = client.get("/api/v1/status-deliveries?limit=2&state=pending", headers=ADMIN).json()
    assert [i["id"] for i in first["items"]] == [newest, middle]
    rest = client.get(
        "/api/v1/status-deliveries",
        params={"limit": 2, "state": "pending", "cursor": first["next_cursor"]},
        headers=ADMIN,
    ).json()
    assert [i["id"] for i in rest["items"]] == [oldest] and rest["next_cursor"] is None
    assert client.get("/api/v1/status-deliveries?state=delivered", headers=ADMIN).json()["items"] == []
    assert client.get("/api/v1/status-deliveries?state=bogus", headers=ADMIN).status_code == 400
    assert client.get("/api/v1/status-deliveries?limit=0", headers=ADMIN).status_code == 400
    assert client.get("/api/v1/status-deliveries?cursor=nonsense", headers=ADMIN).status_code == 400

    one = client.get(f"/api/v1/status-deliveries/{middle}", headers=ADMIN)
    assert one.status_code == 200
    shown = one.json()
    assert (
        shown["state"] == "pending" and shown["attempts"] == 0 and shown["environment_state"] == "deploying"
    )
    assert shown["url"] == "https://hooks.example/in?…"
    assert shown["payload"]["environment"]["state"] == "deploying"
    assert client.get("/api/v1/status-deliveries/swd_missing", headers=ADMIN).status_code == 404
    assert_no_secrets(redis_client, listing.text, one.text, caplog.text)


def test_records_are_bounded(redis_server: Any, redis_client: Any) -> None:
    async def scenario() -> tuple[list[str], list[str], int]:
        redis = await pool(redis_server.url)
        records = DeliveryRecords(redis, Keys("k8s-ee:"), max_records=3)
        try:
            ids = [f"swd_{n}" for n in range(5)]
            for n, delivery in enumerate(ids):
                record = StatusDelivery(
                    id=delivery,
                    event_id=f"evt_{n}",
                    subscriber="s",
                    url="https://hooks.example/",
                    repository="acme/shop",
                    environment="github:acme/shop:42",
                    environment_state="deployed",
                    created_at=T0 + dt.timedelta(minutes=n),
                    body="{}",
                )
                assert await records.create(record)
                assert not await records.create(record)
            page, _ = await records.page(limit=10)
            left = sum([await redis.exists(f"k8s-ee:status-webhook:{i}") for i in ids])
            return ids, [r.id for r in page], left
        finally:
            await redis.aclose()

    ids, kept, left = run(scenario())
    assert kept == ids[::-1][:3] and left == 3
