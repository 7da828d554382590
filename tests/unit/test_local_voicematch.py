"""local-voice-match: the output lands on the reference's pitch and follows its pace."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import pyworld
from scipy import signal

from hypereal.errors import BadRequest, ValidationFailed
from hypereal.providers.base import InputFetcher, InputFile, MediaRequest
from hypereal.providers.local import voicematch
from hypereal.providers.local.audiocodec import decode_audio, encode_audio
from hypereal.providers.local.speech import Prosody, Speaker, espeak, synthesize
from hypereal.providers.local.voicematch import analyse_voice, match_voice, shift_pitch

RATE = espeak().sample_rate
TEXT = "Good morning everyone, thank you for coming to the meeting today."
REFERENCE_TEXT = "I really think we should take the train to the city tomorrow."


def median_pitch(samples: np.ndarray) -> float:
    """Measured independently of the module, with WORLD's Harvest estimator."""
    audio = samples.astype(np.float64)
    f0, _ = pyworld.harvest(audio, RATE, f0_floor=60, f0_ceil=600, frame_period=10)
    return float(np.median(f0[f0 > 0]))


def glottal_pulses(f0: float, seconds: float = 3.0) -> np.ndarray:
    """An impulse train at `f0` with slight vibrato through three vowel formants, gated at 4 syllables a second."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))) / RATE
    voice: np.ndarray = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    for centre, bandwidth in ((700, 110), (1200, 120), (2600, 160)):
        r = np.exp(-np.pi * bandwidth / RATE)
        voice = signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * centre / RATE), r * r], voice)
    gate = (np.sin(2 * np.pi * 4 * t) > 0).astype(np.float64)
    return (0.3 * voice / np.abs(voice).max() * gate).astype(np.float32)


@pytest.fixture(scope="module")
def default_pitch() -> float:
    return median_pitch(synthesize(TEXT))


def request(**params: object) -> MediaRequest:
    return MediaRequest(
        job_id="job_vm", model="local-voice-match", upstream_model="local-voice-match", category="audio", params=params
    )


def serving(data: bytes) -> InputFetcher:
    async def fetch(url: str, *, kind: str) -> InputFile:
        assert kind == "audio"
        return InputFile(data=data, content_type="audio/wav", url=url)

    return fetch


@pytest.mark.parametrize(
    "reference",
    [
        pytest.param(lambda: Speaker("en-us+f3").render(REFERENCE_TEXT, Prosody(pitch=10)), id="high-espeak-voice"),
        pytest.param(lambda: Speaker("en-us+m3", 1.5).render(REFERENCE_TEXT, Prosody(pitch=35)), id="tenor-espeak"),
        pytest.param(lambda: glottal_pulses(220.0), id="glottal-pulse-train"),
    ],
)
async def test_output_pitch_lands_on_a_distant_reference(
    reference: Callable[[], np.ndarray], default_pitch: float
) -> None:
    recording = reference()
    target = median_pitch(recording)
    assert abs(target / default_pitch - 1) >= 0.3  # the reference really is far from the default voice

    result = await voicematch.MODELS["local-voice-match"](
        request(text=TEXT, audio="https://example.com/ref.mp3", format="wav"),
        serving(encode_audio(recording, RATE, "mp3")),
    )

    [output] = result.outputs
    assert output.content_type == "audio/wav" and output.data is not None
    spoken = decode_audio(output.data, RATE)
    assert abs(median_pitch(spoken) / target - 1) < 0.15
    assert abs(len(spoken) / RATE - result.extra["duration"]) < 0.05
    matched = result.extra["matched"]
    assert abs(matched["reference"]["median_pitch"] / target - 1) < 0.1
    assert abs(matched["output"]["median_pitch"] / target - 1) < 0.1


def test_pace_follows_the_reference() -> None:
    fast = analyse_voice(Speaker("en-us", 1.8).render(REFERENCE_TEXT), RATE)
    slow = analyse_voice(Speaker("en-us", 0.6).render(REFERENCE_TEXT), RATE)
    assert fast.speaking_rate > 1.5 * slow.speaking_rate

    fast_out, _ = match_voice(TEXT, fast)
    slow_out, _ = match_voice(TEXT, slow)
    assert len(slow_out) > 1.6 * len(fast_out)


def test_pitch_range_follows_the_reference() -> None:
    flat = analyse_voice(Speaker().render(REFERENCE_TEXT, Prosody(range=-45)), RATE)
    lively = analyse_voice(Speaker().render(REFERENCE_TEXT, Prosody(range=45)), RATE)
    assert lively.pitch_range > 2 * flat.pitch_range

    _, flat_details = match_voice(TEXT, flat)
    _, lively_details = match_voice(TEXT, lively)
    assert lively_details["output"]["pitch_range"] > 2 * flat_details["output"]["pitch_range"]


def test_shift_pitch_moves_the_median_and_keeps_length() -> None:
    spoken = synthesize(TEXT)
    shifted = shift_pitch(spoken, RATE, 180.0)
    assert abs(median_pitch(shifted) / 180.0 - 1) < 0.05
    assert abs(len(shifted) - len(spoken)) < RATE // 100


@pytest.mark.parametrize(
    "reference",
    [
        pytest.param(b"this is plain text, not a recording " * 20, id="text-as-audio"),
        pytest.param(encode_audio(np.zeros(RATE * 2, np.float32), RATE, "wav"), id="silence"),
        pytest.param(encode_audio(0.05 * np.random.default_rng(1).standard_normal(RATE * 2).astype(np.float32),
                                  RATE, "flac"), id="noise"),
        pytest.param(b"", id="empty"),
    ],
)  # fmt: skip
async def test_unusable_references_are_refused(reference: bytes) -> None:
    with pytest.raises(BadRequest):
        await voicematch.MODELS["local-voice-match"](
            request(text=TEXT, audio="https://example.com/ref.wav"), serving(reference)
        )


@pytest.mark.parametrize("params", [{"text": TEXT}, {"audio": "https://example.com/a.wav"},
                                    {"text": TEXT, "audio": "https://example.com/a.wav", "format": "aac"}])  # fmt: skip
async def test_missing_or_wrong_parameters_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        await voicematch.MODELS["local-voice-match"](request(**params), serving(b""))
