"""Local HTTP servers that answer like the code hosts' REST APIs, for tests that drive the real SDKs.

One module per host (`github`, `gitlab`, `bitbucket_cloud`, `bitbucket_server`), each a small
router of handler functions over an in-memory state; `base` holds the server, the request log and
fault injection they share. What is written back on changes (comments, deployments, environments,
statuses) lives in each host's `*_writes` module, and its webhooks (hooks, delivery logs,
redelivery) in its `*_hooks` module, both mixed into its fake. To serve more of an API,
add a handler and a `router.add` line in that host's `routes()` (or `write_routes()`).
"""

from .base import Failure, FakeHost, Fault, RecordedRequest, Request, Response, fake_sha
from .bitbucket_cloud import FakeBitbucketCloud
from .bitbucket_server import FakeBitbucketServer
from .github import FakeGitHub
from .gitlab import FakeGitLab

__all__ = [
    "Failure",
    "FakeBitbucketCloud",
    "FakeBitbucketServer",
    "FakeGitHub",
    "FakeGitLab",
    "FakeHost",
    "Fault",
    "RecordedRequest",
    "Request",
    "Response",
    "fake_sha",
]
