"""The busiest routes served straight from ASGI, ahead of FastAPI's middleware and router.

A chat call through FastAPI passes a dozen middleware layers, the router's matching of
every route before it, and the dependency solver; for a gateway call that itself takes
well under a millisecond, those were about a fifth of the time. A route whose endpoint is
marked `@fast` takes only the request and resolves what it needs itself; the app answers
it from a dictionary lookup on (method, path), with the same error rendering, metrics and
rate-limit headers as every other route. FastAPI still knows the route: it appears in the
OpenAPI document, and a path the lane does not hold exactly (a trailing slash, another
method) goes through FastAPI as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hypereal.api import errors as api_errors
from hypereal.errors import HyperealError

Endpoint = Callable[[Request], Awaitable[Response]]
_E = TypeVar("_E", bound=Endpoint)
_FAST = "__hypereal_fast__"


def fast(endpoint: _E) -> _E:
    """Mark an endpoint of signature `(request: Request) -> Response` for the fast lane."""
    setattr(endpoint, _FAST, True)
    return endpoint


class FastLane:
    """(method, path) → route, for the marked endpoints of the app's parameter-free paths."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.routes: dict[tuple[str, str], APIRoute] = {}

    def add(self, router: APIRouter, prefix: str) -> None:
        """The marked routes of `router`, as the app includes it under `prefix`."""
        for route in router.routes:
            if isinstance(route, APIRoute) and getattr(route.endpoint, _FAST, False) and "{" not in route.path:
                for method in route.methods or ():
                    self.routes[(method, prefix + route.path)] = route

    def route_for(self, scope: Scope) -> APIRoute | None:
        return self.routes.get((scope["method"], scope["path"]))

    async def serve(self, route: APIRoute, scope: Scope, receive: Receive, send: Send) -> None:
        # What FastAPI's app and router would have put in the scope before calling the endpoint:
        # the app for `request.app`, the route for metrics and for the surface's error format.
        scope["app"] = self.app
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        request = Request(scope, receive)
        endpoint: Endpoint = route.endpoint
        response: Response
        try:
            response = await endpoint(request)
        except HyperealError as exc:
            response = api_errors.respond(request, exc)
        except ClientDisconnect:
            response = api_errors.client_gone(request)
        except Exception as exc:
            response = api_errors.unexpected(request, exc)
        await response(scope, receive, send)
