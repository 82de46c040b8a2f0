"""`k8s-ee`: run the web process (`serve`) or the worker (`worker`)."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from gateway.logs import configure_logging
from gateway.settings import SettingsError, load_settings


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
    serve = commands.add_parser("serve", help="run the webhook gateway (Starlette on uvicorn)")
    serve.add_argument("--host", help="listen address (default K8S_EE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default K8S_EE_PORT or 8080)")
    commands.add_parser("worker", help="run the arq worker that acts on lifecycle events")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"k8s-ee: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)

    if args.command == "serve":
        import uvicorn

        from gateway.app import create_app

        app = create_app(settings)
        tune_gc()
        uvicorn.run(
            app,
            host=args.host or settings.host,
            port=args.port if args.port is not None else settings.port,
            log_config=None,
            access_log=settings.access_log,
            server_header=False,
        )
        return 0

    from handlers.settings import load_worker_settings
    from handlers.worker import run_worker
    from providers.host_settings import load_host_settings

    try:
        worker_settings = load_worker_settings()
        load_host_settings()  # checked here, so a bad one is a message, not a traceback
    except SettingsError as exc:
        print(f"k8s-ee: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("k8s_ee.worker").info("starting worker")
    return run_worker(worker_settings)


if __name__ == "__main__":
    sys.exit(main())
