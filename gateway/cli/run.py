"""`k8s-ee serve` (the web process) and `k8s-ee worker` (the arq worker): the service itself."""

from __future__ import annotations

import argparse
import gc
import logging
import os

from gateway.cli.output import EXAMPLE, Command


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


def register(commands: Command) -> None:
    serve_parser = commands.add_parser(
        "serve",
        help="run the webhook gateway (Starlette on uvicorn)",
        description="Run the webhook gateway. Its settings are K8S_EE_* variables (see the README).",
        epilog=EXAMPLE.format(
            "K8S_EE_GENERIC_TOKEN=dev-token K8S_EE_ADMIN_TOKEN=dev-admin k8s-ee serve --port 8080"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve_parser.add_argument("--host", help="listen address (default K8S_EE_HOST or 127.0.0.1)")
    serve_parser.add_argument("--port", type=int, help="listen port (default K8S_EE_PORT or 8080)")
    serve_parser.set_defaults(run=lambda args: serve(args.host, args.port))
    worker_parser = commands.add_parser(
        "worker",
        help="run the arq worker that acts on lifecycle events",
        description="Run the worker: it consumes the queued events and reconciles environments.",
        epilog=EXAMPLE.format("K8S_EE_CLUSTER=directory k8s-ee worker"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker_parser.set_defaults(run=lambda args: worker())


def serve(host: str | None, port: int | None) -> int:
    from gateway.app import create_app
    from gateway.cli.variables import refuse_unknown
    from gateway.serving import serve as run
    from gateway.settings import load_gateway_settings
    from gateway.wake import create_wake_app
    from providers.logs import configure_logging

    refuse_unknown(os.environ)
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
    from gateway.cli.variables import refuse_unknown
    from handlers.settings import load_worker_config
    from handlers.worker import run_worker
    from providers.hosts.settings import load_host_settings
    from providers.logs import configure_logging

    # All checked before anything starts, so a bad value is a message, not a traceback.
    refuse_unknown(os.environ)
    config = load_worker_config()
    hosts = load_host_settings()
    configure_logging(config.connection.log_level)
    logging.getLogger("k8s_ee.worker").info("starting worker")
    return run_worker(config, hosts)
