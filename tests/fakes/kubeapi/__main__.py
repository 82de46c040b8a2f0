"""`python -m tests.fakes.kubeapi --port 0`: serve the test API server until killed; prints its URL."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from .server import KubeAPIServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.kubeapi", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument(
        "--ready-delay", type=float, default=0.0, help="seconds from a pod's creation until it is ready"
    )
    args = parser.parse_args(argv)

    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with KubeAPIServer(args.host, args.port, ready_delay=args.ready_delay) as server:
        print(server.url, flush=True)
        stopped.wait()


if __name__ == "__main__":
    main()
