"""Turning every failure into a JSON answer: `{"error": "...", **fields}` with the right status.

Chat surfaces that mimic another API (OpenAI, Anthropic) answer in that API's error shape;
their routers are tagged with the surface name and register a renderer here. On the routes
every client shares (the model list), a request that carries `anthropic-version` comes from
an Anthropic client and gets Anthropic's shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hypereal.api.responses import JsonResponse
from hypereal.errors import HyperealError, ValidationFailed

log = logging.getLogger(__name__)

ErrorRenderer = Callable[[HyperealError], dict[str, Any]]

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
        return JsonResponse(error.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def on_unexpected(request: Request, exc: Exception) -> JsonResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return respond(request, HyperealError())

    app.add_exception_handler(HyperealError, on_hypereal)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
