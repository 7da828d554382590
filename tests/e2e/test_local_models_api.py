"""Broken input to the built-in models through the HTTP API of a real server.

Each broken input answers 400 with a message a client can act on: refused before anything is
charged where the submission can tell (text served as audio), otherwise as a failed job whose
charge is refunded (the ledger shows the charge and the refund; the balance is unchanged).
After each one, a valid request to the same model succeeds: the worker kept serving.
"""

from __future__ import annotations

import io
import struct
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
    dev_account,
    download,
    ledger,
    load_glb,
    object_png,
    wait_for_job,
)


def wav(samples: np.ndarray[Any, Any], rate: int) -> bytes:
    """16-bit mono PCM WAV."""
    pcm = np.clip(samples * 32767, -32768, 32767).astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", len(pcm))
    return bytes(header + pcm)


def long_wav(seconds: int, rate: int = 8000) -> bytes:
    """Unsigned 8-bit mono WAV of a quiet hum: the smallest honest file of that length."""
    count = seconds * rate
    hum = (128 + 20 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)).astype(np.uint8).tobytes()
    pcm = hum * seconds
    assert len(pcm) == count
    header = b"RIFF" + struct.pack("<I", 36 + count) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, rate, rate, 1, 8) + b"data" + struct.pack("<I", count)
    return header + pcm


