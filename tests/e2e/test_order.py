"""Order without host credentials, end to end: a sample of arrival orders (with repeats) of one
pull request's events through the gateway, the worker and the test API server; each ends as
the events in the order they happened end. (Every order is tried on the pure policy, in
tests/handlers/test_policy_order.py.) The worker runs after each delivery, so the early
arrivals are acted on before the late ones come."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.settings import WorkerConfig
from tests.fakes.kubeapi import KubeAPIServer
from tests.support.environments import app_commit, app_image, environment, namespace, send_generic
from tests.support.pull_requests import at, pull_request, send_github, sha
from tests.support.worker import drain, kube_cluster

# opened, synchronize, synchronize, closed, reopened: in the order they happened.
HISTORY = [
    ("opened", sha(1), 1),
    ("synchronize", sha(2), 2),
    ("synchronize", sha(3), 3),
    ("closed", sha(3), 4),
    ("reopened", sha(3), 5),
]


@pytest.mark.parametrize(
    "order",
    [
        pytest.param([3, 0, 1, 2, 4], id="closed-first"),
        pytest.param([0, 3, 2, 1, 4], id="synchronize-while-closed"),
        pytest.param([4, 3, 2, 1, 0], id="reversed"),
        pytest.param([0, 2, 3, 3, 1, 4, 0], id="repeats"),
        pytest.param([1, 4, 0, 3, 2, 1], id="reopen-early"),
    ],
)
def test_arrival_orders_of_a_pull_request_end_as_in_order(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig, order: list[int]
) -> None:
    client = gateway()
    cluster = kube_cluster(kube.url)
    for index in order:
        action, head, minute = HISTORY[index]
        send_github(client, pull_request(action, 81, head, minute))
        drain(worker_config, cluster)
    status = environment(client, "github", 81)
    assert status is not None and (status["state"], status["head_sha"]) == ("deployed", sha(3))
    assert app_commit(kube, "shop-pr-81") == sha(3)


@pytest.mark.parametrize(
    "order", [pytest.param([2, 0, 1], id="closed-first"), pytest.param([0, 2, 1, 0], id="late-update")]
)
def test_a_closed_pull_request_stays_closed_whatever_arrives_late(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig, order: list[int]
) -> None:
    client = gateway()
    cluster = kube_cluster(kube.url)
    history = [*HISTORY[:2], ("closed", sha(2), 3)]
    for index in order:
        action, head, minute = history[index]
        send_github(client, pull_request(action, 82, head, minute))
        drain(worker_config, cluster)
    assert namespace(kube, "shop-pr-82") is None
    if order[0] == 2:
        # The close came first: nothing was ever deployed, not even for a moment.
        assert kube.count_requests("PATCH", "/api/v1/namespaces/shop-pr-82") == 0


@pytest.mark.parametrize(
    "order", [pytest.param([3, 2, 1, 0], id="reversed"), pytest.param([1, 3, 0, 2], id="shuffled")]
)
def test_generic_requests_are_ordered_by_occurred_at(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig, order: list[int]
) -> None:
    client = gateway()
    cluster = kube_cluster(kube.url)
    requests: list[dict[str, Any]] = [
        {"action": "deploy", "sha": sha(1), "image": "registry.example.com/shop:one", "occurred_at": at(1)},
        {"action": "deploy", "sha": sha(2), "occurred_at": at(2)},
        {"action": "destroy", "occurred_at": at(3)},
        {"action": "deploy", "sha": sha(3), "occurred_at": at(4)},
    ]
    for index in order:
        send_generic(client, number=83, branch="main", **requests[index])
        drain(worker_config, cluster)
    status = environment(client, "generic", 83)
    assert status is not None and (status["state"], status["head_sha"]) == ("deployed", sha(3))
    assert app_commit(kube, "shop-pr-83") == sha(3)
    # The newest image named is kept by the deploys that name none.
    assert app_image(kube, "shop-pr-83") == "registry.example.com/shop:one"


def test_an_update_received_while_closed_is_kept_for_the_reopen(
    gateway: Any, kube: KubeAPIServer, worker_config: WorkerConfig
) -> None:
    # It happened: opened, closed, reopened, synchronize. The synchronize arrives before the reopen.
    client = gateway()
    cluster = kube_cluster(kube.url)
    for action, head, minute in [
        ("opened", sha(1), 1),
        ("closed", sha(1), 2),
        ("synchronize", sha(3), 4),
        ("reopened", sha(1), 3),
    ]:
        send_github(client, pull_request(action, 84, head, minute))
        drain(worker_config, cluster)
    status = environment(client, "github", 84)
    assert status is not None and (status["state"], status["head_sha"]) == ("deployed", sha(3))
    assert app_commit(kube, "shop-pr-84") == sha(3)
