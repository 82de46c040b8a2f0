"""The installation's figures as a gateway exports them, from records a worker wrote in Redis:
environments by state, the hibernated share of idle environments, rate-limit budgets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.desired import Desired
from handlers.keys import Keys
from handlers.status import EnvironmentStatus
from providers.events import Provider
from tests.e2e.test_metrics_e2e import sample

KEYS = Keys("k8s-ee:")
NOW = datetime.now(UTC)


def environment(redis: Any, number: int, state: str, idle: timedelta) -> None:
    """An environment as the worker leaves it: its status, and its desired state's last activity."""
    status = EnvironmentStatus(
        provider=Provider.GITHUB,
        repository="acme/web",
        number=number,
        state=state,
        updated_at=NOW,  # type: ignore[arg-type]
    )
    redis.set(KEYS.status(status.key), status.model_dump_json())
    redis.zadd(KEYS.statuses(), {status.key: NOW.timestamp()})
    desired = Desired(
        provider=Provider.GITHUB, repository="acme/web", number=number, action="deploy", updated_at=NOW - idle
    )
    redis.set(KEYS.desired(status.key), desired.model_dump_json())


def test_environments_idle_share_and_budgets(gateway: Any, redis_client: Any) -> None:
    client = gateway()
    environment(redis_client, 1, "deployed", timedelta(minutes=5))  # in use
    environment(redis_client, 2, "deployed", timedelta(hours=2))  # idle 1 h, not 4 h
    environment(redis_client, 3, "deployed", timedelta(hours=5))  # idle 4 h
    environment(redis_client, 4, "hibernated", timedelta(hours=30))
    environment(
        redis_client, 5, "hibernated", timedelta(minutes=1)
    )  # asleep is idle, whatever its last event
    environment(redis_client, 6, "failed", timedelta(days=9))  # not awake: not counted as idle
    redis_client.hset(
        KEYS.rate_limits(),
        mapping={
            "github:77": '{"remaining": 400.0, "limit": 5000.0}',
            "gitlab:token": "12",
        },  # the old form too
    )
    text = client.get("/metrics").text

    assert sample(text, "k8s_ee_environments", 'state="deployed"') == 3
    assert sample(text, "k8s_ee_environments", 'state="hibernated"') == 2
    assert sample(text, "k8s_ee_environments", 'state="destroyed"') == 0
    assert sample(text, "k8s_ee_idle_awake_environments", 'idle_for="1h"') == 2
    assert sample(text, "k8s_ee_idle_awake_environments", 'idle_for="4h"') == 1
    assert sample(text, "k8s_ee_idle_awake_environments", 'idle_for="7d"') == 0
    assert sample(text, "k8s_ee_hibernated_share_of_idle", 'idle_for="1h"') == 2 / 4
    assert sample(text, "k8s_ee_hibernated_share_of_idle", 'idle_for="4h"') == 2 / 3
    assert sample(text, "k8s_ee_hibernated_share_of_idle", 'idle_for="7d"') == 1
    assert sample(text, "k8s_ee_provider_rate_limit_remaining", 'key="github:77"') == 400
    assert sample(text, "k8s_ee_provider_rate_limit_limit", 'key="github:77"') == 5000
    assert sample(text, "k8s_ee_provider_rate_limit_remaining", 'key="gitlab:token"') == 12
    assert sample(text, "k8s_ee_provider_rate_limit_limit", 'key="gitlab:token"') is None


def test_no_figures_when_redis_does_not_answer(gateway: Any, redis_server: Any) -> None:
    # A Redis that refuses: the figures are absent (an alert sees them gone), never stale.
    client = gateway(redis_url="redis://127.0.0.1:1/0", redis_timeout=0.5)
    text = client.get("/metrics").text
    assert "k8s_ee_queue_depth" not in text and "k8s_ee_environments" not in text
    assert (sample(text, "k8s_ee_redis_errors_total") or 0) >= 1
