"""The webhooks of the fake GitHub: repository and organisation hooks, their deliveries and redelivery, and a
GitHub App's own webhook (`/app/hook/*`, the app's JWT only).

Mixed into `FakeGitHub`. As on GitHub: hooks are listed oldest first, paged with `page`/`per_page`
and `Link`; a second hook with the URL of one the repository (or organisation) has is refused with
422 `Validation Failed` / "Hook already exists on this repository"; a PATCH replaces `config`
whole, so a secret left out is removed; the secret is shown as `********`. Deliveries are listed
newest first, paged by `cursor` only (the next cursor in the `Link` header); a redelivery
(`POST …/deliveries/{id}/attempts`, 202 `{}`) is a new delivery with the same GUID and
`redelivery: true`, sent again. "Sending" calls `receiver(url, headers, body)`, which answers the
HTTP status (None for no answer); by default every delivery is answered 200.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .base import Failure, Request, Response

if TYPE_CHECKING:
    from .github import GitHubRepo

Receiver = Callable[[str, dict[str, str], bytes], int | None]


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class GitHubDelivery:
    id: int
    guid: str
    event: str
    action: str | None
    payload: dict[str, Any]
    status_code: int  # 0: no answer
    redelivery: bool = False
    delivered_at: datetime = field(default_factory=now)

    @property
    def status(self) -> str:
        if self.status_code == 0:
            return "timed out"
        return "OK" if 200 <= self.status_code < 300 else f"Invalid HTTP Response: {self.status_code}"


@dataclass
class GitHubHook:
    id: int
    config: dict[str, str]
    events: list[str]
    active: bool
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    deliveries: list[GitHubDelivery] = field(default_factory=list)  # oldest first


@dataclass
class HookSet:
    """The hooks of a repository, of an organisation, or (one, id 0) a GitHub App's."""

    kind: str  # "Repository", "Organization", "App"
    noun: str  # as GitHub's duplicate message names it
    hooks: dict[int, GitHubHook] = field(default_factory=dict)


def validation_failed(message: str) -> Failure:
    return Failure(
        422,
        "Validation Failed",
        body={
            "message": "Validation Failed",
            "errors": [{"resource": "Hook", "code": "custom", "message": message}],
            "documentation_url": "https://docs.github.com/rest/repos/webhooks#create-a-repository-webhook",
            "status": "422",
        },
    )


