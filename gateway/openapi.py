"""The OpenAPI document of the admin API (`/api/v1`), served at `GET /api/v1/openapi.json`.

Built from the models the routes answer with, so the schemas cannot drift from the answers; the
paths are written here, and a test checks that they and the app's routes are the same set and that
`docs/openapi.json` (`python -m gateway.openapi > docs/openapi.json`) is this document.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from gateway.api_actions import ACTIONS, COMMANDS, SYNC, ChangeSeen, PreserveFor
from gateway.store import DeliveryEntry
from gateway.webhooks import JSON
from handlers.status import AppliedBy, EnvironmentStatus, ReportState
from handlers.status_webhooks.store import StatusDelivery
from providers.events import LifecycleEvent, Provider
from providers.states import State
from providers.verdicts import Verdict

REF = "#/components/schemas/{model}"
VERSION = "1"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


PROVIDER = _enum(p.value for p in Provider)
STATES = _enum(get_args(State))
VERDICTS = _enum(get_args(Verdict))
ENVIRONMENT_PATH = [
    _path("provider", "the provider the environment's events come from", PROVIDER),
    _path("repository", "the repository's full path, slashes included (`acme/web`, `group/sub/project`)"),
    _path("number", "the pull or merge request number", {"type": "integer", "minimum": 0}),
]
HOOKED_PATH = ENVIRONMENT_PATH[:2]
HOOKED = {
    "type": "object",
    "properties": {
        "repository": {"type": "string"},
        "registered": {"type": "boolean"},
        "new": {"type": "boolean"},
        "was": {"type": "boolean"},
    },
}
COMMON_ERRORS = {
    "401": _error("missing or wrong admin token, or the admin API is off (no K8S_EE_ADMIN_TOKEN)"),
    "503": _error("Redis did not answer in time (Retry-After is set)"),
}


def _operation(summary: str, responses: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"summary": summary, **fields, "responses": {**responses, **COMMON_ERRORS}}


def _paths() -> dict[str, Any]:
    page = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref("DeliveryEntry")},
            "next_cursor": {"type": ["string", "null"]},
        },
        "required": ["items", "next_cursor"],
    }
    return {
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {"description": "the OpenAPI document", "content": {"application/json": {}}}
                },
            }
        },
        "/api/v1/deliveries": {
            "get": _operation(
                "The delivery log, newest first",
                {"200": _json(page, "a page of attempts"), "400": _error("a bad filter or cursor")},
                parameters=[
                    _query("provider", "only this provider's", PROVIDER),
                    _query("repository", "only this repository's (case-insensitive)", {"type": "string"}),
                    _query("verdict", "only attempts answered so", VERDICTS),
                    _query(
                        "limit",
                        "at most this many",
                        {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    ),
                    _query("cursor", "the next_cursor of the page before", {"type": "string"}),
                ],
            )
        },
        "/api/v1/deliveries/{delivery_id}": {
            "get": _operation(
                "One delivery: every attempt, the stored request of an accepted one, and what the worker did with it",
                {"200": _json(_ref("Delivery"), "the delivery"), "404": _error("not in the log")},
                parameters=[
                    _path("delivery_id", "the delivery id (GitHub's X-GitHub-Delivery, …)"),
                    _query("provider", "when two providers sent the same id", PROVIDER),
                ],
            )
        },
        "/api/v1/deliveries/{delivery_id}/replay": {
            "post": _operation(
                "Queue a stored accepted delivery's event again (the worker's policy decides what it means now)",
                {
                    "202": _json(_ref("Replayed"), "queued, as a new attempt in the delivery's log"),
                    "400": _error("two providers accepted this id: pass provider"),
                    "404": _error("not in the log"),
                    "409": _error("the delivery was never accepted: it has no event"),
                },
                parameters=[
                    _path("delivery_id", "the delivery id"),
                    _query("provider", "the provider", PROVIDER),
                ],
            )
        },
        "/api/v1/environments": {
            "get": _operation(
                "Every environment, most recently updated first",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"items": {"type": "array", "items": _ref("EnvironmentStatus")}},
                        },
                        "the environments",
                    ),
                    "400": _error("a bad filter"),
                },
                parameters=[
                    _query("provider", "only this provider's", PROVIDER),
                    _query("repository", "only this repository's", {"type": "string"}),
                    _query("state", "only those in this state", STATES),
                ],
            )
        },
        "/api/v1/environments/{namespace}": {
            "get": _operation(
                "One environment, by its namespace",
                {"200": _json(_ref("Environment"), "the environment"), "404": _error("no such environment")},
                parameters=[_path("namespace", "the environment's namespace (`web-pr-42`)")],
            )
        },
        "/api/v1/resync-repositories": {
            "get": _operation(
                "The repositories whose webhook `k8s-ee hooks ensure` registered: resynced even without an environment",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"items": {"type": "array", "items": {"type": "string"}}},
                        },
                        "`provider:repository` entries",
                    )
                },
            )
        },
        "/api/v1/resync-repositories/{provider}/{repository}": {
            "put": _operation(
                "Register a repository for the resync (its webhook is registered)",
                {"200": _json(HOOKED, "registered"), "400": _error("a bad provider or repository")},
                parameters=HOOKED_PATH,
            ),
            "delete": _operation(
                "Take a repository out of the resync's registered ones (its webhook was removed)",
                {"200": _json(HOOKED, "taken out"), "400": _error("a bad provider or repository")},
                parameters=HOOKED_PATH,
            ),
        },
        "/api/v1/environments/{provider}/{repository}/{number}": {
            "get": _operation(
                "One environment, by its change",
                {"200": _json(_ref("Environment"), "the environment"), "404": _error("no such environment")},
                parameters=ENVIRONMENT_PATH,
            )
        },
        "/api/v1/environments/{provider}/{repository}/{number}/{action}": {
            "post": _operation(
                "Hibernate, wake, destroy, preserve or unpreserve an environment, or tell the gateway what its "
                "change looks like now (sync): stored and queued as an event, like a webhook's",
                {
                    "202": _json(_ref("Accepted"), "stored and queued"),
                    "200": _json(
                        _ref("Duplicate"), "this Idempotency-Key was accepted before: nothing done twice"
                    ),
                    "400": _error("a bad path, body or Idempotency-Key"),
                    "404": _error(
                        "no environment is known for this change (hibernate, wake, destroy), or no such action"
                    ),
                    "413": _error("the body is too large"),
                },
                parameters=[
                    *ENVIRONMENT_PATH,
                    _path("action", "what to do", _enum((*ACTIONS, *COMMANDS, SYNC))),
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "the delivery id to store the action under; a retry with the same key is a duplicate",
                        "schema": {"type": "string", "maxLength": 200},
                    },
                ],
                requestBody={
                    "required": False,
                    "description": "sync: the change as its host shows it; preserve: for how many hours "
                    "(the worker's default when left out); the others take none",
                    "content": {
                        "application/json": {"schema": {"anyOf": [_ref("ChangeSeen"), _ref("PreserveFor")]}}
                    },
                },
            )
        },
        "/api/v1/status-deliveries": {
            "get": _operation(
                "Status webhook deliveries, newest first",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "items": {"type": "array", "items": _ref("StatusDeliveryShown")},
                                "next_cursor": {"type": ["string", "null"]},
                            },
                        },
                        "a page of deliveries",
                    ),
                    "400": _error("a bad filter or cursor"),
                },
                parameters=[
                    _query("state", "only those in this state", _enum(("pending", "delivered", "dead"))),
                    _query(
                        "limit",
                        "at most this many",
                        {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    ),
                    _query("cursor", "the next_cursor of the page before", {"type": "string"}),
                ],
            )
        },
        "/api/v1/status-deliveries/{delivery_id}": {
            "get": _operation(
                "One status webhook delivery",
                {
                    "200": _json(_ref("StatusDeliveryShown"), "the delivery"),
                    "404": _error("no such delivery"),
                },
                parameters=[_path("delivery_id", "the status delivery id")],
            )
        },
    }


def _schemas() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        DeliveryEntry,
        EnvironmentStatus,
        ReportState,
        AppliedBy,
        LifecycleEvent,
        StatusDelivery,
        ChangeSeen,
        PreserveFor,
    ]
    _, found = models_json_schema([(m, "serialization") for m in models], ref_template=REF)
    schemas: dict[str, Any] = dict(found["$defs"])
    schemas["Error"] = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
    schemas["Delivery"] = {
        "type": "object",
        "properties": {
            "delivery_id": {"type": "string"},
            "attempts": {
                "type": "array",
                "items": {
                    "allOf": [
                        _ref("DeliveryEntry"),
                        {
                            "type": "object",
                            "properties": {
                                "request": {
                                    "type": "object",
                                    "description": "accepted attempts: the stored request, authentication headers removed",
                                    "properties": {"headers": {"type": "object"}, "body": {"type": "string"}},
                                },
                                "applied": {"anyOf": [_ref("AppliedBy"), {"type": "null"}]},
                            },
                        },
                    ]
                },
            },
        },
        "required": ["delivery_id", "attempts"],
    }
    schemas["Environment"] = {
        "allOf": [
            _ref("EnvironmentStatus"),
            {"type": "object", "properties": {"report": {"anyOf": [_ref("ReportState"), {"type": "null"}]}}},
        ]
    }
    schemas["Accepted"] = {
        "type": "object",
        "properties": {
            "status": {"const": "accepted"},
            "delivery_id": {"type": "string"},
            "event": _ref("LifecycleEvent"),
        },
        "required": ["status", "delivery_id", "event"],
    }
    schemas["Duplicate"] = {
        "type": "object",
        "properties": {
            "status": {"const": "duplicate"},
            "delivery_id": {"type": "string"},
            "reason": {"type": "string"},
        },
        "required": ["status", "delivery_id", "reason"],
    }
    schemas["Replayed"] = {
        "type": "object",
        "properties": {
            "status": {"const": "accepted"},
            "delivery_id": {"type": "string"},
            "attempt": {
                "type": "integer",
                "description": "the replay's attempt number in the delivery's log",
            },
            "event": _ref("LifecycleEvent"),
        },
        "required": ["status", "delivery_id", "attempt", "event"],
    }
    shown = dict(schemas.pop("StatusDelivery"))
    properties = dict(shown.get("properties", {}))
    properties.pop("body", None)
    properties["payload"] = {"type": "object", "description": "the JSON body that is signed and sent"}
    required = [name for name in shown.get("required", []) if name != "body"] + ["payload"]
    schemas["StatusDeliveryShown"] = {
        **shown,
        "title": "StatusDeliveryShown",
        "properties": properties,
        "required": required,
    }
    return dict(sorted(schemas.items()))


@cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "k8s-ee gateway admin API",
            "version": VERSION,
            "description": "Inspect deliveries and environments, and act on environments. Every route but this "
            "document takes `Authorization: Bearer <K8S_EE_ADMIN_TOKEN>`.",
        },
        "security": [{"adminToken": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
    }


async def serve(request: Request) -> Response:
    return JSON(document())


def rendered() -> str:
    """The document as committed in docs/openapi.json."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(rendered())
