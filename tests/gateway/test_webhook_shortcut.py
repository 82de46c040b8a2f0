"""The webhook shortcut (`app.GatewayApp`): deliveries skip Starlette's middleware and router, and
answer exactly as they would through them; `RequestHeaders` reads headers as Starlette does."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from gateway.app import create_app
from gateway.headers import RequestHeaders
from gateway.settings import load_gateway_settings
from tests.support.senders import SECRET_SETTINGS, load_fixtures

FIXTURE = next(f for f in load_fixtures() if f.provider == "github" and f.expected["status"] == "accepted")


def test_a_delivery_routed_as_usual_and_one_through_the_shortcut_are_one_delivery(
    redis_client: Any, redis_server: Any
) -> None:
    # Under a root path the shortcut stands aside and the router finds the same endpoint: the
    # second sending of the delivery, through the shortcut, is its duplicate.
    app = create_app(load_gateway_settings(redis_url=redis_server.url, **SECRET_SETTINGS))

    async def post(root_path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.post(
                root_path + FIXTURE.endpoint, content=FIXTURE.body, headers=FIXTURE.signed("routed-1")
            )

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        try:
            routed = await post("/k8s-ee")
            shortcut = await post("")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                wrong_method = await client.put(FIXTURE.endpoint, content=FIXTURE.body)
            return routed, shortcut, wrong_method
        finally:
            await app.state.k8s_ee.redis.aclose()

    routed, shortcut, wrong_method = asyncio.run(main())
    assert routed.status_code == 202 and routed.json()["status"] == "accepted"
    assert shortcut.status_code == 200 and shortcut.json()["status"] == "duplicate"
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]
    assert redis_client.zcard("k8s-ee:queue") == 1


names = st.sampled_from(["X-GitHub-Event", "x-github-event", "Content-Type", "X-Hub-Signature-256", "Host"])
values = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=20)


@given(st.lists(st.tuples(names, values), max_size=8), names)
def test_request_headers_read_as_starlettes_do(raw: list[tuple[str, str]], looked_up: str) -> None:
    # What the adapters ask of the headers: a value by name in any case, the first of repeated
    # ones, and the names and values in order (stored with the body), as Starlette's `Headers`.
    scope = {"headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in raw]}
    ours, starlettes = RequestHeaders.of(scope), Headers(scope=scope)
    assert ours.get(looked_up) == starlettes.get(looked_up)
    assert (looked_up in ours) == (looked_up in starlettes)
    assert (looked_up.upper() in ours) == (looked_up in starlettes)
    assert dict(ours.items()) == {k: starlettes[k] for k in starlettes}
