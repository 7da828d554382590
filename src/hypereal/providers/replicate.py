"""Replicate through its predictions API.

A route model `owner/name` runs the model's current version
(`POST /v1/models/{owner}/{name}/predictions`); `owner/name:version` pins a version
(`POST /v1/predictions` with `version`). The prediction's own `urls.get` and `urls.cancel`
go into the handle. Replicate names inputs per model, so the tables below say how each
family spells Hypereal's parameters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from hypereal.catalog.providers import ReplicateConfig
from hypereal.errors import UpstreamError
from hypereal.providers.base import Handle, InputFetcher, MediaProvider, MediaRequest, Pending, Result
from hypereal.providers.upstream import (
    PASSING,
    InputMap,
    RetryLater,
    UpstreamClient,
    check_data_uris,
    guess_output,
    is_url,
    poll_delay,
    resolve_inputs,
    translate,
)

log = logging.getLogger(__name__)

DEFAULT_BASE = "https://api.replicate.com"

_VEO = InputMap(
    durations=(4, 6, 8),
    rename={"last_image": "last_frame", "images": "reference_images"},
    values={"aspect_ratio": {"auto": None}},
)
_SORA = InputMap(
    durations=(4, 8, 12),
    rename={"duration": "seconds", "image": "input_reference"},
    values={
        "aspect_ratio": {"16:9": "landscape", "9:16": "portrait", "auto": None},
        "resolution": {"720p": "standard", "1080p": "high", "auto": None},
    },
)
_KLING = InputMap(rename={"image": "start_image", "last_image": "end_image"})
_SEEDANCE = InputMap(rename={"last_image": "last_frame_image"})
_HAILUO = InputMap(
    rename={"image": "first_frame_image", "last_image": "last_frame_image"},
    values={"resolution": {"512P": "512p", "768P": "768p", "1080P": "1080p"}},
)
_NANO_BANANA = InputMap(rename={"images": "image_input"}, values={"aspect_ratio": {"auto": "match_input_image"}})

# Upstream model id prefix (whole path segments, version excluded) -> Replicate's input names.
INPUTS: Mapping[str, InputMap] = {
    "": InputMap(),
    "google/veo-3.1": _VEO,
    "google/veo-3.1-fast": _VEO,
    "google/veo-3": _VEO,
    "google/veo-3-fast": _VEO,
    "openai/sora-2": _SORA,
    "openai/sora-2-pro": _SORA,
    "kwaivgi/kling-v2.6": _KLING,
    "kwaivgi/kling-v2.5-turbo-pro": _KLING,
    "kwaivgi/kling-v2.1-master": _KLING,
    "bytedance/seedance-1.5-pro": _SEEDANCE,
    "bytedance/seedance-2.0": _SEEDANCE,
    "bytedance/seedance-1-pro": _SEEDANCE,
    "bytedance/seedance-1-pro-fast": _SEEDANCE,
    "minimax/hailuo-02": _HAILUO,
    "minimax/hailuo-2.3": _HAILUO,
    "google/nano-banana": _NANO_BANANA,
    "google/nano-banana-pro": _NANO_BANANA,
    "black-forest-labs/flux-kontext-pro": InputMap(
        rename={"images": "input_image"},
        single=frozenset({"images"}),
        values={"aspect_ratio": {"auto": "match_input_image"}},
    ),
    "elevenlabs/v3": InputMap(rename={"text": "prompt"}),
}

_STAGES = {"starting": "queued", "processing": "running"}


class ReplicateProvider(MediaProvider):
    type: ClassVar[str] = "replicate"
    config: ReplicateConfig

    def __init__(self, config: ReplicateConfig) -> None:
        super().__init__(config)
        self.client = UpstreamClient("Replicate", config, DEFAULT_BASE, "Bearer")
        self.data_uri_max_bytes = config.options.data_uri_max_bytes
        wait = config.options.wait_seconds
        # `Prefer: wait` lets quick models (images) answer on submit instead of being polled.
        self._prefer = {"Prefer": f"wait={wait}"} if wait else {}

    def available(self) -> bool:
        return self.client.available()

    async def close(self) -> None:
        await self.client.close()

    async def submit(self, request: MediaRequest, fetch: InputFetcher) -> Handle | Result:
        check_data_uris("replicate", request.params, self.data_uri_max_bytes)
        model, _, version = request.upstream_model.partition(":")
        body: dict[str, Any] = {"input": translate(request.params, resolve_inputs(INPUTS, model))}
        if version:
            body["version"] = version
            url = self.client.url("/v1/predictions")
        else:
            url = self.client.url(f"/v1/models/{model}/predictions")
        reply = await self.client.call("POST", url, body, headers=self._prefer)
        if not reply.ok:
            raise self.client.error(reply, error_text(reply.data))
        prediction = reply.data if isinstance(reply.data, dict) else {}
        given_urls = prediction.get("urls")
        urls: dict[str, Any] = given_urls if isinstance(given_urls, dict) else {}
        prediction_id, get_url = prediction.get("id"), urls.get("get")
        if not isinstance(prediction_id, str) or not is_url(get_url):
            raise UpstreamError("Replicate accepted the prediction without an id and its URLs")
        self.client.check_origin(str(get_url))
        handle = Handle(
            prediction_id,
            {
                "get_url": get_url,
                "cancel_url": urls.get("cancel") if is_url(urls.get("cancel")) else None,
                "category": request.category,
                "model": request.upstream_model,
                "submitted_at": time.time(),
            },
        )
        finished = _outcome(prediction, handle)
        return finished if isinstance(finished, Result) else handle

    async def poll(self, handle: Handle) -> Pending | Result:
        try:
            reply = await self.client.call("GET", str(handle.data["get_url"]), retry_on=PASSING)
        except RetryLater as later:
            log.info("Replicate prediction %s: %s; asking again later", handle.request_id, later.reason)
            return Pending("running", retry_after=later.retry_after)
        if reply.status == 404:
            raise UpstreamError(f"Replicate no longer knows prediction {handle.request_id}")
        if not reply.ok:
            raise self.client.error(reply, error_text(reply.data))
        return _outcome(reply.data if isinstance(reply.data, dict) else {}, handle)

    async def cancel(self, handle: Handle) -> bool:
        return await self.client.cancel("POST", handle.data.get("cancel_url"), handle.request_id)


def _outcome(prediction: Mapping[str, Any], handle: Handle) -> Pending | Result:
    status = prediction.get("status")
    category = str(handle.data.get("category", ""))
    if status in _STAGES:
        return Pending(_STAGES[str(status)], retry_after=poll_delay(category, handle.data.get("submitted_at")))
    if status == "succeeded":
        output = prediction.get("output")
        outputs = [guess_output(url, category) for url in dict.fromkeys(_urls(output))]
        if outputs:
            return Result(outputs)
        if isinstance(output, str) and output.strip():
            return Result([], {"text": output.strip()})
        raise UpstreamError("Replicate finished without producing a file")
    if status == "failed":
        raise UpstreamError(f"Replicate failed the prediction: {_text(prediction.get('error')) or 'no reason given'}")
    if status == "canceled":
        reason = _text(prediction.get("error"))
        raise UpstreamError(
            f"Replicate canceled the prediction: {reason}" if reason else "Replicate canceled the prediction"
        )
    raise UpstreamError(f"Replicate reported an unknown status {str(status)[:40]!r}")


def _urls(output: Any) -> Iterator[str]:
    if is_url(output):
        yield str(output)
    elif isinstance(output, list):
        for item in output:
            yield from _urls(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from _urls(item)


def _text(value: Any) -> str:
    return value.strip()[:500] if isinstance(value, str) else "" if value is None else str(value)[:500]


def error_text(data: Any) -> str:
    """Replicate's problem details: `detail` (or `title`), with the invalid fields named."""
    if isinstance(data, str):
        return data
    if not isinstance(data, dict):
        return ""
    fields = [
        f"{f.get('field', '')}: {f.get('description', '')}".strip(": ")
        for f in data.get("invalid_fields") or []
        if isinstance(f, dict)
    ]
    detail = _text(data.get("detail") or data.get("title") or data.get("error"))
    return "; ".join(fields) if fields else detail
