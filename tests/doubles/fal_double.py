"""fal's queue API on 127.0.0.1, as fal publishes it.

    POST /{model_id}[/{subpath}]        Authorization: Key <key>; the input as the JSON body
        -> {request_id, response_url, status_url, cancel_url, queue_position}
    GET  /{app}/requests/{id}/status    202 IN_QUEUE (queue_position) / 202 IN_PROGRESS (logs) / 200 COMPLETED
    GET  /{app}/requests/{id}           the result; 400 while it runs; the error status when it failed
    PUT  /{app}/requests/{id}/cancel    202 CANCELLATION_REQUESTED / 400 ALREADY_COMPLETED
    GET  /files/{name}                  the bytes of a produced file (no auth, like fal's CDN)

`{app}` is the model id without its subpath (`fal-ai/veo3.1/image-to-video` -> `fal-ai/veo3.1`).
Each request advances one step per status call: `polls_in_queue` answers IN_QUEUE, then
`polls_in_progress` answers IN_PROGRESS, then COMPLETED. Faults are injected per route
("submit", "status", "result", "cancel") with `fail_next`; `fail_jobs` makes the next
submitted requests fail when they complete; `delay_seconds` holds every answer.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.doubles.local_server import LocalServer


@dataclass
class FalRequest:
    id: str
    model: str
    app: str
    input: dict[str, Any]
    polls: int = 0
    canceled: bool = False
    failure: tuple[int, Any] | None = None


@dataclass
class Submission:
    model: str
    input: Any
    headers: dict[str, str] = field(default_factory=dict)


class FalDouble(LocalServer):
    def __init__(self, key: str = "fal-test-key", *, polls_in_queue: int = 1, polls_in_progress: int = 1) -> None:
        super().__init__()
        self.key = key
        self.polls_in_queue = polls_in_queue
        self.polls_in_progress = polls_in_progress
        self.requests: dict[str, FalRequest] = {}
        self.submissions: list[Submission] = []
        self.results: dict[str, Any] = {}
        """Model id -> result payload; a video file when absent."""
        self.status_calls = 0
        self._failing: list[tuple[int, Any]] = []

    # ---- control ------------------------------------------------------------------------

    def fail_jobs(self, detail: Any = "Internal error while generating", status: int = 500, times: int = 1) -> None:
        """The next `times` submitted requests complete with an error: their result answers `status`."""
        self._failing.extend([(status, detail)] * times)

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._dispatch)

    # ---- protocol -----------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if self.delay_seconds:
            await self._hold()
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET" and parts[:1] == ["files"]:
            return web.Response(body=b"\x00fal-double-file\x00", content_type="application/octet-stream")
        if request.headers.get("Authorization") != f"Key {self.key}":
            return web.json_response({"detail": "No user found for Key ID and Secret"}, status=401)
        if "requests" in parts:
            at = parts.index("requests")
            tail = parts[at + 1 :]
            if not tail:
                return web.json_response({"detail": "Not found"}, status=404)
            queued = self.requests.get(tail[0])
            if queued is None or queued.app != "/".join(parts[:at]):
                return web.json_response({"detail": "Request not found"}, status=404)
            if request.method == "GET" and tail[1:] == ["status"]:
                return self._status(queued)
            if request.method == "GET" and len(tail) == 1:
                return self._result(queued)
            if request.method == "PUT" and tail[1:] == ["cancel"]:
                return self._cancel(queued)
            return web.json_response({"detail": "Method not allowed"}, status=405)
        if request.method == "POST" and len(parts) >= 2:
            return await self._submit(request, "/".join(parts))
        return web.json_response({"detail": "Not found"}, status=404)

    def _fault(self, route: str) -> web.Response | None:
        fault = self._next_fault(route)
        if fault is None:
            return None
        status, body, headers = fault
        return web.json_response(
            body if body is not None else {"detail": f"injected {status}"}, status=status, headers=headers
        )

    async def _submit(self, request: web.Request, model: str) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"detail": "Invalid JSON"}, status=422)
        self.submissions.append(Submission(model, body, dict(request.headers)))
        fault = self._fault("submit")
        if fault is not None:
            return fault
        if not isinstance(body, dict):
            return web.json_response({"detail": [{"loc": ["body"], "msg": "value is not a valid dict"}]}, status=422)
        request_id = secrets.token_hex(8)
        app = "/".join(model.split("/")[:2])
        queued = FalRequest(request_id, model, app, body)
        if self._failing:
            queued.failure = self._failing.pop(0)
        self.requests[request_id] = queued
        base = f"{self.base_url}/{app}/requests/{request_id}"
        return web.json_response(
            {
                "request_id": request_id,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
                "queue_position": 0,
            }
        )

    def _state(self, queued: FalRequest) -> str:
        if queued.canceled or queued.polls > self.polls_in_queue + self.polls_in_progress:
            return "COMPLETED"
        return "IN_QUEUE" if queued.polls <= self.polls_in_queue else "IN_PROGRESS"

    def _status(self, queued: FalRequest) -> web.Response:
        self.status_calls += 1
        fault = self._fault("status")
        if fault is not None:
            return fault
        queued.polls += 1
        state = self._state(queued)
        base = f"{self.base_url}/{queued.app}/requests/{queued.id}"
        body: dict[str, Any] = {"status": state, "request_id": queued.id, "response_url": base}
        if state == "IN_QUEUE":
            body["queue_position"] = max(0, self.polls_in_queue - queued.polls)
            return web.json_response(body, status=202)
        if state == "IN_PROGRESS":
            body["logs"] = [{"message": "generating", "level": "INFO", "source": "user", "timestamp": "now"}]
            return web.json_response(body, status=202)
        if queued.failure is not None:
            body["error"] = queued.failure[1] if isinstance(queued.failure[1], str) else "Validation error"
            body["error_type"] = "request_error"
        return web.json_response(body, status=200)

    def _result(self, queued: FalRequest) -> web.Response:
        fault = self._fault("result")
        if fault is not None:
            return fault
        if queued.canceled:
            return web.json_response({"detail": "Request was cancelled"}, status=400)
        if self._state(queued) != "COMPLETED":
            return web.json_response({"detail": "Request is still in progress"}, status=400)
        if queued.failure is not None:
            status, detail = queued.failure
            return web.json_response({"detail": detail}, status=status)
        payload = self.results.get(queued.model)
        if payload is None:
            payload = {
                "video": {
                    "url": self.file_url(f"{queued.id}.mp4"),
                    "content_type": "video/mp4",
                    "file_name": "output.mp4",
                    "file_size": 1024,
                },
                "seed": 42,
            }
        return web.json_response(payload)

    def _cancel(self, queued: FalRequest) -> web.Response:
        fault = self._fault("cancel")
        if fault is not None:
            return fault
        if self._state(queued) == "COMPLETED":
            return web.json_response({"status": "ALREADY_COMPLETED"}, status=400)
        queued.canceled = True
        return web.json_response({"status": "CANCELLATION_REQUESTED"}, status=202)
