"""WaveSpeed AI, the upstream behind the docs' "fast" mode.

Submit `POST {base}/api/v3/{model-path}` with Bearer auth; WaveSpeed wraps every answer as
`{code, message, data}`. The prediction is polled at `/api/v3/predictions/{id}/result`,
built from the configured base so the key only ever goes to that host. WaveSpeed asks for
at least 2 s between polls for images and 5 s for video, backing off; `poll_delay` does that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from hypereal.catalog.providers import WaveSpeedConfig
from hypereal.errors import UpstreamError
from hypereal.providers.base import Handle, InputFetcher, MediaProvider, MediaRequest, Pending, Result
from hypereal.providers.upstream import (
    PASSING,
    InputMap,
    Reply,
    RetryLater,
    SizeRule,
    UpstreamClient,
    check_data_uris,
    guess_output,
    is_url,
    poll_delay,
    resolve_inputs,
    translate,
)

log = logging.getLogger(__name__)

DEFAULT_BASE = "https://api.wavespeed.ai"

_VEO = InputMap(durations=(4, 6, 8))

# Upstream model path prefix (whole path segments) -> WaveSpeed's input names and values.
INPUTS: Mapping[str, InputMap] = {
    "": InputMap(values={"resolution": {"0.5K": "0.5k", "1K": "1k", "2K": "2k", "4K": "4k"}}),
    "google/veo3.1": _VEO,
    "google/veo3.1-fast": _VEO,
    "google/veo3": _VEO,
    "google/veo3-fast": _VEO,
    "kwaivgi": InputMap(rename={"last_image": "end_image"}),
    "bytedance/seedream-v4.5": InputMap(size=SizeRule("size", style="star")),
    "minimax/speech-2.6-turbo": InputMap(rename={"voice": "voice_id"}),
}

_STAGES = {"created": "queued", "processing": "running"}


class WaveSpeedProvider(MediaProvider):
    type: ClassVar[str] = "wavespeed"
    config: WaveSpeedConfig

    def __init__(self, config: WaveSpeedConfig) -> None:
        super().__init__(config)
        self.client = UpstreamClient("WaveSpeed", config, DEFAULT_BASE, "Bearer")
        # Without an operator's word that the configured models take base64, only URLs are passed on.
        self.data_uri_max_bytes = config.options.data_uri_max_bytes or None

    def available(self) -> bool:
        return self.client.available()

    async def close(self) -> None:
        await self.client.close()

    async def submit(self, request: MediaRequest, fetch: InputFetcher) -> Handle | Result:
        check_data_uris("wavespeed", request.params, self.data_uri_max_bytes)
        body = translate(request.params, resolve_inputs(INPUTS, request.upstream_model))
        reply = await self.client.call("POST", self.client.url(f"/api/v3/{request.upstream_model}"), body)
        prediction = self._data(reply)
        prediction_id = prediction.get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise UpstreamError("WaveSpeed accepted the request without a prediction id")
        handle = Handle(
            prediction_id,
            {"category": request.category, "model": request.upstream_model, "submitted_at": time.time()},
        )
        finished = _outcome(prediction, handle)
        return finished if isinstance(finished, Result) else handle

    async def poll(self, handle: Handle) -> Pending | Result:
        url = self.client.url(f"/api/v3/predictions/{handle.request_id}/result")
        try:
            reply = await self.client.call("GET", url, retry_on=PASSING)
        except RetryLater as later:
            log.info("WaveSpeed prediction %s: %s; asking again later", handle.request_id, later.reason)
            return Pending("running", retry_after=max(later.retry_after, _floor(handle)))
        if reply.status == 404:
            raise UpstreamError(f"WaveSpeed no longer knows prediction {handle.request_id}")
        return _outcome(self._data(reply), handle)

    def _data(self, reply: Reply) -> dict[str, Any]:
        """The `data` of a WaveSpeed answer; an error status, in HTTP or in `code`, raised as ours."""
        answer = reply.data if isinstance(reply.data, dict) else {}
        code = answer.get("code")
        if not reply.ok:
            raise self.client.error(reply, _message(reply.data))
        if isinstance(code, int) and code >= 400:
            raise self.client.error(Reply(code, answer, reply.headers), _message(answer))
        data = answer.get("data")
        if not isinstance(data, dict):
            raise UpstreamError("WaveSpeed answered without a prediction")
        return data


def _floor(handle: Handle) -> float:
    return poll_delay(str(handle.data.get("category", "")), None)


def _outcome(prediction: Mapping[str, Any], handle: Handle) -> Pending | Result:
    status = prediction.get("status")
    category = str(handle.data.get("category", ""))
    if status in _STAGES:
        return Pending(_STAGES[str(status)], retry_after=poll_delay(category, handle.data.get("submitted_at")))
    if status == "completed":
        raw = prediction.get("outputs")
        urls = [str(u) for u in raw if is_url(u)] if isinstance(raw, list) else []
        if not urls:
            raise UpstreamError("WaveSpeed finished without producing a file")
        return Result([guess_output(url, category) for url in dict.fromkeys(urls)])
    if status == "failed":
        reason = prediction.get("error")
        raise UpstreamError(f"WaveSpeed failed the prediction: {str(reason)[:500] if reason else 'no reason given'}")
    raise UpstreamError(f"WaveSpeed reported an unknown status {str(status)[:40]!r}")


def _message(data: Any) -> str:
    if isinstance(data, dict):
        inner = data.get("data")
        message = data.get("message") or (inner.get("error") if isinstance(inner, dict) else None)
        return str(message or "")
    return data if isinstance(data, str) else ""
