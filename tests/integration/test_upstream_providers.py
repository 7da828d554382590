"""The fal, Replicate and WaveSpeed adapters against local doubles of their published APIs."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from hypereal.catalog.loader import load_catalog
from hypereal.catalog.schema import ProviderConfig
from hypereal.errors import BadRequest, Unavailable, UpstreamError, UpstreamTimeout
from hypereal.jobs.worker import Worker
from hypereal.providers.base import Handle, InputFile, MediaProvider, MediaRequest, Pending, Result
from hypereal.providers.fal import FalProvider
from hypereal.providers.registry import load_class
from hypereal.providers.replicate import ReplicateProvider
from hypereal.providers.upstream import guess_output, poll_delay, translate
from hypereal.providers.wavespeed import WaveSpeedProvider
from hypereal.services import Services
from hypereal.settings import Settings
from tests.conftest import create_test_account
from tests.doubles.fal_double import FalDouble
from tests.doubles.replicate_double import ReplicateDouble
from tests.doubles.wavespeed_double import WaveSpeedDouble

IMAGE = "https://example.com/cat.png"
LAST = "https://example.com/dog.png"


async def no_fetch(url: str, *, kind: str) -> InputFile:
    raise AssertionError("upstream adapters pass URLs on; they never fetch inputs")


def request(model: str, params: dict[str, Any], category: str = "video", catalog_id: str = "m") -> MediaRequest:
    return MediaRequest(job_id="job_1", model=catalog_id, upstream_model=model, category=category, params=params)


async def run_to_end(provider: MediaProvider, handle: Handle, limit: int = 10) -> tuple[list[Pending], Result]:
    seen: list[Pending] = []
    for _ in range(limit):
        outcome = await provider.poll(handle)
        if isinstance(outcome, Result):
            return seen, outcome
        seen.append(outcome)
    raise AssertionError(f"no result after {limit} polls: {seen}")


def config(kind: str, env: str, base_url: str, **more: Any) -> ProviderConfig:
    return ProviderConfig(type=kind, api_key_env=env, base_url=base_url, **more)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
async def fal_double(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FalDouble]:
    monkeypatch.setenv("TEST_FAL_KEY", "fal-test-key")
    async with FalDouble() as double:
        yield double


@pytest.fixture
async def fal(fal_double: FalDouble) -> AsyncIterator[FalProvider]:
    provider = FalProvider(config("fal", "TEST_FAL_KEY", fal_double.base_url, timeout_seconds=5))
    yield provider
    await provider.close()


@pytest.fixture
async def replicate_double(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ReplicateDouble]:
    monkeypatch.setenv("TEST_REPLICATE_TOKEN", "r8-test-token")
    async with ReplicateDouble() as double:
        yield double


@pytest.fixture
async def replicate(replicate_double: ReplicateDouble) -> AsyncIterator[ReplicateProvider]:
    provider = ReplicateProvider(config("replicate", "TEST_REPLICATE_TOKEN", replicate_double.base_url))
    yield provider
    await provider.close()


@pytest.fixture
async def wavespeed_double(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WaveSpeedDouble]:
    monkeypatch.setenv("TEST_WAVESPEED_KEY", "ws-test-key")
    async with WaveSpeedDouble() as double:
        yield double


@pytest.fixture
async def wavespeed(wavespeed_double: WaveSpeedDouble) -> AsyncIterator[WaveSpeedProvider]:
    provider = WaveSpeedProvider(config("wavespeed", "TEST_WAVESPEED_KEY", wavespeed_double.base_url))
    yield provider
    await provider.close()


# ---------------------------------------------------------------------------- registry and tables


def test_registry_builds_the_three_upstream_types() -> None:
    assert load_class("fal") is FalProvider
    assert load_class("replicate") is ReplicateProvider
    assert load_class("wavespeed") is WaveSpeedProvider


def test_unconfigured_provider_is_unavailable_and_says_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_ABSENT_KEY", raising=False)
    provider = FalProvider(ProviderConfig(type="fal", api_key_env="TEST_ABSENT_KEY"))
    assert not provider.available()
    assert provider.client.base_url == "https://queue.fal.run"


async def test_submit_without_credentials_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_ABSENT_KEY", raising=False)
    provider = WaveSpeedProvider(ProviderConfig(type="wavespeed", api_key_env="TEST_ABSENT_KEY"))
    with pytest.raises(Unavailable, match="TEST_ABSENT_KEY"):
        await provider.submit(request("google/veo3.1/text-to-video", {"prompt": "x"}), no_fetch)


def _catalog_params(spec: Any) -> dict[str, Any]:
    """Every declared parameter with a plausible value, so each table entry is exercised."""
    params: dict[str, Any] = {}
    for name, p in spec.params.items():
        if p.enum:
            params[name] = p.enum[-1]
        elif p.type == "images":
            params[name] = [IMAGE, LAST]
        elif p.type in ("image", "audio"):
            params[name] = IMAGE
        elif p.type in ("integer", "number"):
            params[name] = p.default if p.default is not None else int(p.minimum or 1)
        elif p.type == "boolean":
            params[name] = True
        else:
            params[name] = p.default if p.default is not None else "text"
    return params


@pytest.mark.parametrize(
    ("provider_type", "table"),
    [("fal", FalProvider), ("replicate", ReplicateProvider), ("wavespeed", WaveSpeedProvider)],
)
def test_every_catalog_route_translates_to_upstream_names(provider_type: str, table: type) -> None:
    """fal takes every file as a `*_url(s)` field: no Hypereal file name may reach it untranslated;
    durations always leave as whole numbers or the strings the upstream wants."""
    from hypereal.providers import fal, replicate, wavespeed
    from hypereal.providers.upstream import resolve_inputs

    tables = {"fal": fal.INPUTS, "replicate": replicate.INPUTS, "wavespeed": wavespeed.INPUTS}
    catalog = load_catalog()
    routes = [
        (spec, route)
        for spec in catalog.models.values()
        for route in spec.routes
        if catalog.providers[route.provider].type == provider_type
    ]
    assert routes, f"the catalog has no {provider_type} routes"
    for spec, route in routes:
        params = _catalog_params(spec)
        body = translate(params, resolve_inputs(tables[provider_type], route.model.partition(":")[0]))
        json.dumps(body)  # the body must be plain JSON
        if provider_type == "fal":
            leaked = {"image", "images", "last_image", "audio", "mask"} & body.keys()
            assert not leaked, f"{spec.id} via {route.model} sends Hypereal names {leaked}"
        if "duration" in params and "duration" in body:
            assert isinstance(body["duration"], int | str), (spec.id, body["duration"])


def test_poll_delay_backs_off_with_age_within_bounds() -> None:
    now = 1_000_000.0
    assert poll_delay("image", now, now) == 2.0
    assert poll_delay("video", now, now) == 5.0
    assert poll_delay("video", now - 120, now) == 12.0  # a two-minute-old render is asked less often
    assert poll_delay("image", now - 3600, now) == 30.0  # but never less than every 30 s


def test_output_types_come_from_upstream_then_url_then_category() -> None:
    told = guess_output("https://cdn.example/f/abc", "video", "video/webm; codecs=vp9")
    assert (told.content_type, told.extension) == ("video/webm", "webm")
    by_url = guess_output("https://cdn.example/f/mesh.glb?sig=1", "3d")
    assert (by_url.content_type, by_url.extension) == ("model/gltf-binary", "glb")
    by_category = guess_output("https://cdn.example/f/abc", "audio")
    assert (by_category.content_type, by_category.extension, by_category.url) == (
        "audio/mpeg",
        "mp3",
        "https://cdn.example/f/abc",
    )


# ---------------------------------------------------------------------------- fal


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


async def test_fal_rejected_key_is_unavailable(fal_double: FalDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_FAL_KEY", "wrong")
    provider = FalProvider(config("fal", "TEST_FAL_KEY", fal_double.base_url))
    try:
        with pytest.raises(Unavailable) as caught:
            await provider.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    finally:
        await provider.close()
    assert caught.value.message == "provider credentials rejected"
    assert caught.value.status == 503


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_fal_rate_limits_and_server_errors_on_submit_are_upstream_errors(
    fal: FalProvider, fal_double: FalDouble, status: int
) -> None:
    fal_double.fail_next("submit", status)
    with pytest.raises(UpstreamError) as caught:
        await fal.submit(request("fal-ai/veo3.1", {"prompt": "p"}), no_fetch)
    assert type(caught.value) is UpstreamError
    assert caught.value.status == 502


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
        with pytest.raises(UpstreamError, match="could not be reached"):
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


# ---------------------------------------------------------------------------- Replicate


async def test_replicate_model_prediction_runs_to_a_result(
    replicate: ReplicateProvider, replicate_double: ReplicateDouble
) -> None:
    params = {"prompt": "p", "image": IMAGE, "duration": 6, "aspect_ratio": "9:16", "resolution": "1080p"}
    handle = await replicate.submit(request("openai/sora-2-pro", params), no_fetch)
    assert isinstance(handle, Handle)
    sent = replicate_double.submissions[-1]
    assert (sent.model, sent.version) == ("openai/sora-2-pro", None)
    assert sent.headers["Authorization"] == "Bearer r8-test-token"
    assert sent.input == {
        "input": {
            "prompt": "p",
            "input_reference": IMAGE,
            "seconds": 8,  # Sora renders 4, 8 or 12 s
            "aspect_ratio": "portrait",
            "resolution": "high",
        }
    }
    pending, result = await run_to_end(replicate, handle)
    assert [p.stage for p in pending] == ["queued", "running"]
    assert [(o.url, o.content_type) for o in result.outputs] == [
        (replicate_double.file_url(f"{handle.request_id}.mp4"), "video/mp4")
    ]


@pytest.mark.parametrize(
    ("model", "params", "expected"),
    [
        (
            "google/veo-3.1",
            {"prompt": "p", "image": IMAGE, "last_image": LAST, "duration": 5, "aspect_ratio": "auto"},
            {"prompt": "p", "image": IMAGE, "last_frame": LAST, "duration": 6},
        ),
        (
            "minimax/hailuo-02",
            {"prompt": "p", "image": IMAGE, "last_image": LAST, "resolution": "768P", "duration": 6},
            {"prompt": "p", "first_frame_image": IMAGE, "last_frame_image": LAST, "resolution": "768p", "duration": 6},
        ),
        (
            "kwaivgi/kling-v2.6",
            {"prompt": "p", "image": IMAGE, "last_image": LAST, "duration": 10},
            {"prompt": "p", "start_image": IMAGE, "end_image": LAST, "duration": 10},
        ),
        (
            "google/nano-banana",
            {"prompt": "p", "images": [IMAGE, LAST], "aspect_ratio": "auto"},
            {"prompt": "p", "image_input": [IMAGE, LAST], "aspect_ratio": "match_input_image"},
        ),
        (
            "black-forest-labs/flux-kontext-pro",
            {"prompt": "p", "images": [IMAGE, LAST], "aspect_ratio": "16:9"},
            {"prompt": "p", "input_image": IMAGE, "aspect_ratio": "16:9"},
        ),
    ],
)
async def test_replicate_translates_parameters_per_model(
    replicate: ReplicateProvider,
    replicate_double: ReplicateDouble,
    model: str,
    params: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    await replicate.submit(request(model, params), no_fetch)
    assert replicate_double.submissions[-1].input == {"input": expected}


async def test_replicate_pinned_version_uses_the_predictions_endpoint(
    replicate: ReplicateProvider, replicate_double: ReplicateDouble
) -> None:
    replicate_double.versions["5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"] = "acme/img"
    replicate_double.outputs["acme/img"] = [replicate_double.file_url("1.webp"), replicate_double.file_url("2.webp")]
    model = "acme/img:5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
    handle = await replicate.submit(request(model, {"prompt": "p"}, "image"), no_fetch)
    assert isinstance(handle, Handle)
    assert replicate_double.submissions[-1].input["version"] == model.split(":")[1]
    _, result = await run_to_end(replicate, handle)
    assert [(o.extension, o.content_type) for o in result.outputs] == [("webp", "image/webp")] * 2

    with pytest.raises(BadRequest, match="version does not exist"):
        await replicate.submit(request("acme/img:0000", {"prompt": "p"}, "image"), no_fetch)


async def test_replicate_wait_preference_answers_on_submit(replicate_double: ReplicateDouble) -> None:
    provider = ReplicateProvider(
        config("replicate", "TEST_REPLICATE_TOKEN", replicate_double.base_url, options={"wait_seconds": 30})
    )
    try:
        outcome = await provider.submit(request("black-forest-labs/flux-schnell", {"prompt": "p"}, "image"), no_fetch)
    finally:
        await provider.close()
    assert isinstance(outcome, Result)
    assert replicate_double.submissions[-1].headers["Prefer"] == "wait=30"


async def test_replicate_failed_prediction_carries_its_error(
    replicate: ReplicateProvider, replicate_double: ReplicateDouble
) -> None:
    replicate_double.fail_jobs("CUDA out of memory")
    handle = await replicate.submit(request("google/veo-3", {"prompt": "p"}), no_fetch)
    assert isinstance(handle, Handle)
    with pytest.raises(UpstreamError, match="CUDA out of memory"):
        await run_to_end(replicate, handle)


async def test_replicate_cancel_then_poll_reports_canceled(
    replicate: ReplicateProvider, replicate_double: ReplicateDouble
) -> None:
    handle = await replicate.submit(request("google/veo-3", {"prompt": "p"}), no_fetch)
    assert isinstance(handle, Handle)
    assert await replicate.cancel(handle) is True
    assert replicate_double.predictions[handle.request_id].canceled
    with pytest.raises(UpstreamError, match="canceled"):
        await replicate.poll(handle)


async def test_replicate_invalid_input_names_the_fields(
    replicate: ReplicateProvider, replicate_double: ReplicateDouble
) -> None:
    replicate_double.fail_next(
        "submit",
        422,
        {
            "title": "Input validation failed",
            "detail": "- input.seconds: must be one of 4, 8, 12",
            "status": 422,
            "invalid_fields": [{"type": "enum", "field": "input.seconds", "description": "must be one of 4, 8, 12"}],
        },
    )
    with pytest.raises(BadRequest, match=r"input\.seconds: must be one of 4, 8, 12"):
        await replicate.submit(request("openai/sora-2", {"prompt": "p"}), no_fetch)


@pytest.mark.parametrize(("status", "error"), [(401, Unavailable), (429, UpstreamError), (500, UpstreamError)])
async def test_replicate_error_statuses_on_submit(
    replicate: ReplicateProvider, replicate_double: ReplicateDouble, status: int, error: type[Exception]
) -> None:
    replicate_double.fail_next("submit", status)
    with pytest.raises(error) as caught:
        await replicate.submit(request("google/veo-3", {"prompt": "p"}), no_fetch)
    assert type(caught.value) is error


async def test_replicate_timeout_and_passing_poll_errors(replicate_double: ReplicateDouble) -> None:
    provider = ReplicateProvider(
        config("replicate", "TEST_REPLICATE_TOKEN", replicate_double.base_url, timeout_seconds=0.2)
    )
    try:
        handle = await provider.submit(request("google/veo-3", {"prompt": "p"}), no_fetch)
        assert isinstance(handle, Handle)
        replicate_double.delay_seconds = 2.0
        slow = await provider.poll(handle)  # a slow status call is not a failed video
        assert isinstance(slow, Pending)
        with pytest.raises(UpstreamTimeout):
            await provider.submit(request("google/veo-3", {"prompt": "p"}), no_fetch)
        replicate_double.delay_seconds = 0.0
        replicate_double.fail_next("get", 502)
        assert isinstance(await provider.poll(handle), Pending)
        _, result = await run_to_end(provider, handle)
    finally:
        await provider.close()
    assert result.outputs


async def test_replicate_refuses_data_uris_over_its_limit(
    replicate: ReplicateProvider, replicate_double: ReplicateDouble
) -> None:
    big = "data:image/png;base64," + base64.b64encode(b"x" * (1024 * 1024 + 10)).decode()
    with pytest.raises(BadRequest, match="data: URIs over 1024 KB are not supported by this provider"):
        await replicate.submit(request("google/veo-3", {"prompt": "p", "image": big}), no_fetch)
    assert replicate_double.submissions == []


async def test_replicate_handle_resumes_in_a_fresh_provider(
    replicate: ReplicateProvider, replicate_double: ReplicateDouble
) -> None:
    handle = await replicate.submit(request("google/veo-3", {"prompt": "p"}), no_fetch)
    assert isinstance(handle, Handle)
    restored = Handle(**json.loads(json.dumps(asdict(handle))))
    fresh = ReplicateProvider(config("replicate", "TEST_REPLICATE_TOKEN", replicate_double.base_url))
    try:
        _, result = await run_to_end(fresh, restored)
    finally:
        await fresh.close()
    assert result.outputs[0].url == replicate_double.file_url(f"{handle.request_id}.mp4")
    assert len(replicate_double.submissions) == 1


# ---------------------------------------------------------------------------- WaveSpeed


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
        (401, None, Unavailable, "provider credentials rejected"),
        (429, None, UpstreamError, "rate limiting"),
        (500, None, UpstreamError, "answered 500"),
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


# ---------------------------------------------------------------------------- through the job engine


@pytest.fixture
async def fal_services(
    tmp_path: Path,
    fal_double: FalDouble,
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
) -> AsyncIterator[Services]:
    """The app's services with the catalog's `fal` provider pointed at the double, and a worker."""
    catalog = tmp_path / "fal-catalog.yaml"
    catalog.write_text(
        f"providers:\n  fal: {{type: fal, api_key_env: TEST_FAL_KEY, base_url: '{fal_double.base_url}'}}\n"
    )
    services = await make_services(make_settings(catalog=catalog))
    worker = Worker(services.jobs, 2)
    worker.start()
    try:
        yield services
    finally:
        await worker.stop()


async def test_engine_completes_an_image_through_the_fal_queue(
    fal_services: Services, fal_double: FalDouble, make_client: Callable[[Services], httpx.AsyncClient]
) -> None:
    fal_double.polls_in_queue = fal_double.polls_in_progress = 0
    fal_double.results["fal-ai/nano-banana"] = {
        "images": [{"url": fal_double.file_url("cat.png"), "content_type": "image/png"}]
    }
    account = await create_test_account(fal_services, credits=100)
    client = make_client(fal_services)

    answer = await client.post(
        "/v1/images/generate",
        json={"model": "nano-banana-t2i", "prompt": "a cat", "aspect_ratio": "16:9"},
        headers=account.headers,
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["data"][0]["url"] == fal_double.file_url("cat.png")
    assert fal_double.submissions[-1].model == "fal-ai/nano-banana"
    assert fal_double.submissions[-1].input["prompt"] == "a cat"
    job = await client.get(f"/v1/jobs/{answer.json()['jobId']}", headers=account.headers)
    assert job.json()["status"] == "completed"
    balance = (await client.get("/v1/account", headers=account.headers)).json()["balance"]
    assert balance == 100 - answer.json()["creditsUsed"] < 100


async def test_engine_refunds_a_job_fal_failed(
    fal_services: Services, fal_double: FalDouble, make_client: Callable[[Services], httpx.AsyncClient]
) -> None:
    fal_double.polls_in_queue = fal_double.polls_in_progress = 0
    fal_double.fail_jobs("Model crashed")
    account = await create_test_account(fal_services, credits=100)
    client = make_client(fal_services)

    answer = await client.post(
        "/v1/images/generate", json={"model": "nano-banana-t2i", "prompt": "a cat"}, headers=account.headers
    )

    job_id = answer.json().get("jobId") or answer.json().get("resultId")
    job = (await client.get(f"/v1/jobs/{job_id}", headers=account.headers)).json()
    assert job["status"] == "failed"
    assert "Model crashed" in job["error"]
    balance = (await client.get("/v1/account", headers=account.headers)).json()["balance"]
    assert balance == 100
