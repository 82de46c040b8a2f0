"""A stateful Kubernetes API server of our own for tests: see `server.KubeAPIServer`."""

from .controls import Fault, RequestRecord
from .server import KubeAPIServer
from .status import KubeError

__all__ = ["Fault", "KubeAPIServer", "KubeError", "RequestRecord"]
