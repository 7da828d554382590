"""`scripted`: a media provider that does what the request tells it to, for tests and drills.

Not for production catalogs. It lets a test (or an operator rehearsing an incident) drive
the job engine through every path an upstream queue can take, with real timing:

    outcome: "complete" (default) | "fail" | "reject" (bad input) | "never" (hangs forever)
    seconds: how long the work takes (default 0)
    cpu_seconds: how long, before that, the work keeps a CPU busy in a thread, as local models do (default 0)
    polls:   answer with a Handle and need this many polls before finishing (default 0: answer at once)

The entry's option `outcome` overrides the request's: a provider that fails every job (when
it submits with polls, the failure comes at the last poll), to rehearse an outage.

Completed jobs produce one small text file naming the job, so outputs go through storage.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from hypereal.catalog.providers import ScriptedConfig
from hypereal.errors import BadRequest, UpstreamError
from hypereal.providers.base import Handle, InputFetcher, MediaProvider, MediaRequest, Output, Pending, Result


class ScriptedProvider(MediaProvider):
    type: ClassVar[str] = "scripted"

    config: ScriptedConfig

    def __init__(self, config: ScriptedConfig) -> None:
        super().__init__(config)
        self.canceled: set[str] = set()

    async def submit(self, request: MediaRequest, fetch: InputFetcher) -> Handle | Result:
        script = _script(request.params)
        if self.config.options.outcome is not None:
            script["outcome"] = self.config.options.outcome
        if script["polls"] > 0:
            ready_at = time.time() + script["seconds"]
            return Handle(request.job_id, {"job": request.job_id, **script, "ready_at": ready_at, "seen": 0})
        if script["outcome"] == "never":
            await asyncio.Event().wait()
        if script["cpu_seconds"]:
            await asyncio.to_thread(_busy, script["cpu_seconds"])
        await asyncio.sleep(script["seconds"])
        return _finish(request.job_id, script)

    async def poll(self, handle: Handle) -> Pending | Result:
        data = handle.data
        if data["outcome"] == "never" or time.time() < data["ready_at"]:
            return Pending("running", retry_after=min(1.0, max(0.05, data["ready_at"] - time.time())))
        return _finish(data["job"], data)

    async def cancel(self, handle: Handle) -> bool:
        self.canceled.add(handle.request_id)
        return True


def _script(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "outcome": str(params.get("outcome", "complete")),
        "seconds": float(params.get("seconds", 0) or 0),
        "cpu_seconds": float(params.get("cpu_seconds", 0) or 0),
        "polls": int(params.get("polls", 0) or 0),
    }


def _busy(seconds: float) -> None:
    """Pure Python for `seconds`: it holds the interpreter as long as the interpreter lets it."""
    until = time.monotonic() + seconds
    count = 0
    while time.monotonic() < until:
        count += 1


def _finish(job_id: str, script: dict[str, Any]) -> Result:
    outcome = script["outcome"]
    if outcome == "fail":
        raise UpstreamError("Scripted failure")
    if outcome == "reject":
        raise BadRequest("Scripted rejection of the input")
    return Result([Output("text/plain", "txt", data=f"output of {job_id}\n".encode())], {"scripted": True})
