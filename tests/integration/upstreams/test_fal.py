"""The fal queue adapter against a double of fal's published queue API."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from typing import Any

import pytest

from hypereal.errors import BadRequest, ProviderRefused, UpstreamBusy, UpstreamError, UpstreamTimeout
from hypereal.providers.base import Handle, Pending
from hypereal.providers.fal import FalProvider
from tests.doubles.fal_double import FalDouble
from tests.integration.upstreams.support import IMAGE, LAST, config, no_fetch, request, run_to_end


async def test_fal_video_goes_through_the_queue_to_a_result(fal: FalProvider, fal_double: FalDouble) -> None:
    params = {"prompt": "a cat surfing", "image": IMAGE, "duration": 5, "resolution": "720p", "generate_audio": True}
    handle = await fal.submit(request("fal-ai/veo3.1/image-to-video", params), no_fetch)

    assert isinstance(handle, Handle)
    sent = fal_double.submissions[-1]
    assert sent.model == "fal-ai/veo3.1/image-to-video"
    assert sent.headers["Authorization"] == "Key fal-test-key"
    assert sent.input == {
        "prompt": "a cat surfing",
        "image_url": IMAGE,
        "duration": "6s",  # Veo renders 4, 6 or 8 s: 5 is rounded up
        "resolution": "720p",
        "generate_audio": True,
    }
    assert handle.request_id in fal_double.requests
    # status and result drop the model's subpath; the handle keeps fal's own URLs
    assert handle.data["status_url"].endswith(f"/fal-ai/veo3.1/requests/{handle.request_id}/status")
    assert handle.data["response_url"].endswith(f"/fal-ai/veo3.1/requests/{handle.request_id}")
    assert handle.data["cancel_url"].endswith(f"/fal-ai/veo3.1/requests/{handle.request_id}/cancel")

    pending, result = await run_to_end(fal, handle)
    assert [p.stage for p in pending] == ["queued", "running"]
    assert all(p.retry_after >= 5 for p in pending)  # video is not polled more often than every 5 s
    assert len(result.outputs) == 1
    output = result.outputs[0]
    assert output.url == fal_double.file_url(f"{handle.request_id}.mp4")
    assert (output.content_type, output.extension, output.data) == ("video/mp4", "mp4", None)


@pytest.mark.parametrize(
    ("model", "params", "expected"),
    [
        (
            "fal-ai/veo3.1/first-last-frame-to-video",
            {"prompt": "p", "image": IMAGE, "last_image": LAST, "duration": 7},
            {"prompt": "p", "first_frame_url": IMAGE, "last_frame_url": LAST, "duration": "8s"},
        ),
        (
            "fal-ai/veo3.1/reference-to-video",
            {"prompt": "p", "images": [IMAGE, LAST], "duration": 8},
            {"prompt": "p", "image_urls": [IMAGE, LAST], "duration": "8s"},
        ),
        (
            "fal-ai/kling-video/v3/pro/image-to-video",
            {"prompt": "p", "image": IMAGE, "last_image": LAST, "duration": 12},
            {"prompt": "p", "start_image_url": IMAGE, "end_image_url": LAST, "duration": "12"},
        ),
        (
            "fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
            {"prompt": "p", "image": IMAGE, "last_image": LAST, "duration": 10},
            {"prompt": "p", "image_url": IMAGE, "tail_image_url": LAST, "duration": "10"},
        ),
        (
            "fal-ai/sora-2/image-to-video",
            {"prompt": "p", "image": IMAGE, "duration": 8},
            {"prompt": "p", "image_url": IMAGE, "duration": 8},
        ),
        (
            "wan/v2.6/image-to-video",
            {"prompt": "p", "image": IMAGE, "audio": LAST, "duration": 10},
            {"prompt": "p", "image_url": IMAGE, "audio_url": LAST, "duration": "10"},
        ),
        (
            "fal-ai/flux-pro/v1.1",
            {"prompt": "p", "aspect_ratio": "16:9", "output_format": "png"},
            {"prompt": "p", "image_size": "landscape_16_9", "output_format": "png"},
        ),
        (
            "fal-ai/flux-pro/v1.1-ultra",
            {"prompt": "p", "aspect_ratio": "21:9"},
            {"prompt": "p", "aspect_ratio": "21:9"},
        ),
        (
            "fal-ai/gpt-image-1/text-to-image",
            {"prompt": "p", "aspect_ratio": "3:2", "quality": "high"},
            {"prompt": "p", "image_size": "1536x1024", "quality": "high"},
        ),
        (
            "fal-ai/bytedance/seedream/v4.5/text-to-image",
            {"prompt": "p", "aspect_ratio": "16:9", "resolution": "2K"},
            {"prompt": "p", "image_size": {"width": 2048, "height": 1152}},
        ),
        (
            "fal-ai/flux-pro/kontext",
            {"prompt": "p", "images": [IMAGE, LAST]},
            {"prompt": "p", "image_url": IMAGE},
        ),
        (
            "fal-ai/nano-banana-pro/edit",
            {"prompt": "p", "images": [IMAGE, LAST], "resolution": "1K"},
            {"prompt": "p", "image_urls": [IMAGE, LAST], "resolution": "1K"},
        ),
        (
            "fal-ai/topaz/upscale/image",
            {"images": [IMAGE], "scale": 4},
            {"image_url": IMAGE, "upscale_factor": 4},
        ),
        (
            "fal-ai/minimax/speech-2.6-hd",
            {"text": "hi", "voice": "Wise_Woman", "speed": 1.2, "emotion": "happy", "format": "mp3"},
            {
                "text": "hi",
                "voice_setting": {"voice_id": "Wise_Woman", "speed": 1.2, "emotion": "happy"},
                "audio_setting": {"format": "mp3"},
                "output_format": "url",
            },
        ),
        (
            "fal-ai/elevenlabs/sound-effects/v2",
            {"prompt": "rain", "duration": 4.5},
            {"text": "rain", "duration_seconds": 4.5},
        ),
        (
            "fal-ai/hunyuan3d/v2/multi-view",
            {"front_image_url": IMAGE, "back_image_url": LAST, "left_image_url": IMAGE, "right_image_url": LAST},
            {"front_image_url": IMAGE, "back_image_url": LAST, "left_image_url": IMAGE},
        ),
        (
            "fal-ai/hunyuan3d/v2",
            {"image": IMAGE, "textured_mesh": True},
            {"input_image_url": IMAGE, "textured_mesh": True},
        ),
        (
            "fal-ai/hyper3d/rodin",
            {"image": IMAGE, "quality": "high"},
            {"input_image_urls": [IMAGE], "quality": "high"},
        ),
    ],
)
async def test_fal_translates_parameters_per_model(
    fal: FalProvider, fal_double: FalDouble, model: str, params: dict[str, Any], expected: dict[str, Any]
) -> None:
    await fal.submit(request(model, params), no_fetch)
    assert fal_double.submissions[-1].model == model
    assert fal_double.submissions[-1].input == expected


async def test_fal_images_are_listed_in_order_with_their_types(fal: FalProvider, fal_double: FalDouble) -> None:
    fal_double.results["fal-ai/nano-banana"] = {
        "images": [
            {"url": fal_double.file_url("a.png"), "content_type": "image/png", "width": 1024, "height": 1024},
            {"url": fal_double.file_url("b.jpeg"), "content_type": "image/jpeg"},
        ],
        "description": "",
    }
    handle = await fal.submit(request("fal-ai/nano-banana", {"prompt": "p"}, "image"), no_fetch)
    assert isinstance(handle, Handle)
    pending, result = await run_to_end(fal, handle)
    assert all(2 <= p.retry_after < 5 for p in pending)  # images are polled sooner than video
    assert [(o.url, o.content_type, o.extension) for o in result.outputs] == [
        (fal_double.file_url("a.png"), "image/png", "png"),
        (fal_double.file_url("b.jpeg"), "image/jpeg", "jpeg"),
    ]


async def test_fal_3d_mesh_is_a_glb_output(fal: FalProvider, fal_double: FalDouble) -> None:
    fal_double.results["fal-ai/hunyuan3d/v2"] = {
        "model_mesh": {"url": fal_double.file_url("mesh.glb"), "file_size": 10},
        "seed": 1,
    }
    handle = await fal.submit(request("fal-ai/hunyuan3d/v2", {"image": IMAGE}, "3d"), no_fetch)
    assert isinstance(handle, Handle)
    _, result = await run_to_end(fal, handle)
    assert [(o.content_type, o.extension) for o in result.outputs] == [("model/gltf-binary", "glb")]


async def test_fal_transcription_becomes_text_and_segments(fal: FalProvider, fal_double: FalDouble) -> None:
    fal_double.results["fal-ai/whisper"] = {
        "text": " Hello there. General Kenobi.",
        "chunks": [
            {"timestamp": [0.0, 1.4], "text": " Hello there."},
            {"timestamp": [1.6, 3.25], "text": " General Kenobi."},
        ],
    }
    handle = await fal.submit(request("fal-ai/whisper", {"audio": IMAGE, "language": "en"}, "audio"), no_fetch)
    assert isinstance(handle, Handle)
    assert fal_double.submissions[-1].input == {"audio_url": IMAGE, "language": "en"}
    _, result = await run_to_end(fal, handle)
    assert result.outputs == []
    assert result.extra == {
        "text": "Hello there. General Kenobi.",
        "duration": 3.25,
        "segments": [
            {"text": "Hello there.", "start": 0.0, "end": 1.4},
            {"text": "General Kenobi.", "start": 1.6, "end": 3.25},
        ],
    }


async def test_fal_cancel_stops_a_queued_request_but_not_a_finished_one(
    fal: FalProvider, fal_double: FalDouble
) -> None:
    queued = await fal.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    assert isinstance(queued, Handle)
    assert await fal.cancel(queued) is True
    assert fal_double.requests[queued.request_id].canceled

    done = await fal.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    assert isinstance(done, Handle)
    await run_to_end(fal, done)
    assert await fal.cancel(done) is False  # fal answers 400 ALREADY_COMPLETED
    assert not fal_double.requests[done.request_id].canceled


async def test_fal_validation_error_is_a_bad_request_with_fal_words(fal: FalProvider, fal_double: FalDouble) -> None:
    fal_double.fail_next(
        "submit", 422, {"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}]}
    )
    with pytest.raises(BadRequest) as caught:
        await fal.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    assert caught.value.status == 400
    assert "prompt: field required" in caught.value.message


async def test_fal_rejected_key_is_for_the_operator(fal_double: FalDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_FAL_KEY", "wrong")
    provider = FalProvider(config("fal", "TEST_FAL_KEY", fal_double.base_url))
    try:
        with pytest.raises(ProviderRefused) as caught:
            await provider.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    finally:
        await provider.close()
    assert "refused this server's credentials" in caught.value.message
    assert caught.value.status == 400, "not a status clients retry"


@pytest.mark.parametrize(("status", "error"), [(429, UpstreamBusy), (500, UpstreamError), (503, UpstreamBusy)])
async def test_fal_rate_limits_and_server_errors_on_submit(
    fal: FalProvider, fal_double: FalDouble, status: int, error: type[UpstreamError]
) -> None:
    fal_double.fail_next("submit", status)
    with pytest.raises(error) as caught:
        await fal.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    assert type(caught.value) is error
    assert caught.value.status == error.status


async def test_fal_slow_answer_is_an_upstream_timeout(fal_double: FalDouble) -> None:
    fal_double.delay_seconds = 2.0
    provider = FalProvider(config("fal", "TEST_FAL_KEY", fal_double.base_url, timeout_seconds=0.2))
    try:
        with pytest.raises(UpstreamTimeout) as caught:
            await provider.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    finally:
        await provider.close()
    assert caught.value.status == 504


async def test_unreachable_upstream_is_an_upstream_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_FAL_KEY", "k")
    double = await FalDouble().start()
    base = double.base_url
    await double.stop()  # nothing listens there any more
    provider = FalProvider(config("fal", "TEST_FAL_KEY", base))
    try:
        with pytest.raises(UpstreamError, match="Could not reach fal"):
            await provider.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    finally:
        await provider.close()


async def test_fal_failed_job_fails_with_the_upstream_reason(fal: FalProvider, fal_double: FalDouble) -> None:
    fal_double.fail_jobs("GPU worker crashed", status=500)
    handle = await fal.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    assert isinstance(handle, Handle)
    with pytest.raises(UpstreamError, match="GPU worker crashed"):
        await run_to_end(fal, handle)


async def test_fal_input_refused_while_running_is_a_bad_request(fal: FalProvider, fal_double: FalDouble) -> None:
    fal_double.fail_jobs([{"loc": ["body", "image_url"], "msg": "Could not download the image"}], status=422)
    handle = await fal.submit(request("fal-ai/veo3.1/image-to-video", {"prompt": "p", "image": IMAGE}), no_fetch)
    assert isinstance(handle, Handle)
    with pytest.raises(BadRequest, match="image_url: Could not download the image"):
        await run_to_end(fal, handle)


async def test_fal_passing_poll_failures_ask_again_later(fal: FalProvider, fal_double: FalDouble) -> None:
    handle = await fal.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    assert isinstance(handle, Handle)
    fal_double.fail_next("status", 503)
    fal_double.fail_next("status", 429)
    first, second = await fal.poll(handle), await fal.poll(handle)
    assert isinstance(first, Pending) and isinstance(second, Pending)
    assert second.retry_after == 7  # fal's Retry-After is honoured
    assert fal_double.requests[handle.request_id].polls == 0  # neither call reached the queue
    pending, result = await run_to_end(fal, handle)
    assert [p.stage for p in pending] == ["queued", "running"]
    assert result.outputs


async def test_fal_result_server_error_after_completion_fails_the_job(fal: FalProvider, fal_double: FalDouble) -> None:
    fal_double.polls_in_queue = fal_double.polls_in_progress = 0
    handle = await fal.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    assert isinstance(handle, Handle)
    fal_double.fail_next("result", 500, {"detail": "Unexpected error in the model"})
    with pytest.raises(UpstreamError, match="Unexpected error in the model"):
        await fal.poll(handle)


async def test_fal_handle_survives_json_and_a_new_process(fal: FalProvider, fal_double: FalDouble) -> None:
    handle = await fal.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    assert isinstance(handle, Handle)
    assert isinstance(await fal.poll(handle), Pending)
    stored = json.dumps(asdict(handle))
    await fal.close()  # the first worker is gone

    fresh = FalProvider(config("fal", "TEST_FAL_KEY", fal_double.base_url))
    try:
        pending, result = await run_to_end(fresh, Handle(**json.loads(stored)))
    finally:
        await fresh.close()
    assert [p.stage for p in pending] == ["running"]
    assert result.outputs[0].url == fal_double.file_url(f"{handle.request_id}.mp4")
    assert len(fal_double.submissions) == 1  # resumed, never submitted again


async def test_fal_never_sends_the_key_outside_its_api(fal: FalProvider, fal_double: FalDouble) -> None:
    handle = Handle("abc", {"status_url": "https://attacker.example/status", "category": "video"})
    with pytest.raises(UpstreamError, match="outside its API"):
        await fal.poll(handle)
    assert fal_double.status_calls == 0


async def test_fal_session_is_reopened_after_close(fal: FalProvider) -> None:
    assert isinstance(await fal.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch), Handle)
    await fal.close()
    assert isinstance(await fal.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch), Handle)


async def test_fal_passes_small_data_uris_and_refuses_huge_ones(fal_double: FalDouble) -> None:
    provider = FalProvider(config("fal", "TEST_FAL_KEY", fal_double.base_url, options={"data_uri_max_bytes": 1000}))
    small = "data:image/png;base64," + base64.b64encode(b"x" * 100).decode()
    huge = "data:image/png;base64," + base64.b64encode(b"x" * 5000).decode()
    try:
        await provider.submit(request("fal-ai/veo3.1/image-to-video", {"prompt": "p", "image": small}), no_fetch)
        assert fal_double.submissions[-1].input["image_url"] == small
        with pytest.raises(BadRequest, match="data: URIs over"):
            await provider.submit(request("fal-ai/veo3.1/image-to-video", {"prompt": "p", "image": huge}), no_fetch)
    finally:
        await provider.close()
    assert len(fal_double.submissions) == 1
