"""The application factory: routes under both /v1 and /api/v1, errors as JSON, lifespan."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from hypereal import __version__, web
from hypereal.api import account, account_keys, admin, docs, files, health, jobs, media, models, routing, usage
from hypereal.api import errors as api_errors
from hypereal.api import openapi as api_openapi
from hypereal.api.edge import Edge
from hypereal.api.fastlane import FastLane
from hypereal.api.responses import JsonResponse
from hypereal.metrics import Metrics
from hypereal.services import Services
from hypereal.settings import Settings

# Routers of the other surfaces, included when their module is present in this build.
OPTIONAL_ROUTERS = (
    "hypereal.api.chat",
    "hypereal.api.openai",
    "hypereal.api.anthropic",
)
StartHook = Callable[[Services], Coroutine[Any, Any, None]]


def _builtin_routers() -> list[APIRouter]:
    return [
        admin.router,
        routing.router,
        account.router,
        account_keys.router,
        usage.router,
        models.router,
        media.router,
        jobs.router,
    ]


def _routers() -> list[APIRouter]:
    found = _builtin_routers()
    for name in OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        found.append(module.router)
    return found


class App(FastAPI):
    """FastAPI behind the edge layer, with the fast lane for the busiest routes (api/fastlane.py)."""

    edge: ASGIApp | None = None
    lane: FastLane | None = None

    def include_fast(self, router: APIRouter, prefix: str, *, include_in_schema: bool = True) -> None:
        """`include_router`, with the router's fast routes added to the lane."""
        self.include_router(router, prefix=prefix, include_in_schema=include_in_schema)
        if self.lane is None:
            self.lane = FastLane(self)
        self.lane.add(router, prefix)

    def put_edge(self, *, max_body_bytes: int, metrics: Metrics) -> None:
        """The outermost layer (api/edge.py), in front of the lane and of FastAPI alike."""
        self.edge = Edge(self._dispatch, max_body_bytes=max_body_bytes, metrics=metrics)

    def openapi(self) -> dict[str, Any]:
        if not self.openapi_schema:
            self.openapi_schema = api_openapi.document(super().openapi())
        return self.openapi_schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.edge is None:
            await super().__call__(scope, receive, send)
        else:
            await self.edge(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.lane is not None:
            route = self.lane.route_for(scope)
            if route is not None:
                await self.lane.serve(route, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    services: Services | None = None,
    run_worker: bool | None = None,
    on_start: StartHook | None = None,
) -> App:
    """An app that builds its services on start-up (or uses the given ones) and closes them."""
    metrics = services.metrics if services is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        active = services or Services.build(settings, metrics=metrics)
        if owned:
            await active.start()
        app.state.services = active
        web.start(active)
        worker = settings.worker if run_worker is None else run_worker
        if worker:
            starter = _worker_starter()
            if starter is not None:
                await starter(active)
        if on_start is not None:
            await on_start(active)
        try:
            yield
        finally:
            if owned:
                await active.close()

    app = App(
        title="hypereal",
        version=__version__,
        description="Self-hostable implementation of the Hypereal API.",
        default_response_class=JsonResponse,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # One schema per model: request bodies are documented in validation mode, and so are answers.
        separate_input_output_schemas=False,
    )
    app.state.error_renderers = _surface_error_renderers()
    if services is not None:
        app.state.services = services
    api_errors.install(app)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(files.root_router)
    routers = _routers()
    # Routes are matched in the order they were included and no two routers share a path, so the
    # order is free: the /v1 copies go first (where SDKs send their calls), the chat surfaces
    # (the busiest paths) first among them. The OpenAPI document lists /api/v1 in its own order.
    builtin = {id(router) for router in _builtin_routers()}
    for router in sorted(routers, key=lambda router: id(router) in builtin):
        app.include_fast(router, "/v1", include_in_schema=False)
    for router in routers:
        app.include_fast(router, "/api/v1")
    app.include_router(web.router)  # the console at `/`, after every API route
    app.put_edge(max_body_bytes=settings.max_body_bytes, metrics=metrics)
    return app


def _worker_starter() -> StartHook | None:
    try:
        module = importlib.import_module("hypereal.jobs.worker")
    except ModuleNotFoundError as exc:
        if exc.name != "hypereal.jobs.worker":
            raise
        return None
    starter: StartHook = module.start_in_process
    return starter


def _surface_error_renderers() -> dict[str, api_errors.ErrorRenderer]:
    try:
        module = importlib.import_module("hypereal.llm.errors")
    except ModuleNotFoundError as exc:
        if exc.name != "hypereal.llm.errors":
            raise
        return {}
    renderers: dict[str, api_errors.ErrorRenderer] = getattr(module, "RENDERERS", {})
    return renderers
