"""One adapter per source of events.

Each inbound module (`github`, `gitlab`, `bitbucket_cloud`, `bitbucket_server`,
`generic`) is sans-I/O: pure functions of (headers, body, secrets) that verify a
delivery and normalise it into a `providers.events.LifecycleEvent`, or refuse it.
Outbound calls to the hosts live in the `*_api` modules, which only the worker
imports: the web process never loads an SDK.
"""
