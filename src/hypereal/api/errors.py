"""Turning every failure into a JSON answer: `{"error": "...", **fields}` with the right status.

Chat surfaces that mimic another API (OpenAI, Anthropic) answer in that API's error shape;
their routers are tagged with the surface name and register a renderer here. On the routes
every client shares (the model list), a request that carries `anthropic-version` comes from
an Anthropic client and gets Anthropic's shape.

Two failures are not the server's: a client that hangs up before sending the body it
announced (one INFO line, no traceback; the answer, 499 in the metrics, reaches nobody), and
a value no database column can hold that got past the ranges of `hypereal.bounds` (a 400,
logged as the missing range check it is).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from hypereal.api.responses import JsonResponse
from hypereal.errors import HyperealError, ValidationFailed

log = logging.getLogger(__name__)

ErrorRenderer = Callable[[HyperealError], dict[str, Any]]

CLIENT_CLOSED_REQUEST = 499
"""nginx's status for a request its client abandoned; only the metrics ever see it."""
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DATA_EXCEPTION_CLASS = "22"
"""SQLSTATE class of values a column cannot hold (22003: numeric value out of range)."""

_STATUS_MESSAGES = {404: "Not found", 405: "Method not allowed", 413: "Request body too large"}


def _default_body(exc: HyperealError) -> dict[str, Any]:
    return exc.body()


def _renderer(request: Request) -> ErrorRenderer:
    renderers: dict[str, ErrorRenderer] = getattr(request.app.state, "error_renderers", {})
    route = request.scope.get("route")
    for tag in getattr(route, "tags", None) or ():
        if tag in renderers:
            return renderers[tag]
    if "anthropic" in renderers and "anthropic-version" in request.headers:
        return renderers["anthropic"]
    return _default_body


def respond(request: Request, exc: HyperealError) -> JsonResponse:
    return JsonResponse(_renderer(request)(exc), status_code=exc.status, headers=exc.headers())


def unexpected(request: Request, exc: Exception) -> JsonResponse:
    """The answer to an exception nothing else handled: a 500, or a 400 for an out-of-range value."""
    if _out_of_range(exc):
        log.warning(
            "a value out of the database's range reached it on %s %s; a range check is missing",
            request.method,
            request.url.path,
            exc_info=exc,
        )
        return respond(request, ValidationFailed("A value in the request is out of range"))
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return respond(request, HyperealError())


def client_gone(request: Request) -> Response:
    log.info("client disconnected before sending the whole request body: %s %s", request.method, request.url.path)
    return Response(status_code=CLIENT_CLOSED_REQUEST)


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route takes at the request's path, for the `Allow` header of a 405."""
    return [
        method
        for method in HTTP_METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in app.routes)
    ]


def _out_of_range(exc: BaseException) -> bool:
    if isinstance(exc, OverflowError):  # sqlite3, binding an integer past 64 bits
        return True
    if isinstance(exc, DBAPIError):  # PostgreSQL, or asyncpg refusing the argument (22000)
        return str(getattr(exc.orig, "sqlstate", None) or "").startswith(DATA_EXCEPTION_CLASS)
    return False


def describe_validation(errors: list[Any]) -> ValidationFailed:
    """FastAPI's validation errors as one sentence naming the field, e.g. "Model is required"."""
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    field = ".".join(loc)
    kind = first.get("type", "")
    if kind == "json_invalid" or (kind == "model_attributes_type" and not field):
        return ValidationFailed("Request body is not valid JSON")
    if kind == "missing":
        return ValidationFailed(f"{field[:1].upper()}{field[1:]} is required", field=field)
    if not field:
        return ValidationFailed("Request body must be a JSON object")
    return ValidationFailed(f"Invalid value for '{field}': {first.get('msg', 'invalid')}", field=field)


def install(app: FastAPI) -> None:
    async def on_hypereal(request: Request, exc: Exception) -> JsonResponse:
        assert isinstance(exc, HyperealError)
        return respond(request, exc)

    async def on_validation(request: Request, exc: Exception) -> JsonResponse:
        assert isinstance(exc, RequestValidationError)
        return respond(request, describe_validation(list(exc.errors())))

    async def on_http(request: Request, exc: Exception) -> JsonResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = _STATUS_MESSAGES.get(exc.status_code) or str(exc.detail)
        error = HyperealError(message)
        error.status = exc.status_code  # type: ignore[misc]
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names the methods of the first route of the path only.
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request.app, request.scope))}
        return JsonResponse(error.body(), status_code=exc.status_code, headers=headers)

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        return client_gone(request)

    async def on_unexpected(request: Request, exc: Exception) -> JsonResponse:
        return unexpected(request, exc)

    app.add_exception_handler(HyperealError, on_hypereal)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
