"""`k8s-ee`: run the web process (`serve`) or the worker (`worker`)."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from providers.logs import configure_logging
from providers.settings import SettingsError


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for the web process.

    Each webhook decodes a JSON payload of some thousand objects that die when it is
    answered. With CPython's default first threshold (700) a collection runs during
    nearly every request while those objects are alive, promoting them to older
    generations whose collections then cost milliseconds (the p99). Reference counting
    frees them anyway; the collector is only needed for cycles, which are rare here.
    Start-up objects are frozen so no collection walks them again.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="k8s-ee", description="k8s-ee gateway: preview environments per pull request"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the webhook gateway (Starlette on uvicorn)")
    serve_parser.add_argument("--host", help="listen address (default K8S_EE_HOST or 127.0.0.1)")
    serve_parser.add_argument("--port", type=int, help="listen port (default K8S_EE_PORT or 8080)")
    commands.add_parser("worker", help="run the arq worker that acts on lifecycle events")
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args.host, args.port)
        return worker()
    except SettingsError as exc:
        print(f"k8s-ee: {exc}", file=sys.stderr)
        return 2


def serve(host: str | None, port: int | None) -> int:
    from gateway.app import create_app
    from gateway.serving import serve as run
    from gateway.settings import load_gateway_settings
    from gateway.wake import create_wake_app

    settings = load_gateway_settings()
    configure_logging(settings.connection.log_level)
    app = create_app(settings)
    # The wake service: where hibernated environments' visitors arrive (K8S_EE_WAKE_PORT, 0: off).
    wake = create_wake_app(app.state.k8s_ee) if settings.web.wake_port else None
    tune_gc()
    run(
        app,
        wake,
        host=host or settings.web.host,
        port=port if port is not None else settings.web.port,
        wake_port=settings.web.wake_port,
        access_log=settings.web.access_log,
    )
    return 0


def worker() -> int:
    from handlers.settings import load_worker_config
    from handlers.worker import run_worker
    from providers.hosts.settings import load_host_settings

    # Both checked before anything starts, so a bad value is a message, not a traceback.
    config = load_worker_config()
    hosts = load_host_settings()
    configure_logging(config.connection.log_level)
    logging.getLogger("k8s_ee.worker").info("starting worker")
    return run_worker(config, hosts)


if __name__ == "__main__":
    sys.exit(main())
