"""The baseline of bench/ingest.py: a bare Starlette app that reads the body and answers 202."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def receive(request: Request) -> Response:
    await request.body()
    return Response(b'{"status":"accepted"}', status_code=202, media_type="application/json")


app = Starlette(routes=[Route("/webhooks/github", receive, methods=["POST"])])
