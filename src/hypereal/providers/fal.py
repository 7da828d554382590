"""fal.ai through its queue API.

Submit `POST {base}/{model_id}` with the input as the body and `Authorization: Key ...`;
fal answers with a request id and the URLs to ask about it (status and result drop the
model's subpath, so they are kept from the answer rather than rebuilt). The handle holds
them all, so any worker can resume after a crash. A failed run reads COMPLETED on the status
URL; its result URL then answers with the error status (422 for input fal refused).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from hypereal.catalog.providers import FalConfig
from hypereal.errors import UpstreamError
from hypereal.providers.base import Handle, InputFetcher, MediaProvider, MediaRequest, Output, Pending, Result
from hypereal.providers.upstream import (
    GATEWAY_PASSING,
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

DEFAULT_BASE = "https://queue.fal.run"

_FLUX_SIZES = {
    "1:1": "square_hd",
    "4:3": "landscape_4_3",
    "3:4": "portrait_4_3",
    "16:9": "landscape_16_9",
    "9:16": "portrait_16_9",
}
_GPT_IMAGE_SIZES = {"1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536"}
_BY_IMAGE_SIZE = InputMap(rename={"aspect_ratio": "image_size"}, values={"aspect_ratio": _FLUX_SIZES})
_GPT_IMAGE = InputMap(rename={"aspect_ratio": "image_size"}, values={"aspect_ratio": _GPT_IMAGE_SIZES})
_SEEDREAM = InputMap(size=SizeRule("image_size"))
_STRING_SECONDS = InputMap(duration_format="{}")
_VEO = InputMap(durations=(4, 6, 8), duration_format="{}s")
_HUNYUAN_3D = InputMap(rename={"image": "input_image_url"})
_MINIMAX_SPEECH = InputMap(
    rename={
        "voice": "voice_setting.voice_id",
        "speed": "voice_setting.speed",
        "emotion": "voice_setting.emotion",
        "format": "audio_setting.format",
    },
    fixed={"output_format": "url"},
)

# Upstream model id prefix (whole path segments) -> how that family names Hypereal's parameters.
INPUTS: Mapping[str, InputMap] = {
    "": InputMap(
        rename={
            "image": "image_url",
            "last_image": "end_image_url",
            "images": "image_urls",
            "audio": "audio_url",
            "mask": "mask_url",
        }
    ),
    # video
    "fal-ai/veo3": _VEO,
    "fal-ai/veo3.1": _VEO,
    "fal-ai/veo3.1/first-last-frame-to-video": InputMap(
        rename={"image": "first_frame_url", "last_image": "last_frame_url"}
    ),
    "fal-ai/sora-2": InputMap(durations=(4, 8, 12)),
    "fal-ai/kling-video": _STRING_SECONDS,
    "fal-ai/kling-video/v3": InputMap(rename={"image": "start_image_url"}),
    "fal-ai/kling-video/v2.6": InputMap(rename={"image": "start_image_url"}),
    "fal-ai/kling-video/v2.5-turbo": InputMap(rename={"last_image": "tail_image_url"}),
    "fal-ai/kling-video/ai-avatar": InputMap(drop=frozenset({"duration"})),
    "fal-ai/bytedance/seedance": _STRING_SECONDS,
    "bytedance/seedance-2.0": _STRING_SECONDS,
    "fal-ai/minimax/hailuo-02": _STRING_SECONDS,
    "fal-ai/minimax/hailuo-2.3": _STRING_SECONDS,
    "wan/v2.6": _STRING_SECONDS,
    "fal-ai/wan-25-preview": _STRING_SECONDS,
    "fal-ai/pixverse": _STRING_SECONDS,
    # images
    "fal-ai/flux/dev": _BY_IMAGE_SIZE,
    "fal-ai/flux/schnell": _BY_IMAGE_SIZE,
    "fal-ai/flux-pro/v1.1": _BY_IMAGE_SIZE,
    "fal-ai/flux-2": _BY_IMAGE_SIZE,
    "fal-ai/flux-2-pro": _BY_IMAGE_SIZE,
    "fal-ai/flux-2-max": _BY_IMAGE_SIZE,
    "fal-ai/flux-2-flex": _BY_IMAGE_SIZE,
    "fal-ai/flux-pro/kontext": InputMap(rename={"images": "image_url"}, single=frozenset({"images"})),
    "fal-ai/qwen-image": _BY_IMAGE_SIZE,
    "fal-ai/qwen-image-edit": InputMap(rename={"images": "image_url"}, single=frozenset({"images"})),
    "fal-ai/hunyuan-image": _BY_IMAGE_SIZE,
    "fal-ai/z-image": _BY_IMAGE_SIZE,
    "fal-ai/stable-diffusion-v35-large": _BY_IMAGE_SIZE,
    "fal-ai/ideogram/v3": _BY_IMAGE_SIZE,
    "fal-ai/recraft/v3": _BY_IMAGE_SIZE,
    "wan/v2.6/text-to-image": _BY_IMAGE_SIZE,
    "fal-ai/wan-25-preview/text-to-image": _BY_IMAGE_SIZE,
    "fal-ai/bytedance/seedream/v3": _BY_IMAGE_SIZE,
    "fal-ai/bytedance/seedream/v4": _SEEDREAM,
    "fal-ai/bytedance/seedream/v4.5": _SEEDREAM,
    "fal-ai/gpt-image-1": _GPT_IMAGE,
    "fal-ai/gpt-image-1.5": _GPT_IMAGE,
    "fal-ai/gpt-image-1-mini": _GPT_IMAGE,
    "openai/gpt-image-2": _BY_IMAGE_SIZE,
    "fal-ai/bria/background/remove": InputMap(rename={"images": "image_url"}, single=frozenset({"images"})),
    "fal-ai/topaz/upscale/image": InputMap(
        rename={"images": "image_url", "scale": "upscale_factor"}, single=frozenset({"images"})
    ),
    # audio
    "fal-ai/elevenlabs/tts": InputMap(drop=frozenset({"format"})),
    "fal-ai/elevenlabs/speech-to-text": InputMap(rename={"language": "language_code"}),
    "fal-ai/elevenlabs/sound-effects": InputMap(rename={"prompt": "text", "duration": "duration_seconds"}),
    "fal-ai/minimax/voice-clone": InputMap(drop=frozenset({"format"})),
    "fal-ai/minimax/speech-2.6-hd": _MINIMAX_SPEECH,
    "fal-ai/minimax/speech-2.6-turbo": _MINIMAX_SPEECH,
    "fal-ai/minimax-music": InputMap(rename={"lyrics": "lyrics_prompt"}),
    "fal-ai/stable-audio-25": InputMap(rename={"duration": "seconds_total"}),
    # 3D
    "fal-ai/hunyuan3d": _HUNYUAN_3D,
    "fal-ai/hunyuan3d/v2/multi-view": InputMap(drop=frozenset({"right_image_url"})),
    "fal-ai/hunyuan3d-v21": _HUNYUAN_3D,
    "fal-ai/hunyuan3d-v3": _HUNYUAN_3D,
    "fal-ai/hyper3d/rodin": InputMap(rename={"image": "input_image_urls"}, wrap=frozenset({"image"})),
}

# Result fields that hold the produced files, in the order they should be listed.
OUTPUT_KEYS = (
    "video",
    "videos",
    "images",
    "image",
    "audio",
    "audio_file",
    "audio_url",
    "model_glb",
    "model_mesh",
    "model_urls",
    "mesh",
    "output",
    "file",
)
_STAGES = {"IN_QUEUE": "queued", "IN_PROGRESS": "running"}


class FalProvider(MediaProvider):
    type: ClassVar[str] = "fal"
    config: FalConfig

    def __init__(self, config: FalConfig) -> None:
        super().__init__(config)
        self.client = UpstreamClient("fal", config, DEFAULT_BASE, "Key")
        self.data_uri_max_bytes = config.options.data_uri_max_bytes

    def available(self) -> bool:
        return self.client.available()

    async def close(self) -> None:
        await self.client.close()

    async def submit(self, request: MediaRequest, fetch: InputFetcher) -> Handle | Result:
        check_data_uris("fal", request.params, self.data_uri_max_bytes)
        body = translate(request.params, resolve_inputs(INPUTS, request.upstream_model))
        reply = await self.client.call("POST", self.client.url(request.upstream_model), body)
        if not reply.ok:
            raise self.client.error(reply, error_text(reply.data))
        answer = reply.data if isinstance(reply.data, dict) else {}
        request_id = answer.get("request_id")
        urls = {key: answer.get(key) for key in ("status_url", "response_url", "cancel_url")}
        if not isinstance(request_id, str) or not all(is_url(url) for url in urls.values()):
            raise UpstreamError("fal accepted the request without a request id and its URLs")
        for url in urls.values():
            self.client.check_origin(str(url))
        return Handle(
            request_id,
            {**urls, "category": request.category, "model": request.upstream_model, "submitted_at": time.time()},
        )

    async def poll(self, handle: Handle) -> Pending | Result:
        try:
            return await self._poll(handle)
        except RetryLater as later:
            log.info("fal request %s: %s; asking again later", handle.request_id, later.reason)
            return Pending("running", retry_after=later.retry_after)

    async def _poll(self, handle: Handle) -> Pending | Result:
        data = handle.data
        category = str(data.get("category", ""))
        status = await self.client.call("GET", str(data["status_url"]), retry_on=PASSING)
        if status.status == 404:
            raise UpstreamError(f"fal no longer knows request {handle.request_id}")
        if not status.ok:
            raise self.client.error(status, error_text(status.data))
        state = status.data.get("status") if isinstance(status.data, dict) else None
        if state in _STAGES:
            return Pending(_STAGES[state], retry_after=poll_delay(category, data.get("submitted_at")))
        if state != "COMPLETED":
            raise UpstreamError(f"fal reported an unknown status {str(state)[:40]!r}")
        result = await self.client.call("GET", str(data["response_url"]), retry_on=GATEWAY_PASSING)
        if not result.ok:
            raise self.client.error(result, error_text(result.data) or error_text(status.data))
        if isinstance(status.data, dict) and status.data.get("error"):
            raise UpstreamError(f"fal failed the request: {error_text(status.data)}")
        return _result(result, category)

    async def cancel(self, handle: Handle) -> bool:
        # A 400 means ALREADY_COMPLETED: nothing left to stop, and not accepted.
        return await self.client.cancel("PUT", handle.data.get("cancel_url"), handle.request_id)


def _result(reply: Reply, category: str) -> Result:
    payload = reply.data if isinstance(reply.data, dict) else {}
    outputs = outputs_of(payload, category)
    extra: dict[str, Any] = {}
    transcript = transcript_of(payload)
    if transcript is not None and not outputs:
        extra = transcript
    if not outputs and not extra:
        raise UpstreamError("fal finished without producing a file")
    return Result(outputs, extra)


def outputs_of(payload: Mapping[str, Any], category: str) -> list[Output]:
    """The files of a fal result: known result fields first; any file object when none of them is there."""
    found = [item for key in OUTPUT_KEYS if key in payload for item in _files(payload[key])]
    if not found:
        found = list(_files(payload))
    seen: set[str] = set()
    outputs = []
    for url, content_type in found:
        if url not in seen:
            seen.add(url)
            outputs.append(guess_output(url, category, content_type))
    return outputs


def _files(value: Any) -> Iterator[tuple[str, str | None]]:
    if isinstance(value, dict):
        if is_url(value.get("url")):
            content_type = value.get("content_type")
            yield str(value["url"]), content_type if isinstance(content_type, str) else None
            return
        for item in value.values():
            yield from _files(item)
    elif isinstance(value, list):
        for item in value:
            yield from _files(item)
    elif is_url(value):
        yield str(value), None


def transcript_of(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """{text, duration, segments} from a speech-to-text result (Whisper chunks or ElevenLabs words)."""
    text = payload.get("text")
    if not isinstance(text, str):
        return None
    segments: list[dict[str, Any]] = []
    for chunk in payload.get("chunks") or []:
        stamp = chunk.get("timestamp") if isinstance(chunk, dict) else None
        if isinstance(stamp, list | tuple) and len(stamp) == 2:
            start, end = stamp
            end = end if isinstance(end, int | float) else start
            segments.append({"text": str(chunk.get("text", "")).strip(), "start": start, "end": end})
    if not segments:
        segments = _sentences(payload.get("words") or [])
    duration = payload.get("duration")
    if not isinstance(duration, int | float):
        duration = max((s["end"] for s in segments if isinstance(s["end"], int | float)), default=0.0)
    return {"text": text.strip(), "duration": float(duration), "segments": segments}


def _sentences(words: list[Any]) -> list[dict[str, Any]]:
    """Word timings grouped into sentences."""
    segments: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    for word in words:
        if not isinstance(word, dict) or not isinstance(word.get("start"), int | float):
            continue
        current.append(word)
        if str(word.get("text", "")).rstrip().endswith((".", "?", "!")):
            segments.append(_segment(current))
            current = []
    if current:
        segments.append(_segment(current))
    return segments


def _segment(words: list[dict[str, Any]]) -> dict[str, Any]:
    text = "".join(str(w.get("text", "")) for w in words).strip()
    return {"text": " ".join(text.split()), "start": words[0]["start"], "end": words[-1].get("end", words[-1]["start"])}


def error_text(data: Any) -> str:
    """fal's error words: `detail` as text or as a list of pydantic-style errors, or `error`/`message`."""
    if isinstance(data, str):
        return data
    if not isinstance(data, dict):
        return ""
    detail = data.get("detail", data.get("error", data.get("message")))
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail) if detail is not None else ""
