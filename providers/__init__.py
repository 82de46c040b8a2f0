"""One adapter per source of events.

Each inbound module (`github`, `gitlab`, `bitbucket_cloud`, `bitbucket_server`,
`generic`) is sans-I/O: pure functions of (headers, body, secrets) that verify a
delivery and normalise it into a `providers.events.LifecycleEvent`, or refuse it.
Outbound calls to the hosts live in `providers.hosts`, one SDK client per host
(`providers.hosts.github`, `gitlab`, `bitbucket_cloud`, `bitbucket_server`, and
their `*_hooks` modules). The worker and the `k8s-ee` command line import them;
the web process (`gateway.app`) never does, so it never loads an SDK.
"""
