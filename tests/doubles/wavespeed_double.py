"""WaveSpeed AI's v3 API on 127.0.0.1, as WaveSpeed publishes it.

    POST /api/v3/{model-path}               Bearer; the input as the JSON body
        -> {code: 200, message: "success", data: {id, model, status: "created", urls: {get}, outputs: [], error}}
    GET  /api/v3/predictions/{id}/result    -> the same envelope; status created | processing | completed | failed
    GET  /files/{name}                      -> bytes of an output

Errors come as `{code, message}` with the same HTTP status. Each poll advances a prediction:
`polls_created` answers "created", then `polls_processing` "processing", then "completed"
(or "failed" after `fail_jobs`). Faults per route ("submit", "result") with `fail_next`;
`delay_seconds` holds answers.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.doubles.local_server import LocalServer


@dataclass
class WaveSpeedPrediction:
    id: str
    model: str
    input: dict[str, Any]
    polls: int = 0
    failure: str | None = None


@dataclass
class Submission:
    model: str
    input: Any
    headers: dict[str, str] = field(default_factory=dict)


class WaveSpeedDouble(LocalServer):
    def __init__(self, key: str = "ws-test-key", *, polls_created: int = 1, polls_processing: int = 1) -> None:
        super().__init__()
        self.key = key
        self.polls_created = polls_created
        self.polls_processing = polls_processing
        self.predictions: dict[str, WaveSpeedPrediction] = {}
        self.submissions: list[Submission] = []
        self.outputs: dict[str, list[str]] = {}
        """Model path -> output URLs of a completed prediction; one video URL when absent."""
        self._failing: list[str] = []

    def fail_jobs(self, error: str = "Content flagged by the safety checker", times: int = 1) -> None:
        self._failing.extend([error] * times)

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/files/{name}", self._file)
        app.router.add_get("/api/v3/predictions/{id}/result", self._result)
        app.router.add_post("/api/v3/{model:.+}", self._submit)

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response({"code": status, "message": message}, status=status)

    async def _guard(self, request: web.Request, route: str) -> web.Response | None:
        if self.delay_seconds:
            await self._hold()
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return self._error(401, "Unauthorized: invalid API key")
        fault = self._next_fault(route)
        if fault is not None:
            status, body, headers = fault
            return web.json_response(
                body if body is not None else {"code": status, "message": f"injected {status}"},
                status=status,
                headers=headers,
            )
        return None

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=b"\x00wavespeed-double-file\x00", content_type="application/octet-stream")

    async def _submit(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.submissions.append(Submission(model, body, dict(request.headers)))
        refused = await self._guard(request, "submit")
        if refused is not None:
            return refused
        if not isinstance(body, dict):
            return self._error(400, "request body must be a JSON object")
        prediction = WaveSpeedPrediction(secrets.token_hex(12), model, body)
        if self._failing:
            prediction.failure = self._failing.pop(0)
        self.predictions[prediction.id] = prediction
        return web.json_response({"code": 200, "message": "success", "data": self._view(prediction)})

    def _status(self, prediction: WaveSpeedPrediction) -> str:
        if prediction.polls > self.polls_created + self.polls_processing:
            return "failed" if prediction.failure else "completed"
        return "created" if prediction.polls <= self.polls_created else "processing"

    def _view(self, prediction: WaveSpeedPrediction) -> dict[str, Any]:
        status = self._status(prediction)
        outputs: list[str] = []
        if status == "completed":
            outputs = self.outputs.get(prediction.model, [self.file_url(f"{prediction.id}.mp4")])
        return {
            "id": prediction.id,
            "model": prediction.model,
            "outputs": outputs,
            "urls": {"get": f"{self.base_url}/api/v3/predictions/{prediction.id}/result"},
            "has_nsfw_contents": [False] * len(outputs),
            "status": status,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "error": prediction.failure if status == "failed" else "",
            "timings": {"inference": 1200} if status == "completed" else {},
        }

    async def _result(self, request: web.Request) -> web.Response:
        refused = await self._guard(request, "result")
        if refused is not None:
            return refused
        prediction = self.predictions.get(request.match_info["id"])
        if prediction is None:
            return self._error(404, "prediction not found")
        prediction.polls += 1
        return web.json_response({"code": 200, "message": "success", "data": self._view(prediction)})
