"""The OpenAPI document: FastAPI's, with every body, answer and error as the server really has them.

Routes say what they take and answer through decorator arguments only, built with the
helpers here, so the request path stays what it was:
- `response_model=`: the 2xx body (endpoints return responses, so it is never run), and
  `responses={200: event_stream(...)}` beside it for a route that can stream;
- `responses=errors(...)`: the error statuses, in the surface's error shape;
- `openapi_extra=json_body(Model)`: a JSON body the endpoint reads itself (the chat routes
  of the fast lane, and the routes that validate through `deps.parsed`), plus header
  parameters; `PUBLIC` for routes that need no key.

`document()` then finishes what FastAPI generated: the schemas the helpers carried along
join `components`, and FastAPI's 422 goes, since every validation error here is a 400.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from hypereal.api.schemas import Error

CARRIED = "x-hypereal-schemas"
"""Where a helper's output keeps the component schemas its `$ref`s need, until `document()`."""
REF = "#/components/schemas/{model}"

DESCRIPTIONS = {
    400: "The request is invalid: a field is missing, of the wrong type or out of its range.",
    401: "No valid API key (`Authorization: Bearer ck_...` or `x-api-key`).",
    402: "The account's credits do not cover the request; nothing was charged.",
    403: "The key may not use this endpoint (the admin API needs the admin key).",
    404: "Not found, or not the caller's.",
    409: "Conflicts with the resource's state, or an `Idempotency-Key` reused with another body or still in progress.",
    413: "The request body is larger than the server accepts.",
    429: "The key's hourly rate limit is spent; retry after `Retry-After` seconds.",
    502: "The upstream provider failed; the charge was refunded.",
    503: "No configured provider can serve the request now, or the database is unreachable.",
    504: "The upstream provider timed out; the charge was refunded.",
}
RATE_LIMIT_HEADERS = {
    "Retry-After": {"description": "Seconds until a request is allowed again.", "schema": {"type": "integer"}},
    "X-RateLimit-Limit": {"description": "Requests per hour of the key.", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Unix time the window frees a request.", "schema": {"type": "integer"}},
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An API key (`ck_...`), or the admin key."},
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "The same keys, as Anthropic clients send them.",
    },
}
PUBLIC: dict[str, Any] = {"security": []}
"""`openapi_extra` of a route that answers without a key."""

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same key and body give the same answer, charged once; another body with the key is a 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
}
ANTHROPIC_HEADERS = (
    {"name": "anthropic-version", "in": "header", "required": False, "schema": {"type": "string"}},
    {
        "name": "anthropic-beta",
        "in": "header",
        "required": False,
        "description": "Passed on to an Anthropic upstream.",
        "schema": {"type": "string"},
    },
)


def schema_of(model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A `$ref` to `model`, and the component schemas it needs (itself and what it nests)."""
    schema = model.model_json_schema(ref_template=REF)
    components = schema.pop("$defs", {})
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}, components


def json_body(model: type[BaseModel], *, parameters: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """`openapi_extra` for an endpoint that reads a JSON body of `model`'s shape itself."""
    ref, components = schema_of(model)
    media: dict[str, Any] = {"schema": ref}
    examples = components[model.__name__].get("examples")
    if examples:
        media["examples"] = {f"example{i + 1}": {"value": value} for i, value in enumerate(examples)}
    extra: dict[str, Any] = {
        "requestBody": {"required": True, "content": {"application/json": media}},
        CARRIED: components,
    }
    if parameters:
        extra["parameters"] = [dict(parameter) for parameter in parameters]
    return extra


def errors(*statuses: int, shape: type[BaseModel] = Error, also: type[BaseModel] | None = None) -> dict[int | str, Any]:
    """`responses=` entries for `statuses`, answered in `shape` (or, where `also` is given, either)."""
    ref, components = schema_of(shape)
    schema = ref
    if also is not None:
        other, more = schema_of(also)
        components.update(more)
        schema = {"anyOf": [ref, other]}
    found: dict[int | str, Any] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": DESCRIPTIONS[status],
            "content": {"application/json": {"schema": schema}},
            CARRIED: components,
        }
        if status == 429:
            entry["headers"] = RATE_LIMIT_HEADERS
        found[status] = entry
    return found


def event_stream(data: type[BaseModel], *, done: bool = False, error: type[BaseModel] | None = None) -> dict[str, Any]:
    """A `text/event-stream` answer whose events carry `data` as JSON (or, with `error`, an error).

    Each event is described by `itemSchema` (OpenAPI 3.2's keyword, which FastAPI's own streams
    use too). `done`: the stream ends with a `data: [DONE]` event, OpenAI's terminator, no JSON.
    """
    ref, components = schema_of(data)
    payload = ref
    if error is not None:
        other, more = schema_of(error)
        components.update(more)
        payload = {"anyOf": [ref, other]}
    json_data = {"type": "string", "contentMediaType": "application/json", "contentSchema": payload}
    data_schema: dict[str, Any] = json_data
    if done:
        data_schema = {"type": "string", "if": {"const": "[DONE]"}, "else": json_data}
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {"event": {"type": "string"}, "data": data_schema},
        "description": f"One server-sent event; `data` holds a {data.__name__}.",
    }
    return {"content": {"text/event-stream": {"itemSchema": event}}, CARRIED: components}


def document(spec: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's generated document, finished: carried schemas in `components`, no 422, the key schemes."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            schemas.update(operation.pop(CARRIED, {}))
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for response in responses.values():
                schemas.update(response.pop(CARRIED, {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["schemas"] = dict(sorted(schemas.items()))
    components["securitySchemes"] = SECURITY_SCHEMES
    spec["security"] = [{"bearer": []}, {"apiKey": []}]
    return spec
