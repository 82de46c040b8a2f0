"""A request's headers as a plain dict, read once from the ASGI scope.

The adapters look headers up by their documented names (`X-GitHub-Event`); `get` and `[]`
ignore case, as HTTP does. Starlette's `Headers` does that too, by scanning every raw
header on each lookup; a delivery makes a dozen lookups, so one dict read up front is
cheaper (bench/ingest.py). A header sent twice keeps its first value, as Starlette's does.
"""

from __future__ import annotations

from starlette.types import Scope


class RequestHeaders(dict[str, str]):
    """Names in lower case; lookups in any case."""

    @classmethod
    def of(cls, scope: Scope) -> RequestHeaders:
        headers = cls()
        for name, value in reversed(scope["headers"]):
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        return headers

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key.lower() if isinstance(key, str) else key)
