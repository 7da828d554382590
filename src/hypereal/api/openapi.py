"""The OpenAPI document: FastAPI's, with every body, answer and error as the server really has them.

Routes say what they take and answer through decorator arguments only, built with the
helpers here, so the request path stays what it was:
- `response_model=`: the 2xx body (endpoints return responses, so it is never run), and
  `responses={200: event_stream(...)}` beside it for a route that can stream;
- `responses=errors(...)`: the error statuses, in the surface's error shape;
- `openapi_extra=json_body(Model)`: a JSON body the endpoint reads itself (the chat routes
  of the fast lane, and the routes that validate through `deps.parsed`), plus header
  parameters; `PUBLIC` for routes that need no key.

The helpers hand FastAPI a placeholder for each part, since FastAPI drops every null from
the document (`"param": null` in an example, a `null` default), and the parts are made only
when the document is: the models' JSON schemas were a tenth of the server's start, for a
document few processes are ever asked for. `document()` then finishes what FastAPI
generated: the carried parts go in place, the answer models' schemas are written again with
their nulls, and FastAPI's 422 goes, since every validation error here is a 400.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import cache, partial
from typing import Any

import orjson
from pydantic import BaseModel

from hypereal.api.schemas import Error
from hypereal.errors import (
    Conflict,
    Forbidden,
    HyperealError,
    InsufficientCredits,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
    ValidationFailed,
)

CARRIED = "x-hypereal-carried"
"""Where a helper's output keeps the key of its part of the document (made, with the schemas
its `$ref`s need, by the maker of that key in `_PARTS`) until `document()` puts it in place."""
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
EXAMPLES: dict[int, HyperealError] = {
    400: ValidationFailed("Model is required", field="model"),
    401: Unauthorized(),
    402: InsufficientCredits(required=69, available=10),
    403: Forbidden("This endpoint needs the admin key"),
    404: NotFound("Job not found"),
    409: Conflict("This Idempotency-Key was already used with a different request"),
    413: PayloadTooLarge("Request body larger than 33554432 bytes", limit=33554432),
    429: RateLimited(limit=1000, retry_after=1800, reset=1766845056),
    502: UpstreamError(),
    503: Unavailable(
        "No configured provider can serve 'veo-3-1-i2v'. Set FAL_KEY or REPLICATE_API_TOKEN or WAVESPEED_API_KEY,"
        " use a built-in local- model, or enable HYPEREAL_LOCAL_FALLBACK.",
        model="veo-3-1-i2v",
    ),
    504: UpstreamTimeout(),
}
"""The error each status's example shows, rendered in the surface's shape."""
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


Part = tuple[dict[str, Any], dict[str, Any]]
"""A fragment of the document, and the component schemas its `$ref`s need."""
_PARTS: dict[str, Callable[[], Part]] = {}


def schema_of(model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A `$ref` to `model`, and the component schemas it needs (itself and what it nests)."""
    return {"$ref": REF.format(model=model.__name__)}, orjson.loads(_components(model))


@cache
def _components(model: type[BaseModel]) -> bytes:
    schema = model.model_json_schema(ref_template=REF)
    components = schema.pop("$defs", {})
    components[model.__name__] = schema
    return orjson.dumps(components)


def _carried(make: Callable[[], Part]) -> dict[str, Any]:
    key = str(len(_PARTS))
    _PARTS[key] = make
    return {CARRIED: key}


@cache
def _part(key: str) -> bytes:
    fragment, schemas = _PARTS[key]()
    return orjson.dumps({"fragment": fragment, "schemas": schemas})


def json_body(model: type[BaseModel], *, parameters: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """`openapi_extra` for an endpoint that reads a JSON body of `model`'s shape itself."""
    return _carried(partial(_json_body, model, tuple(parameters)))


def _json_body(model: type[BaseModel], parameters: tuple[Mapping[str, Any], ...]) -> Part:
    ref, schemas = schema_of(model)
    media: dict[str, Any] = {"schema": ref}
    examples = schemas[model.__name__].get("examples")
    if examples:
        media["examples"] = {f"example{i + 1}": {"value": value} for i, value in enumerate(examples)}
    fragment: dict[str, Any] = {"requestBody": {"required": True, "content": {"application/json": media}}}
    if parameters:
        fragment["parameters"] = [dict(parameter) for parameter in parameters]
    return fragment, schemas


def errors(
    *statuses: int,
    shape: type[BaseModel] = Error,
    render: Callable[[HyperealError], dict[str, Any]] = HyperealError.body,
    also: type[BaseModel] | None = None,
) -> dict[int | str, Any]:
    """`responses=` entries for `statuses`, answered in `shape` (or, where `also` is given, either).

    `render` is the surface's error renderer, which writes each status's example.
    """
    return {status: _carried(partial(_error, status, shape, render, also)) for status in statuses}


def _error(
    status: int,
    shape: type[BaseModel],
    render: Callable[[HyperealError], dict[str, Any]],
    also: type[BaseModel] | None,
) -> Part:
    ref, schemas = schema_of(shape)
    schema = ref
    if also is not None:
        other, more = schema_of(also)
        schemas.update(more)
        schema = {"anyOf": [ref, other]}
    fragment: dict[str, Any] = {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": schema, "example": render(EXAMPLES[status])}},
    }
    if status == 429:
        fragment["headers"] = RATE_LIMIT_HEADERS
    return fragment, schemas


def event_stream(data: type[BaseModel], *, done: bool = False, error: type[BaseModel] | None = None) -> dict[str, Any]:
    """A `text/event-stream` answer whose events carry `data` as JSON (or, with `error`, an error).

    Each event is described by `itemSchema` (OpenAPI 3.2's keyword, which FastAPI's own streams
    use too). `done`: the stream ends with a `data: [DONE]` event, OpenAI's terminator, no JSON.
    """
    return _carried(partial(_event_stream, data, done, error))


def _event_stream(data: type[BaseModel], done: bool, error: type[BaseModel] | None) -> Part:
    ref, schemas = schema_of(data)
    payload = ref
    if error is not None:
        other, more = schema_of(error)
        schemas.update(more)
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
    return {"content": {"text/event-stream": {"itemSchema": event}}}, schemas


def document(spec: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's generated document, finished: carried parts in place, no 422, the key schemes."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    models = _api_models()
    for name in [name for name in schemas if name in models]:
        schemas.update(schema_of(models[name])[1])  # FastAPI's copies lost their nulls
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            _unpack(operation, schemas)
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for response in responses.values():
                _unpack(response, schemas)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["schemas"] = dict(sorted(schemas.items()))
    components["securitySchemes"] = SECURITY_SCHEMES
    spec["security"] = [{"bearer": []}, {"apiKey": []}]
    return spec


def _api_models() -> dict[str, type[BaseModel]]:
    """The models of hypereal.api by name: the ones FastAPI wrote into `components` itself."""
    found: dict[str, type[BaseModel]] = {}
    pending = list(BaseModel.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if model.__module__.startswith(f"{__package__}."):
            found[model.__name__] = model
    return found


def _unpack(target: dict[str, Any], schemas: dict[str, Any]) -> None:
    key = target.pop(CARRIED, None)
    if key is not None:
        carried = orjson.loads(_part(key))
        schemas.update(carried["schemas"])
        _merge(target, carried["fragment"])


def _merge(target: dict[str, Any], fragment: dict[str, Any]) -> None:
    """`fragment` into `target`: objects merged key by key, lists appended, anything else replaced."""
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif isinstance(value, list) and isinstance(target.get(key), list):
            target[key] = target[key] + value
        else:
            target[key] = value
