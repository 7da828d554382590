"""local-asr: segments line up with the speech, gaps stay empty, every container decodes, bad input is refused."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hypereal.errors import BadRequest, ValidationFailed
from hypereal.providers.base import InputFetcher, InputFile, MediaRequest
from hypereal.providers.local import transcribe as asr
from hypereal.providers.local.audiocodec import encode_audio, resample
from hypereal.providers.local.speech import espeak, synthesize
from hypereal.providers.local.transcribe import SAMPLE_RATE, Span, phrases, transcribe

# espeak's "f5" variant is the one PocketSphinx's US English model understands best.
VOICE = "en-us+f5"
FIRST = "Please call me tomorrow morning at nine o'clock."
SECOND = "I would like to order a pizza with cheese and tomatoes."
LEAD, GAP = 0.5, 2.0


def speak(text: str) -> np.ndarray:
    return resample(synthesize(text, VOICE, 0.85), espeak().sample_rate, SAMPLE_RATE)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


class Recording:
    """Two utterances with known positions, 2 s of silence between them."""

    def __init__(self) -> None:
        first, second = speak(FIRST), speak(SECOND)
        self.samples = np.concatenate([silence(LEAD), first, silence(GAP), second, silence(0.4)])
        self.first = (LEAD, LEAD + len(first) / SAMPLE_RATE)
        self.second = (self.first[1] + GAP, self.first[1] + GAP + len(second) / SAMPLE_RATE)
        self.duration = len(self.samples) / SAMPLE_RATE

    def wav(self) -> bytes:
        return encode_audio(self.samples, SAMPLE_RATE, "wav")


@pytest.fixture(scope="module")
def recording() -> Recording:
    return Recording()


@pytest.fixture(scope="module")
def transcript(recording: Recording) -> dict[str, object]:
    return asr.transcribe(recording.wav()).as_dict()


def request(**params: object) -> MediaRequest:
    return MediaRequest(
        job_id="job_asr", model="local-asr", upstream_model="local-asr", category="audio", params=params
    )


def serving(data: bytes) -> InputFetcher:
    async def fetch(url: str, *, kind: str) -> InputFile:
        assert kind == "audio"
        return InputFile(data=data, content_type="application/octet-stream", url=url)

    return fetch


def inside(span: dict[str, float], region: tuple[float, float], slack: float = 0.25) -> bool:
    return region[0] - slack <= span["start"] and span["end"] <= region[1] + slack


def test_segments_are_ordered_apart_and_inside_the_audio(transcript: dict[str, object], recording: Recording) -> None:
    assert transcript["duration"] == pytest.approx(recording.duration, abs=0.01)
    for key in ("segments", "words"):
        spans = transcript[key]
        assert isinstance(spans, list) and spans
        for span in spans:
            assert 0.0 <= span["start"] < span["end"] <= recording.duration
        for before, after in itertools.pairwise(spans):
            assert before["end"] <= after["start"]
    segments = transcript["segments"]
    assert isinstance(segments, list)
    assert transcript["text"] == " ".join(segment["text"] for segment in segments)


def test_words_line_up_with_the_speech_and_not_the_gap(transcript: dict[str, object], recording: Recording) -> None:
    words = transcript["words"]
    assert isinstance(words, list)
    gap = (recording.first[1] + 0.25, recording.second[0] - 0.25)
    assert not [w for w in words if w["end"] > gap[0] and w["start"] < gap[1]]
    first = [w for w in words if inside(w, recording.first)]
    second = [w for w in words if inside(w, recording.second)]
    assert len(first) + len(second) == len(words)
    # Both utterances are heard, from their start to their end.
    assert len(first) >= 5 and len(second) >= 5
    assert first[0]["start"] < recording.first[0] + 0.4 and first[-1]["end"] > recording.first[1] - 0.5
    assert second[0]["start"] < recording.second[0] + 0.4 and second[-1]["end"] > recording.second[1] - 0.5
    # The pause splits the phrases: no segment spans the silence.
    segments = transcript["segments"]
    assert isinstance(segments, list)
    for segment in segments:
        assert inside(segment, recording.first) or inside(segment, recording.second)


def test_most_known_words_are_recognised(transcript: dict[str, object]) -> None:
    expected = set(f"{FIRST} {SECOND}".lower().replace(".", "").split())
    heard = set(str(transcript["text"]).split())
    assert len(expected & heard) >= 0.6 * len(expected)


def test_phrases_break_at_pauses() -> None:
    words = [Span("one", 0.0, 0.3), Span("two", 0.35, 0.6), Span("three", 1.2, 1.5), Span("four", 1.5, 1.8)]
    assert phrases(words) == [Span("one two", 0.0, 0.6), Span("three four", 1.2, 1.8)]
    assert phrases([]) == []


@pytest.mark.parametrize("format", ["mp3", "ogg", "flac", "webm", "m4a"])
async def test_every_container_decodes(format: str) -> None:
    spoken = np.concatenate([silence(0.3), speak(FIRST), silence(0.3)])
    data = encode_audio(spoken, SAMPLE_RATE, format)

    result = await asr.MODELS["local-asr"](request(audio=f"https://example.com/a.{format}"), serving(data))

    assert result.outputs == []
    assert result.extra["duration"] == pytest.approx(len(spoken) / SAMPLE_RATE, abs=0.15)
    # espeak adds random noise to its voice, so recognition varies a little between runs:
    # the container decoded to intelligible speech when most of the words come back.
    expected = set(FIRST.lower().replace(".", "").split())
    assert len(expected & set(result.extra["text"].split())) >= 0.5 * len(expected)
    assert all(0 <= s["start"] < s["end"] <= result.extra["duration"] for s in result.extra["segments"])


def test_resampled_input_keeps_its_timing(recording: Recording) -> None:
    at_44k = resample(recording.samples, SAMPLE_RATE, 44_100)
    words = transcribe(encode_audio(at_44k, 44_100, "flac")).words
    assert words and words[0].start == pytest.approx(recording.first[0], abs=0.4)
    assert words[-1].end == pytest.approx(recording.second[1], abs=0.5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"Dear customer, this is a text file and not audio at all. " * 10, "decoded", id="text"),
        pytest.param(b"", "empty", id="empty"),
        pytest.param(encode_audio(silence(3.0), SAMPLE_RATE, "wav"), "No speech", id="silence"),
        pytest.param(
            encode_audio((0.0005 * np.random.default_rng(2).standard_normal(3 * SAMPLE_RATE)).astype(np.float32),
                         SAMPLE_RATE, "flac"), "No speech", id="faint-hiss",
        ),
        pytest.param(encode_audio(silence(1.0) + 0.2, SAMPLE_RATE, "wav")[:30], "decoded", id="truncated-header"),
    ],
)  # fmt: skip
async def test_broken_input_is_a_bad_request(data: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        await asr.MODELS["local-asr"](request(audio="https://example.com/broken.mp3"), serving(data))


def test_audio_over_the_limit_is_refused(recording: Recording) -> None:
    with pytest.raises(BadRequest, match="longer than the limit"):
        transcribe(recording.wav(), max_seconds=5.0)
    assert transcribe(recording.wav(), max_seconds=recording.duration + 1).words


def test_the_model_limit_is_thirty_minutes() -> None:
    assert asr.MAX_SECONDS == 30 * 60


@pytest.mark.parametrize("params", [{}, {"audio": ""}, {"audio": "https://example.com/a.wav", "language": "fr"}])
async def test_wrong_parameters_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        await asr.MODELS["local-asr"](request(**params), serving(b""))
