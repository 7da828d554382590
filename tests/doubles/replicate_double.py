"""Replicate's predictions API on 127.0.0.1, as Replicate publishes it.

    POST /v1/models/{owner}/{name}/predictions   {input}            -> 201 prediction
    POST /v1/predictions                         {version, input}   -> 201 prediction
    GET  /v1/predictions/{id}                                       -> prediction
    POST /v1/predictions/{id}/cancel                                -> prediction (canceled)
    GET  /files/{name}                                              -> bytes of an output

A prediction is `{id, model, version, input, status, output, error, logs, urls:{get, cancel}}`.
Each poll advances it: `polls_starting` answers "starting", then `polls_processing`
"processing", then "succeeded" (or "failed" after `fail_jobs`). A `Prefer: wait` header makes
the prediction finish within the submit answer. Unknown versions (see `versions`) are 422.
Faults per route ("submit", "get", "cancel") with `fail_next`; `delay_seconds` holds answers.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.doubles.local_server import LocalServer


@dataclass
class Prediction:
    id: str
    model: str
    version: str
    input: dict[str, Any]
    polls: int = 0
    canceled: bool = False
    failure: str | None = None
    instant: bool = False


@dataclass
class Submission:
    model: str
    version: str | None
    input: Any
    headers: dict[str, str] = field(default_factory=dict)


class ReplicateDouble(LocalServer):
    def __init__(self, key: str = "r8-test-token", *, polls_starting: int = 1, polls_processing: int = 1) -> None:
        super().__init__()
        self.key = key
        self.polls_starting = polls_starting
        self.polls_processing = polls_processing
        self.predictions: dict[str, Prediction] = {}
        self.submissions: list[Submission] = []
        self.outputs: dict[str, Any] = {}
        """Model ("owner/name") -> the `output` of a succeeded prediction; a video URL when absent."""
        self.versions: dict[str, str] = {}
        """Version id -> model, for `POST /v1/predictions`."""
        self._failing: list[str] = []

    # ---- control ------------------------------------------------------------------------

    def fail_jobs(self, error: str = "CUDA out of memory", times: int = 1) -> None:
        self._failing.extend([error] * times)

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/files/{name}", self._file)
        app.router.add_post("/v1/models/{owner}/{name}/predictions", self._create_for_model)
        app.router.add_post("/v1/predictions", self._create_for_version)
        app.router.add_get("/v1/predictions/{id}", self._get)
        app.router.add_post("/v1/predictions/{id}/cancel", self._cancel)

    # ---- protocol -----------------------------------------------------------------------

    @staticmethod
    def _problem(status: int, title: str, detail: str, **more: Any) -> web.Response:
        return web.json_response({"title": title, "detail": detail, "status": status, **more}, status=status)

    async def _guard(self, request: web.Request, route: str) -> web.Response | None:
        if self.delay_seconds:
            await self._hold()
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        fault = self._next_fault(route)
        if fault is not None:
            status, body, headers = fault
            if body is None:
                body = {"title": f"Injected {status}", "detail": f"injected {status}", "status": status}
            return web.json_response(body, status=status, headers=headers)
        return None

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=b"\x00replicate-double-file\x00", content_type="application/octet-stream")

    async def _create_for_model(self, request: web.Request) -> web.Response:
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        return await self._create(request, model, None)

    async def _create_for_version(self, request: web.Request) -> web.Response:
        return await self._create(request, None, "")

    async def _create(self, request: web.Request, model: str | None, version: str | None) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if version is not None and isinstance(body, dict):
            version = str(body.get("version", ""))
        self.submissions.append(Submission(model or "", version, body, dict(request.headers)))
        refused = await self._guard(request, "submit")
        if refused is not None:
            return refused
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            return self._problem(422, "Input validation failed", "- input: Invalid type. Expected: object")
        if version is not None:
            model = self.versions.get(version)
            if model is None:
                return self._problem(422, "Invalid version or not permitted", "The specified version does not exist")
        prediction = Prediction(secrets.token_hex(10), model or "", version or "", body["input"])
        if self._failing:
            prediction.failure = self._failing.pop(0)
        prediction.instant = "wait" in request.headers.get("Prefer", "")
        self.predictions[prediction.id] = prediction
        return web.json_response(self._view(prediction), status=201)

    def _status(self, prediction: Prediction) -> str:
        if prediction.canceled:
            return "canceled"
        if prediction.instant or prediction.polls > self.polls_starting + self.polls_processing:
            return "failed" if prediction.failure else "succeeded"
        return "starting" if prediction.polls <= self.polls_starting else "processing"

    def _view(self, prediction: Prediction) -> dict[str, Any]:
        status = self._status(prediction)
        output = None
        if status == "succeeded":
            output = self.outputs.get(prediction.model, self.file_url(f"{prediction.id}.mp4"))
        url = f"{self.base_url}/v1/predictions/{prediction.id}"
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": prediction.version or "hidden",
            "input": prediction.input,
            "status": status,
            "output": output,
            "error": prediction.failure if status == "failed" else None,
            "logs": "",
            "metrics": {"predict_time": 1.5} if status == "succeeded" else {},
            "urls": {"get": url, "cancel": f"{url}/cancel", "web": f"https://replicate.com/p/{prediction.id}"},
        }

    async def _get(self, request: web.Request) -> web.Response:
        refused = await self._guard(request, "get")
        if refused is not None:
            return refused
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return self._problem(404, "Not found", "The requested resource could not be found")
        prediction.polls += 1
        return web.json_response(self._view(prediction))

    async def _cancel(self, request: web.Request) -> web.Response:
        refused = await self._guard(request, "cancel")
        if refused is not None:
            return refused
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return self._problem(404, "Not found", "The requested resource could not be found")
        if self._status(prediction) in ("starting", "processing"):
            prediction.canceled = True
        return web.json_response(self._view(prediction))
