"""The admin API's record of repositories whose webhook is registered, so the resync reads them
before they have any environment (the first change whose webhook was lost is found too).

`k8s-ee hooks ensure` adds each repository it made a hook for, and `hooks delete` takes it out,
through these routes: the command line needs the gateway's URL and admin token, never Redis, so an
operator can run it from a laptop. (Finding them from the hosts instead would cost a listing of
every repository the credentials see, and of each one's hooks, every interval.)

    GET    /api/v1/resync-repositories                                  what is registered
    PUT    /api/v1/resync-repositories/{provider}/{repository}          register one
    DELETE /api/v1/resync-repositories/{provider}/{repository}          take one out
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.api import admin, bad_request, provider_of
from gateway.state import AppState
from gateway.webhooks import JSON
from providers.events import Provider

MAX_REPOSITORY = 400


def _entry(request: Request) -> str:
    """`{provider}:{repository}` of the path; ValueError says what is wrong with it."""
    provider = provider_of(request.path_params["provider"])
    if provider is None or provider == Provider.GENERIC:
        raise ValueError("provider must be a code host (the generic trigger has no changes to list)")
    repository = str(request.path_params["repository"]).strip("/")
    if not repository or "/" not in repository or len(repository) > MAX_REPOSITORY:
        raise ValueError("repository must be its full path (`acme/web`, `group/sub/project`)")
    return f"{provider.value}:{repository}"


@admin
async def list_hooked(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    members: set[bytes] = await state.redis.smembers(state.settings.keys.hooked_repositories())  # type: ignore[misc]
    return JSON({"items": sorted(m.decode() for m in members)})


@admin
async def register_hooked(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    try:
        entry = _entry(request)
    except ValueError as exc:
        return bad_request(str(exc))
    added = await state.redis.sadd(state.settings.keys.hooked_repositories(), entry)  # type: ignore[misc]
    return JSON({"repository": entry, "registered": True, "new": bool(added)})


@admin
async def unregister_hooked(request: Request) -> Response:
    state: AppState = request.app.state.k8s_ee
    try:
        entry = _entry(request)
    except ValueError as exc:
        return bad_request(str(exc))
    removed = await state.redis.srem(state.settings.keys.hooked_repositories(), entry)  # type: ignore[misc]
    return JSON({"repository": entry, "registered": False, "was": bool(removed)})
