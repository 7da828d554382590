"""Our errors in the shape each chat surface's clients expect.

OpenAI clients read `{"error": {"message", "type", "param", "code"}}`; Anthropic clients
read `{"type": "error", "error": {"type", "message"}}`, with the type named after the
status as Anthropic's error reference lists it. The app picks the renderer by the tag of
the route (`RENDERERS`); streams that fail after their first byte use the same bodies.
"""

from __future__ import annotations

from typing import Any

from hypereal.errors import HyperealError

_OPENAI_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("server_error", "upstream_error"),
    503: ("server_error", "unavailable"),
    504: ("server_error", "upstream_timeout"),
}

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def openai_error(exc: HyperealError) -> dict[str, Any]:
    kind, code = _OPENAI_TYPES.get(exc.status, ("server_error" if exc.status >= 500 else "invalid_request_error", None))
    code = exc.code or code
    fields = {k: v for k, v in exc.fields.items() if k not in {"message", "type", "code", "param"}}
    param = exc.fields.get("field") if isinstance(exc.fields.get("field"), str) else None
    return {"error": {"message": exc.message, "type": kind, "param": param, "code": code, **fields}}


def anthropic_error(exc: HyperealError) -> dict[str, Any]:
    kind = _ANTHROPIC_TYPES.get(exc.status, "api_error" if exc.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": exc.message}}


RENDERERS = {"openai": openai_error, "anthropic": anthropic_error}
