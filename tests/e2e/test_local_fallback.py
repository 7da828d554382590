"""HYPEREAL_LOCAL_FALLBACK: the docs' own examples served by the built-in models, or refused.

Two real servers with no upstream key: one with the setting, where the API docs' example
requests (their model ids, bodies and `mode`) are served by the local model of the same kind
and the answer and the job name it; one without, where the same requests answer 400 (not
a status clients retry) naming the key to set, and nothing is charged.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import Server
from tests.e2e.test_docs_examples import (
    ALLOW_LOOPBACK,
    NO_UPSTREAM_KEYS,
    DevAccount,
    MediaServer,
    balance,
    decode_audio,
    decode_video,
    dev_account,
    download,
    ledger,
    load_glb,
    object_png,
    wait_for_job,
)


@dataclass(frozen=True)
class DocsExample:
    """One request exactly as the API docs write it, but for the input URLs."""

    name: str
    path: str
    body: Callable[[MediaServer], dict[str, Any]]
    served_by: str
    missing_keys: tuple[str, ...]
    """The environment variables the refusal must name: those of every route of the model."""
    synchronous: bool = True


EXAMPLES = [
    DocsExample(
        "image",
        "/v1/images/generate",
        lambda media: {"prompt": "a sunset over the ocean", "model": "gpt-image-2", "mode": "fast"},
        "local-image",
        ("FAL_KEY",),
    ),
    DocsExample(
        "video",
        "/v1/videos/generate",
        lambda media: {
            "model": "wan-2-6-i2v",
            "mode": "fast",
            "input": {"prompt": "a cat walking", "image": media.add("cat.png", object_png(320), "image/png")},
        },
        "local-video-i2v",
        ("FAL_KEY", "WAVESPEED_API_KEY"),
        synchronous=False,
    ),
    DocsExample(
        "speech",
        "/api/v1/audio/generate",
        lambda media: {"model": "audio-tts", "input": {"text": "(happy) Welcome to Hypereal!", "format": "mp3"}},
        "local-tts",
        ("FAL_KEY", "REPLICATE_API_TOKEN"),
    ),
    DocsExample(
        "3d",
        "/api/v1/3d/generate",
        lambda media: {
            "model": "hunyuan3d-v2-base",
            "input": {"image": media.add("object.png", object_png(), "image/png")},
        },
        "local-3d-relief",
        ("FAL_KEY",),
    ),
]


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    server = MediaServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def fallback(start_server: Callable[..., Server]) -> DevAccount:
    env = {**NO_UPSTREAM_KEYS, **ALLOW_LOOPBACK, "HYPEREAL_LOCAL_FALLBACK": "true"}
    return dev_account(start_server(env=env, worker=True))


@pytest.fixture(scope="module")
def strict(start_server: Callable[..., Server]) -> DevAccount:
    return dev_account(start_server(env={**NO_UPSTREAM_KEYS, **ALLOW_LOOPBACK}, worker=True))


def check_output(example: DocsExample, url: str) -> None:
    """The file is what the stand-in makes, decoded, not just present."""
    data = download(url).content
    if example.name == "image":
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.width == image.height  # gpt-image-2's default 1:1
        assert np.asarray(image.convert("RGB"), np.float32).std() > 10
    elif example.name == "video":
        video = decode_video(data)
        assert video.codec == "h264" and video.pixel_format == "yuv420p"
        assert video.seconds == pytest.approx(5.0, abs=1 / video.fps)  # wan-2-6-i2v's default duration
    elif example.name == "speech":
        container, samples, rate = decode_audio(data)
        assert container == "mp3" and len(samples) / rate > 0.6
    else:
        scene = load_glb(data)
        assert sum(len(mesh.faces) for mesh in scene.geometry.values()) > 100


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_fallback_serves_the_docs_example_and_says_who_served_it(
    example: DocsExample, fallback: DevAccount, media: MediaServer
) -> None:
    before = balance(fallback)
    with fallback.client() as api:
        response = api.post(example.path, json=example.body(media))
        if example.synchronous:
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["provider"] == "local"
            assert answer["servedBy"] == example.served_by
        else:
            assert response.status_code == 202, response.text
        job_id = response.json()["jobId"]
        job = wait_for_job(api, f"/api/v1/jobs/{job_id}")

    assert job["status"] == "completed", job
    assert job["provider"] == "local"
    assert job["servedBy"] == example.served_by
    assert job["model"] == example.body(media)["model"]  # the client's model id is kept
    check_output(example, job["outputUrl"])

    # Billed at the stand-in's (cheap) price, exactly once.
    charged = [e for e in ledger(fallback) if e["reference"] == job_id and e["kind"] == "charge"]
    assert [e["amount"] for e in charged] == [-job["creditsUsed"]]
    assert balance(fallback) == before - job["creditsUsed"]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_without_fallback_the_docs_example_fails_clearly_and_charges_nothing(
    example: DocsExample, strict: DevAccount, media: MediaServer
) -> None:
    entries = ledger(strict)
    before = balance(strict)
    response = httpx.post(
        strict.server.url + example.path, json=example.body(media), headers=strict.headers, timeout=60
    )
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert example.body(media)["model"] in message
    for key in example.missing_keys:
        assert key in message
    assert "HYPEREAL_LOCAL_FALLBACK" in message

    assert balance(strict) == before
    assert ledger(strict) == entries
    jobs = httpx.get(strict.server.url + "/api/v1/jobs", headers=strict.headers, timeout=30).json()["data"]
    assert jobs == []
