"""Serve the web app and, on a port of its own, the wake service: two uvicorn servers, one process.

They share the process's state (Redis, the store), and stop together: the main server takes the
signals (SIGTERM, SIGINT), and the wake server follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator

import uvicorn
from starlette.applications import Starlette


class _Follower(uvicorn.Server):
    """A server that leaves the signals to the main one."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _follow(main: uvicorn.Server, follower: uvicorn.Server) -> None:
    while not main.should_exit:
        await asyncio.sleep(0.1)
    follower.should_exit = True


def serve(
    app: Starlette, wake: Starlette | None, *, host: str, port: int, wake_port: int, access_log: bool
) -> None:
    common = {"host": host, "log_config": None, "access_log": access_log, "server_header": False}
    main = uvicorn.Server(uvicorn.Config(app, port=port, **common))  # type: ignore[arg-type]
    if wake is None:
        main.run()
        return
    follower = _Follower(uvicorn.Config(wake, port=wake_port, lifespan="off", **common))  # type: ignore[arg-type]

    async def both() -> None:
        await asyncio.gather(main.serve(), follower.serve(), _follow(main, follower))

    # The loop uvicorn itself would run (uvloop when installed), as `main.run()` does above.
    with asyncio.Runner(loop_factory=main.config.get_loop_factory()) as runner:
        runner.run(both())
