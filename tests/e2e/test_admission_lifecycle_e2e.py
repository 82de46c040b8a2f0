"""Admission slots freed by the lifecycle, end to end: a hibernation and a TTL expiry promote the
next environment in the queue, and K8S_EE_ADMISSION_COUNT_HIBERNATED decides whether a sleeping
environment keeps its slot.

Webhooks and the admin API over HTTP to the gateway; the worker runs what is queued (the sweep
as its tick would queue it) against the test API server. One slot for the whole installation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.settings import WorkerConfig
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.lifecycle import (
    ADMIN,
    Gateway,
    gateway_with_wake,
    idle_since,
    lifecycle_config,
    sweep_now,
)
from tests.support.pull_requests import REPO, send, sha
from tests.support.worker import drain, kube_cluster

CONFIG = "projectId: shop\napp:\n  port: 8080\n"


@pytest.fixture
def gw(redis_server: Any, redis_client: Any) -> Iterator[Gateway]:
    with gateway_with_wake(redis_server.url) as gateway:
        yield gateway


def config_for(tmp_path: Path, redis_server: Any, **overrides: Any) -> WorkerConfig:
    return lifecycle_config(
        tmp_path,
        redis_server.url,
        CONFIG,
        max_environments=1,
        resync_interval=0,
        **overrides,
    )


def key(number: int) -> str:
    return f"github:{REPO}:{number}"


def state(gw: Gateway, number: int) -> str:
    return str(gw.environment(f"shop-pr-{number}")["state"])


def one_running_one_queued(gw: Gateway, kube: KubeAPIServer, config: WorkerConfig) -> None:
    send(gw.api, "opened", 1, sha(1), 0)
    drain(config, kube_cluster(kube.url))
    send(gw.api, "opened", 2, sha(2), 1)
    drain(config, kube_cluster(kube.url))
    assert state(gw, 1) == "deployed"
    waiting = gw.api.get(f"/api/v1/environments/github/{REPO}/2", headers=ADMIN).json()
    assert waiting["state"] == "queued", waiting


def hibernate(gw: Gateway, kube: KubeAPIServer, config: WorkerConfig, number: int) -> None:
    answer = gw.act(key(number), "hibernate")
    assert answer.status_code == 202, answer.text
    drain(config, kube_cluster(kube.url))
    assert state(gw, number) == "hibernated"


def test_a_hibernation_frees_its_slot_for_the_next_in_line(
    gw: Gateway, kube: KubeAPIServer, tmp_path: Path, redis_server: Any
) -> None:
    config = config_for(tmp_path, redis_server)
    one_running_one_queued(gw, kube, config)
    hibernate(gw, kube, config, 1)
    # Asleep, it holds no slot (K8S_EE_ADMISSION_COUNT_HIBERNATED unset): the next one runs.
    assert state(gw, 2) == "deployed"
    assert kube.get_object("Namespace", "", "shop-pr-2") is not None


def test_counting_hibernated_ones_keeps_the_slot_until_the_ttl_expires(
    gw: Gateway, kube: KubeAPIServer, tmp_path: Path, redis_server: Any, redis_client: Any
) -> None:
    config = config_for(tmp_path, redis_server, admission_count_hibernated=True)
    one_running_one_queued(gw, kube, config)
    hibernate(gw, kube, config, 1)
    # Asleep, it still counts: the next one keeps waiting.
    assert gw.api.get(f"/api/v1/environments/github/{REPO}/2", headers=ADMIN).json()["state"] == "queued"
    assert kube.get_object("Namespace", "", "shop-pr-2") is None

    # Its TTL runs out: the sweep destroys it, and that frees the slot.
    idle_since(redis_client, key(1), time.time() - config.lifecycle.ttl - 60)
    sweep_now(config)
    drain(config, kube_cluster(kube.url))
    assert state(gw, 1) == "destroyed"
    assert state(gw, 2) == "deployed"


def test_a_ttl_expiry_promotes_the_next_in_line(
    gw: Gateway, kube: KubeAPIServer, tmp_path: Path, redis_server: Any, redis_client: Any
) -> None:
    config = config_for(tmp_path, redis_server)
    one_running_one_queued(gw, kube, config)
    idle_since(redis_client, key(1), time.time() - config.lifecycle.ttl - 60)
    sweep_now(config)
    drain(config, kube_cluster(kube.url))
    assert state(gw, 1) == "destroyed"
    assert state(gw, 2) == "deployed"
