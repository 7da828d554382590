"""The WaveSpeed adapter against a double of WaveSpeed's published API."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from typing import Any

import pytest

from hypereal.errors import BadRequest, ProviderRefused, UpstreamBusy, UpstreamError, UpstreamTimeout
from hypereal.providers.base import Handle, Pending
from hypereal.providers.wavespeed import WaveSpeedProvider
from tests.doubles.wavespeed_double import WaveSpeedDouble
from tests.integration.upstreams.support import IMAGE, LAST, config, no_fetch, request, run_to_end


async def test_wavespeed_image_runs_to_a_result_with_translated_resolution(
    wavespeed: WaveSpeedProvider, wavespeed_double: WaveSpeedDouble
) -> None:
    wavespeed_double.outputs["google/nano-banana-pro/text-to-image"] = [wavespeed_double.file_url("out.png")]
    params = {"prompt": "p", "aspect_ratio": "16:9", "resolution": "1K", "output_format": "png"}
    handle = await wavespeed.submit(request("google/nano-banana-pro/text-to-image", params, "image"), no_fetch)
    assert isinstance(handle, Handle)
    sent = wavespeed_double.submissions[-1]
    assert sent.headers["Authorization"] == "Bearer ws-test-key"
    assert sent.input == {"prompt": "p", "aspect_ratio": "16:9", "resolution": "1k", "output_format": "png"}
    pending, result = await run_to_end(wavespeed, handle)
    assert [p.stage for p in pending] == ["queued", "running"]
    assert all(p.retry_after >= 2 for p in pending)
    assert [(o.url, o.content_type, o.extension) for o in result.outputs] == [
        (wavespeed_double.file_url("out.png"), "image/png", "png")
    ]


async def test_wavespeed_video_polls_no_faster_than_every_five_seconds(
    wavespeed: WaveSpeedProvider, wavespeed_double: WaveSpeedDouble
) -> None:
    params = {"prompt": "p", "image": IMAGE, "duration": 5, "resolution": "1080p"}
    handle = await wavespeed.submit(request("google/veo3.1/image-to-video", params), no_fetch)
    assert isinstance(handle, Handle)
    assert wavespeed_double.submissions[-1].input == {
        "prompt": "p",
        "image": IMAGE,
        "duration": 6,
        "resolution": "1080p",
    }
    pending, result = await run_to_end(wavespeed, handle)
    assert pending and all(p.retry_after >= 5 for p in pending)
    assert result.outputs[0].content_type == "video/mp4"


@pytest.mark.parametrize(
    ("model", "params", "expected"),
    [
        (
            "kwaivgi/kling-v3.0-pro/image-to-video",
            {"prompt": "p", "image": IMAGE, "last_image": LAST, "duration": 7},
            {"prompt": "p", "image": IMAGE, "end_image": LAST, "duration": 7},
        ),
        (
            "bytedance/seedream-v4.5",
            {"prompt": "p", "aspect_ratio": "16:9", "resolution": "2K"},
            {"prompt": "p", "size": "2048*1152"},
        ),
        (
            "minimax/speech-2.6-turbo",
            {"text": "hi", "voice": "Calm_Woman", "speed": 1.0},
            {"text": "hi", "voice_id": "Calm_Woman", "speed": 1.0},
        ),
        (
            "google/nano-banana-2/edit",
            {"prompt": "p", "images": [IMAGE], "resolution": "0.5K"},
            {"prompt": "p", "images": [IMAGE], "resolution": "0.5k"},
        ),
    ],
)
async def test_wavespeed_translates_parameters_per_model(
    wavespeed: WaveSpeedProvider,
    wavespeed_double: WaveSpeedDouble,
    model: str,
    params: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    await wavespeed.submit(request(model, params), no_fetch)
    assert wavespeed_double.submissions[-1].model == model
    assert wavespeed_double.submissions[-1].input == expected


async def test_wavespeed_failed_prediction_carries_its_error(
    wavespeed: WaveSpeedProvider, wavespeed_double: WaveSpeedDouble
) -> None:
    wavespeed_double.fail_jobs("Content flagged by the safety checker")
    handle = await wavespeed.submit(request("google/veo3.1/text-to-video", {"prompt": "p"}), no_fetch)
    assert isinstance(handle, Handle)
    with pytest.raises(UpstreamError, match="Content flagged by the safety checker"):
        await run_to_end(wavespeed, handle)


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (400, {"code": 400, "message": "duration must be one of 4, 6, 8"}, BadRequest, "duration must be one of"),
        (401, None, ProviderRefused, "refused this server's credentials"),
        (429, None, UpstreamBusy, "rate limiting"),
        (500, None, UpstreamError, "failed with status 500"),
    ],
)
async def test_wavespeed_error_statuses_on_submit(
    wavespeed: WaveSpeedProvider,
    wavespeed_double: WaveSpeedDouble,
    status: int,
    body: Any,
    error: type[Exception],
    words: str,
) -> None:
    wavespeed_double.fail_next("submit", status, body)
    with pytest.raises(error, match=words) as caught:
        await wavespeed.submit(request("google/veo3.1/text-to-video", {"prompt": "p"}), no_fetch)
    assert type(caught.value) is error


async def test_wavespeed_error_code_inside_a_200_answer_is_translated(
    wavespeed: WaveSpeedProvider, wavespeed_double: WaveSpeedDouble
) -> None:
    wavespeed_double.fail_next("submit", 200, {"code": 400, "message": "prompt is required", "data": None})
    with pytest.raises(BadRequest, match="prompt is required"):
        await wavespeed.submit(request("google/veo3.1/text-to-video", {}), no_fetch)


async def test_wavespeed_timeout_passing_errors_and_resume_after_restart(wavespeed_double: WaveSpeedDouble) -> None:
    provider = WaveSpeedProvider(
        config("wavespeed", "TEST_WAVESPEED_KEY", wavespeed_double.base_url, timeout_seconds=0.2)
    )
    try:
        handle = await provider.submit(request("google/veo3.1/text-to-video", {"prompt": "p"}, "video"), no_fetch)
        assert isinstance(handle, Handle)
        wavespeed_double.fail_next("result", 503)
        passing = await provider.poll(handle)
        assert isinstance(passing, Pending) and passing.retry_after >= 5
        wavespeed_double.delay_seconds = 2.0
        with pytest.raises(UpstreamTimeout):
            await provider.submit(request("google/veo3.1/text-to-video", {"prompt": "p"}), no_fetch)
        wavespeed_double.delay_seconds = 0.0
    finally:
        await provider.close()
    fresh = WaveSpeedProvider(config("wavespeed", "TEST_WAVESPEED_KEY", wavespeed_double.base_url))
    try:
        _, result = await run_to_end(fresh, Handle(**json.loads(json.dumps(asdict(handle)))))
        assert await fresh.cancel(handle) is False  # WaveSpeed publishes no cancel
    finally:
        await fresh.close()
    assert result.outputs[0].url == wavespeed_double.file_url(f"{handle.request_id}.mp4")


async def test_wavespeed_refuses_data_uris(wavespeed: WaveSpeedProvider, wavespeed_double: WaveSpeedDouble) -> None:
    uri = "data:image/png;base64," + base64.b64encode(b"png").decode()
    with pytest.raises(BadRequest, match="data: URIs are not supported by this provider"):
        await wavespeed.submit(request("alibaba/wan-2.6/image-to-video", {"prompt": "p", "image": uri}), no_fetch)
    assert wavespeed_double.submissions == []