def png(width: int, height: int, colour: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    server = MediaServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def server(start_server: Callable[..., Server]) -> Server:
    return start_server(env={**NO_UPSTREAM_KEYS, **ALLOW_LOOPBACK}, worker=True)


@pytest.fixture(scope="module")
def account(server: Server) -> DevAccount:
    return dev_account(server)


@pytest.fixture(scope="module")
def api(account: DevAccount) -> Iterator[httpx.Client]:
    with account.client() as client:
        yield client


@pytest.fixture(scope="module")
def speech_url(api: httpx.Client) -> str:
    """A recording of clear speech, made by the server's own local-tts (served at its /files URL)."""
    body = {"model": "local-tts", "input": {"text": "the weather is nice today. we walk to the park.", "format": "wav"}}
    response = api.post("/api/v1/audio/generate", json=body)
    assert response.status_code == 200, response.text
    url: str = response.json()["audioUrl"]
    return url


@dataclass(frozen=True)
class Broken:
    name: str
    path: str
    body: Callable[[MediaServer], dict[str, Any]]
    message: str
    """A phrase the error must contain, so the client learns what to fix."""
    valid: Callable[[MediaServer, str], dict[str, Any]]
    """A request to the same model that must succeed afterwards (given the media server and a speech URL)."""
    at_submit: bool = False
    """True when the submission itself can tell, so nothing may be charged at all."""


def _image_edit(model: str, urls: list[str], **extra: Any) -> dict[str, Any]:
    return {"model": model, "images": urls, **extra}


def _asr(url: str) -> dict[str, Any]:
    return {"model": "local-asr", "input": {"audio": url}}


BROKEN = [
    Broken(
        "truncated-png",
        "/v1/images/generate",
        lambda m: _image_edit("local-upscale", [m.add("cut.png", object_png(256)[:600], "image/png")]),
        "truncated",
        lambda m, _: _image_edit("local-upscale", [m.add("whole.png", object_png(64), "image/png")]),
    ),
    Broken(
        "text-as-audio",
        "/api/v1/audio/generate",
        lambda m: _asr(m.add("notes.mp3", b"These are meeting notes, not a recording.\n" * 40, "audio/mpeg")),
        "audio",
        lambda _, speech: _asr(speech),
        at_submit=True,
    ),
    Broken(
        "silent-audio",
        "/api/v1/audio/generate",
        lambda m: _asr(m.add("silence.wav", wav(np.zeros(3 * 16000), 16000), "audio/wav")),
        "no speech",
        lambda _, speech: _asr(speech),
    ),
    Broken(
        "one-pixel-image",
        "/api/v1/3d/generate",
        lambda m: {"model": "local-3d-relief", "input": {"image": m.add("dot.png", png(1, 1), "image/png")}},
        "1x1",
        lambda m, _: {"model": "local-3d-relief", "input": {"image": m.add("disc.png", object_png(), "image/png")}},
    ),
    Broken(
        "mask-of-the-wrong-size",
        "/v1/images/generate",
        lambda m: _image_edit(
            "local-inpaint",
            [m.add("photo.png", object_png(256), "image/png")],
            mask=m.add("small-mask.png", png(128, 128), "image/png"),
        ),
        "same size",
        lambda m, _: _image_edit(
            "local-inpaint", [m.add("photo.png", object_png(256), "image/png")], box=[100, 100, 40, 40]
        ),
    ),
    Broken(
        "audio-over-the-limit",
        "/api/v1/audio/generate",
        # local-asr's limit is 30 minutes; a minute more at 8 kHz, 8 bits is 15 MB.
        lambda m: _asr(m.add("lecture.wav", long_wav(31 * 60), "audio/wav")),
        "longer than the limit of 30 minutes",
        lambda _, speech: _asr(speech),
    ),
]


def check_refused(account: DevAccount, response: httpx.Response, case: Broken, entries_before: int) -> None:
    assert response.status_code == 400, response.text
    answer = response.json()
    assert case.message.lower() in answer["error"].lower()
    job_id = answer.get("jobId")
    entries = ledger(account)  # newest first
    new_entries = entries[: len(entries) - entries_before]
    if case.at_submit or job_id is None:
        assert job_id is None, "the submission could tell, yet a job was created"
        assert new_entries == [], "a refused submission left ledger entries"
        return
    # Found by the worker: the job failed and its charge came back, once.
    assert answer["refunded"] is True
    moves = sorted((e["kind"], e["amount"]) for e in new_entries if e["reference"] == job_id)
    assert [kind for kind, _ in moves] == ["charge", "refund"]
    assert moves[0][1] < 0 and moves[0][1] + moves[1][1] == 0
    with account.client() as api:
        job = api.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["creditsUsed"] == 0
    assert case.message.lower() in job["error"].lower()


@pytest.mark.parametrize("case", BROKEN, ids=[c.name for c in BROKEN])
def test_broken_input_answers_400_without_cost_and_the_worker_serves_the_next_request(
    case: Broken, api: httpx.Client, account: DevAccount, media: MediaServer, speech_url: str
) -> None:
    entries_before = len(ledger(account))
    before = balance(account)
    response = api.post(case.path, json=case.body(media))
    check_refused(account, response, case, entries_before)
    assert balance(account) == before

    follow_up = api.post(case.path, json=case.valid(media, speech_url))
    assert follow_up.status_code == 200, follow_up.text
    answer = follow_up.json()
    if "data" in answer:
        image = Image.open(io.BytesIO(download(answer["data"][0]["url"]).content))
        assert min(image.size) >= 64
    elif answer.get("outputUrl", "").endswith(".glb"):
        assert load_glb(download(answer["outputUrl"]).content).geometry
    else:
        assert answer["text"].strip() and answer["segments"], "the speech was not transcribed"
    assert balance(account) == before - answer["creditsUsed"]


def test_broken_input_to_an_asynchronous_model_fails_the_job_and_refunds_it(
    api: httpx.Client, account: DevAccount, media: MediaServer
) -> None:
    before = balance(account)
    image = media.add("cut-frame.png", object_png(256)[:600], "image/png")
    response = api.post("/v1/videos/generate", json={"model": "local-video-i2v", "input": {"image": image}})
    assert response.status_code == 202, response.text
    job = wait_for_job(api, response.json()["pollUrl"])
    assert job["status"] == "failed" and "truncated" in job["error"]
    assert job["creditsUsed"] == 0
    moves = sorted(e["kind"] for e in ledger(account) if e["reference"] == job["jobId"])
    assert moves == ["charge", "refund"]
    assert balance(account) == before


def test_the_server_survived_every_broken_input(server: Server) -> None:
    # Runs last in the module: no crash, and no broken input was mistaken for an internal error.
    assert server.process.poll() is None
    output = server.output()
    assert "failed unexpectedly" not in output
    assert "Traceback" not in output