class GitHubHooks:
    """Handlers for the webhook endpoints; `FakeGitHub` provides the rest."""

    # Provided by FakeGitHub.
    url: str
    origin: str
    lock: Any
    repos: dict[str, GitHubRepo]
    _repo: Callable[[Request], GitHubRepo]
    _app_only: Callable[[Request], None]
    _paged: Callable[[Request, Sequence[Any], Callable[[Any], Any]], Response]
    _body: Callable[[Request], dict[str, Any]]

    _hook_ids = itertools.count(400_000)
    _delivery_ids = itertools.count(7_000_000)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.organisations: dict[str, HookSet] = {}
        self.app_hook = HookSet(
            "App", "app", {0: GitHubHook(0, {"url": "", "content_type": "form"}, [], True)}
        )
        # The events the App is subscribed to (`GET /app` answers them).
        self.app_events: list[str] = ["pull_request", "issue_comment"]
        self.receiver: Receiver = lambda url, headers, body: 200
        super().__init__(*args, **kwargs)

    def hook_routes(self, add: Callable[[str, str, Callable[[Request], Response]], None]) -> None:
        for base in ("/repos/{owner}/{repo}", "/orgs/{org}"):
            add("GET", f"{base}/hooks", self.list_hooks)
            add("POST", f"{base}/hooks", self.create_hook)
            add("GET", f"{base}/hooks/{{hook_id}}", self.get_hook)
            add("PATCH", f"{base}/hooks/{{hook_id}}", self.update_hook)
            add("DELETE", f"{base}/hooks/{{hook_id}}", self.delete_hook)
            add("POST", f"{base}/hooks/{{hook_id}}/pings", self.ping_hook)
            add("GET", f"{base}/hooks/{{hook_id}}/deliveries", self.list_deliveries)
            add("GET", f"{base}/hooks/{{hook_id}}/deliveries/{{delivery_id}}", self.get_delivery)
            add("POST", f"{base}/hooks/{{hook_id}}/deliveries/{{delivery_id}}/attempts", self.redeliver)
        add("GET", "/orgs/{org}", self.get_organisation)
        add("GET", "/app/hook/config", self.get_app_hook_config)
        add("PATCH", "/app/hook/config", self.update_app_hook_config)
        add("GET", "/app/hook/deliveries", self.list_deliveries)
        add("GET", "/app/hook/deliveries/{delivery_id}", self.get_delivery)
        add("POST", "/app/hook/deliveries/{delivery_id}/attempts", self.redeliver)

    # -- state, for tests ----------------------------------------------------------------------

    def add_organisation(self, name: str) -> HookSet:
        with self.lock:
            found = self.organisations[name.lower()] = HookSet("Organization", "organization")
            return found

    def hooks_of(self, where: str) -> list[GitHubHook]:
        """A repository's hooks (`owner/repo`), an organisation's (`org`), or the App's (`app`)."""
        with self.lock:
            return sorted(self._set_named(where).hooks.values(), key=lambda h: h.id)

    def add_hook(self, where: str, url: str, events: Sequence[str] = ("push",), **config: str) -> GitHubHook:
        with self.lock:
            hook = GitHubHook(
                next(self._hook_ids), {"url": url, "content_type": "json", **config}, list(events), True
            )
            self._set_named(where).hooks[hook.id] = hook
            return hook

    def add_delivery(
        self,
        where: str,
        hook_id: int,
        status_code: int,
        *,
        event: str = "pull_request",
        action: str | None = "opened",
        guid: str | None = None,
        delivered_at: datetime | None = None,
        payload: dict[str, Any] | None = None,
        redelivery: bool = False,
    ) -> GitHubDelivery:
        with self.lock:
            delivery = GitHubDelivery(
                next(self._delivery_ids),
                guid or str(uuid.uuid4()),
                event,
                action,
                payload if payload is not None else {"action": action},
                status_code,
                redelivery,
                delivered_at or now(),
            )
            hook = self._set_named(where).hooks[hook_id]
            hook.deliveries.append(delivery)
            hook.deliveries.sort(key=lambda d: (d.delivered_at, d.id))
            return delivery

    def _set_named(self, where: str) -> HookSet:
        if where == "app":
            return self.app_hook
        if "/" in where:
            return self.repos[where.lower()].hook_set
        return self.organisations[where.lower()]

    # -- routes --------------------------------------------------------------------------------

    def _set(self, request: Request) -> HookSet:
        if "owner" in request.params:
            return self._repo(request).hook_set
        if "org" in request.params:
            if request.principal[0] == "app":
                raise Failure(403, "Resource not accessible by integration")
            found = self.organisations.get(request.params["org"].lower())
            if found is None:
                raise Failure(404, "Not Found")
            return found
        self._app_only(request)
        return self.app_hook

    def _hook(self, request: Request) -> tuple[HookSet, GitHubHook]:
        hooks = self._set(request)
        wanted = request.params.get("hook_id", "0")
        hook = hooks.hooks.get(int(wanted)) if wanted.isdigit() else None
        if hook is None:
            raise Failure(404, "Not Found")
        return hooks, hook

    def _check_config(self, hooks: HookSet, config: Any, except_id: int | None = None) -> dict[str, str]:
        if not isinstance(config, dict) or not str(config.get("url") or "").strip():
            raise validation_failed("url can't be blank")
        if config.get("content_type", "form") not in ("json", "form"):
            raise validation_failed("content_type is not included in the list")
        for other in hooks.hooks.values():
            if other.id != except_id and other.config.get("url") == config["url"]:
                raise validation_failed(f"Hook already exists on this {hooks.noun}")
        return {str(k): str(v) for k, v in config.items()}

    def list_hooks(self, request: Request) -> Response:
        hooks = self._set(request)
        return self._paged(
            request,
            sorted(hooks.hooks.values(), key=lambda h: h.id),
            lambda h: self.hook_json(request, hooks, h),
        )

    def get_hook(self, request: Request) -> Response:
        hooks, hook = self._hook(request)
        return Response(200, self.hook_json(request, hooks, hook))

    def create_hook(self, request: Request) -> Response:
        hooks = self._set(request)
        data = self._body(request)
        if data.get("name", "web") != "web":
            raise validation_failed("Name must be 'web'")
        config = self._check_config(hooks, data.get("config"))
        events = data.get("events", ["push"])
        if not isinstance(events, list) or not all(isinstance(e, str) and e for e in events):
            raise validation_failed("events is invalid")
        hook = GitHubHook(
            next(self._hook_ids), config, list(dict.fromkeys(events)), bool(data.get("active", True))
        )
        hooks.hooks[hook.id] = hook
        return Response(201, self.hook_json(request, hooks, hook))

    def update_hook(self, request: Request) -> Response:
        hooks, hook = self._hook(request)
        data = self._body(request)
        if "config" in data:
            # The whole config is replaced: a secret left out is removed.
            hook.config = self._check_config(hooks, data["config"], except_id=hook.id)
        if "events" in data:
            hook.events = list(dict.fromkeys(data["events"]))
        hook.events += [e for e in data.get("add_events", []) if e not in hook.events]
        hook.events = [e for e in hook.events if e not in data.get("remove_events", [])]
        if "active" in data:
            hook.active = bool(data["active"])
        hook.updated_at = now()
        return Response(200, self.hook_json(request, hooks, hook))

    def delete_hook(self, request: Request) -> Response:
        hooks, hook = self._hook(request)
        del hooks.hooks[hook.id]
        return Response(204)

    def ping_hook(self, request: Request) -> Response:
        _, hook = self._hook(request)
        self._send(
            hook, str(uuid.uuid4()), "ping", None, {"zen": "Keep it logically awesome.", "hook_id": hook.id}
        )
        return Response(204)

    def list_deliveries(self, request: Request) -> Response:
        _, hook = self._hook(request)
        per_page = min(100, max(1, request.int_param("per_page", 30)))
        deliveries = sorted(hook.deliveries, key=lambda d: (d.delivered_at, d.id), reverse=True)
        if request.query.get("redelivery") in ("true", "false"):
            deliveries = [d for d in deliveries if d.redelivery == (request.query["redelivery"] == "true")]
        start = 0
        cursor = request.query.get("cursor")
        if cursor:
            positions = [i for i, d in enumerate(deliveries) if str(d.id) == cursor]
            if not positions:
                raise Failure(422, "Validation failed, or the endpoint has been spammed.")
            start = positions[0]
        chosen = deliveries[start : start + per_page]
        response = Response(200, [self.delivery_json(d) for d in chosen])
        if start + per_page < len(deliveries):
            query = {"per_page": str(per_page), "cursor": str(deliveries[start + per_page].id)}
            response.headers["Link"] = f'<{self.origin}{request.path}?{urlencode(query)}>; rel="next"'
        return response

    def get_delivery(self, request: Request) -> Response:
        _, hook = self._hook(request)
        delivery = self._delivery(hook, request)
        return Response(
            200,
            {
                **self.delivery_json(delivery),
                "url": hook.config.get("url"),
                "request": {"headers": self._headers(hook, delivery), "payload": delivery.payload},
                "response": {"headers": {}, "payload": ""},
            },
        )

    def redeliver(self, request: Request) -> Response:
        _, hook = self._hook(request)
        original = self._delivery(hook, request)
        self._send(hook, original.guid, original.event, original.action, original.payload, redelivery=True)
        return Response(202, {})

    def get_organisation(self, request: Request) -> Response:
        name = request.params["org"]
        if name.lower() not in self.organisations:
            raise Failure(404, "Not Found")
        return Response(200, {"login": name, "id": sum(map(ord, name)), "url": f"{self.url}/orgs/{name}"})

    def get_app_hook_config(self, request: Request) -> Response:
        self._app_only(request)
        return Response(200, self.app_config_json())

    def update_app_hook_config(self, request: Request) -> Response:
        self._app_only(request)
        data = self._body(request)
        config = self.app_hook.hooks[0].config
        for name in ("url", "content_type", "secret", "insecure_ssl"):
            if name in data:
                config[name] = str(data[name])
        return Response(200, self.app_config_json())

    # -- sending -------------------------------------------------------------------------------

    def _delivery(self, hook: GitHubHook, request: Request) -> GitHubDelivery:
        wanted = request.params["delivery_id"]
        for delivery in hook.deliveries:
            if str(delivery.id) == wanted:
                return delivery
        raise Failure(404, "Not Found")

    def _headers(self, hook: GitHubHook, delivery: GitHubDelivery) -> dict[str, str]:
        headers = {
            "X-GitHub-Event": delivery.event,
            "X-GitHub-Delivery": delivery.guid,
            "X-GitHub-Hook-ID": str(hook.id),
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/fake",
        }
        secret = hook.config.get("secret")
        if secret:
            # As GitHub signs every delivery with the hook's secret.
            digest = hmac.new(secret.encode(), self._payload(delivery), hashlib.sha256).hexdigest()
            headers["X-Hub-Signature-256"] = f"sha256={digest}"
        return headers

    @staticmethod
    def _payload(delivery: GitHubDelivery) -> bytes:
        return json.dumps(delivery.payload).encode()

    def _send(
        self,
        hook: GitHubHook,
        guid: str,
        event: str,
        action: str | None,
        payload: dict[str, Any],
        *,
        redelivery: bool = False,
    ) -> GitHubDelivery:
        delivery = GitHubDelivery(next(self._delivery_ids), guid, event, action, payload, 0, redelivery)
        status = self.receiver(
            hook.config.get("url", ""), self._headers(hook, delivery), self._payload(delivery)
        )
        delivery.status_code = status or 0
        hook.deliveries.append(delivery)
        return delivery

    # -- JSON shapes ---------------------------------------------------------------------------

    def hook_json(self, request: Request, hooks: HookSet, hook: GitHubHook) -> dict[str, Any]:
        base = f"{self.origin}{request.path.split('/hooks')[0]}/hooks/{hook.id}"
        config = dict(hook.config)
        if "secret" in config:
            config["secret"] = "********"
        last = hook.deliveries[-1] if hook.deliveries else None
        return {
            "type": hooks.kind,
            "id": hook.id,
            "name": "web",
            "active": hook.active,
            "events": list(hook.events),
            "config": config,
            "updated_at": iso(hook.updated_at),
            "created_at": iso(hook.created_at),
            "url": base,
            "test_url": f"{base}/test",
            "ping_url": f"{base}/pings",
            "deliveries_url": f"{base}/deliveries",
            "last_response": {
                "code": last.status_code if last else None,
                "status": last.status.lower() if last else "unused",
                "message": None,
            },
        }

    def delivery_json(self, delivery: GitHubDelivery) -> dict[str, Any]:
        return {
            "id": delivery.id,
            "guid": delivery.guid,
            "delivered_at": iso(delivery.delivered_at),
            "redelivery": delivery.redelivery,
            "duration": 0.05,
            "status": delivery.status,
            "status_code": delivery.status_code,
            "event": delivery.event,
            "action": delivery.action,
            "installation_id": None,
            "repository_id": None,
            "throttled_at": None,
        }

    def app_config_json(self) -> dict[str, Any]:
        config = self.app_hook.hooks[0].config
        return {
            "content_type": config.get("content_type", "form"),
            "insecure_ssl": config.get("insecure_ssl", "0"),
            "secret": "********" if config.get("secret") else None,
            "url": config.get("url", ""),
        }
