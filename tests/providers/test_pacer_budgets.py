"""A host's last reported budget stands until its window renews: after that it is not known.

The resync stops listing a provider whose budget is low and waits for a better one; if the low
figure stood for ever, a gateway whose only host calls are the resync's (webhooks off) would never
list that provider again.
"""

from __future__ import annotations

from providers.hosts.base import Budget
from providers.hosts.http import HttpPolicy
from providers.hosts.pacer import Pacer


def test_a_budget_is_forgotten_when_its_window_renews() -> None:
    pacer = Pacer("github", "test", HttpPolicy(backoff=0))
    pacer.record("token", 50, reset_at=1_000_000_100.0, limit=5000)
    assert pacer.budgets(now=1_000_000_099.0) == {"github:token": Budget(50.0, 5000.0)}
    assert pacer.budgets(now=1_000_000_100.0) == {}


def test_a_budget_without_a_reset_time_stands_until_the_next_answer() -> None:
    pacer = Pacer("bitbucket-server", "test", HttpPolicy(backoff=0))
    pacer.record("token", 50, reset_at=1_000_000_100.0)
    pacer.record("token", 40)  # a later answer without a reset time
    assert pacer.budgets(now=2_000_000_000.0) == {"bitbucket-server:token": Budget(40.0, None)}


def test_the_headers_reset_time_is_kept() -> None:
    pacer = Pacer("gitlab", "test", HttpPolicy(backoff=0))
    pacer.record_headers("token", {"RateLimit-Remaining": "7", "RateLimit-Reset": "1000000100"})
    assert pacer.budgets(now=1_000_000_000.0) == {"gitlab:token": Budget(7.0, None)}
    assert pacer.budgets(now=1_000_000_101.0) == {}
