"""The Replicate adapter against a double of Replicate's published predictions API."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from typing import Any

import pytest

from hypereal.errors import BadRequest, ProviderRefused, UpstreamBusy, UpstreamError, UpstreamTimeout
from hypereal.providers.base import Handle, Pending, Result
from hypereal.providers.replicate import ReplicateProvider
from tests.doubles.replicate_double import ReplicateDouble
from tests.integration.upstreams.support import IMAGE, LAST, config, no_fetch, request, run_to_end


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


@pytest.mark.parametrize(("status", "error"), [(401, ProviderRefused), (429, UpstreamBusy), (500, UpstreamError)])
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
