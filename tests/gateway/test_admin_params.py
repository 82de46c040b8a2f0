"""Malformed admin API parameters are the caller's mistake (400 naming them), never Redis being down (503)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.senders import ADMIN_TOKEN, load_fixtures

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LISTINGS = ["/api/v1/deliveries", "/api/v1/status-deliveries"]


@pytest.mark.parametrize("path", LISTINGS)
@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"cursor": "nan"}, "cursor"),
        ({"cursor": "nan:x"}, "cursor"),
        ({"cursor": "inf:x"}, "cursor"),
        ({"cursor": "-inf:x"}, "cursor"),
        ({"cursor": "1e999:x"}, "cursor"),
        ({"cursor": "12:"}, "cursor"),
        ({"cursor": "abc"}, "cursor"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "nan"}, "limit"),
        ({"limit": "1e3"}, "limit"),
        ({"limit": "\u0663"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "9" * 40}, "limit"),
    ],
)
def test_malformed_parameters_are_400(gateway: Any, path: str, params: dict[str, str], named: str) -> None:
    client = gateway()
    answer = client.get(path, params=params, headers=ADMIN)
    assert answer.status_code == 400, answer.text
    assert named in answer.json()["error"]


def test_a_returned_cursor_still_pages(gateway: Any) -> None:
    client = gateway()
    fixture = next(f for f in load_fixtures("github") if f.name == "pull_request.opened")
    for n in range(3):
        client.post(fixture.endpoint, content=fixture.body, headers=fixture.signed(f"page-{n}"))
    first = client.get("/api/v1/deliveries", params={"limit": "2"}, headers=ADMIN).json()
    rest = client.get(
        "/api/v1/deliveries", params={"limit": "2", "cursor": first["next_cursor"]}, headers=ADMIN
    ).json()
    ids = [e["delivery_id"] for e in first["items"] + rest["items"]]
    assert ids == ["page-2", "page-1", "page-0"]
