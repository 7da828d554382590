"""local-tts: every format decodes, markers measurably change the voice, bad input is refused."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest
import pyworld

from hypereal.errors import BadRequest, ValidationFailed
from hypereal.providers.base import InputFile, MediaRequest
from hypereal.providers.local import speech
from hypereal.providers.local.audiocodec import decode_audio
from hypereal.providers.local.speech import (
    EMOTIONS,
    NEUTRAL,
    SOUNDS,
    TONES,
    Sound,
    Speaker,
    Spoken,
    espeak,
    parse_markers,
    synthesize,
)

RATE = espeak().sample_rate
SENTENCE = "The weather today is quite pleasant, and we are going for a walk."
ALL_MARKERS = [*EMOTIONS, *TONES, *SOUNDS]


def voicing(samples: np.ndarray) -> tuple[float, float, float]:
    """(median F0 in Hz, fraction of 10 ms frames that are voiced, share of energy in voiced frames)."""
    audio = samples.astype(np.float64)
    f0, times = pyworld.dio(audio, RATE, f0_floor=60, f0_ceil=600, frame_period=10)
    f0 = pyworld.stonemask(audio, f0, times, RATE)
    hop = RATE // 100
    frames = min(len(f0), len(audio) // hop)
    energy = (audio[: frames * hop].reshape(frames, hop) ** 2).sum(axis=1)
    voiced = f0[:frames] > 0
    median = float(np.median(f0[:frames][voiced])) if voiced.any() else 0.0
    return median, float(voiced.mean()), float(energy[voiced].sum() / max(energy.sum(), 1e-12))


def loudness(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def seconds(samples: np.ndarray) -> float:
    return len(samples) / RATE


def request(**params: object) -> MediaRequest:
    return MediaRequest(
        job_id="job_tts", model="local-tts", upstream_model="local-tts", category="audio", params=params
    )


async def no_fetch(url: str, *, kind: str) -> InputFile:
    raise AssertionError("local-tts fetches nothing")


@pytest.mark.parametrize(
    ("format", "codec", "content_type"),
    [("mp3", "mp3", "audio/mpeg"), ("wav", "pcm_s16le", "audio/wav"), ("ogg", "opus", "audio/ogg"),
     ("flac", "flac", "audio/flac")],
)  # fmt: skip
async def test_every_format_decodes_to_the_spoken_audio(format: str, codec: str, content_type: str) -> None:
    result = await speech.MODELS["local-tts"](request(text="(happy) Welcome to Hypereal!", format=format), no_fetch)

    [output] = result.outputs
    assert output.content_type == content_type and output.extension == format
    assert output.data is not None
    with av.open(io.BytesIO(output.data)) as container:
        assert container.streams.audio[0].codec_context.name.startswith(codec)
    decoded = decode_audio(output.data, RATE)
    assert abs(seconds(decoded) - result.extra["duration"]) < 0.12
    assert 1.0 < result.extra["duration"] < 4.0
    pitch, voiced_fraction, _ = voicing(decoded)
    assert voiced_fraction > 0.4 and 80 < pitch < 300


def test_duration_grows_with_text() -> None:
    short = synthesize("Hello there.")
    medium = synthesize("Hello there, how are you doing this fine morning?")
    long = synthesize(
        "Hello there, how are you doing this fine morning? I hope the trip went well and the hotel was nice."
    )
    assert seconds(short) + 0.8 < seconds(medium)
    assert seconds(medium) + 1.5 < seconds(long)


def test_speed_shortens_speech() -> None:
    assert seconds(synthesize(SENTENCE, speed=1.6)) < 0.8 * seconds(synthesize(SENTENCE, speed=1.0))
    assert seconds(synthesize(SENTENCE, speed=0.6)) > 1.2 * seconds(synthesize(SENTENCE, speed=1.0))


def test_excited_is_higher_pitched_than_sad() -> None:
    excited, _, _ = voicing(synthesize(f"(excited) {SENTENCE}"))
    sad, _, _ = voicing(synthesize(f"(sad) {SENTENCE}"))
    assert excited > 1.25 * sad


def test_whispering_has_far_less_voiced_energy() -> None:
    _, neutral_fraction, neutral_energy = voicing(synthesize(SENTENCE))
    _, whisper_fraction, whisper_energy = voicing(synthesize(f"(whispering) {SENTENCE}"))
    assert neutral_fraction > 0.5 and neutral_energy > 0.8
    assert whisper_fraction < 0.2 * neutral_fraction
    assert whisper_energy < 0.2 * neutral_energy


@pytest.fixture(scope="module")
def neutral() -> tuple[float, float, float]:
    audio = synthesize(SENTENCE)
    return voicing(audio)[0], seconds(audio), loudness(audio)


DOCUMENTED_EMOTIONS = {
    "angry", "sad", "disdainful", "excited", "surprised", "satisfied", "unhappy", "anxious", "hysterical",
    "delighted", "scared", "worried", "indifferent", "upset", "impatient", "nervous", "guilty", "scornful",
    "frustrated", "depressed", "panicked", "furious", "empathetic", "embarrassed", "reluctant", "disgusted",
    "keen", "moved", "proud", "relaxed", "grateful", "confident", "interested", "curious", "confused",
    "joyful", "disapproving", "negative", "denying", "astonished", "serious", "sarcastic", "conciliative",
    "comforting", "sincere", "sneering", "hesitating", "yielding", "painful", "awkward", "amused", "happy",
}  # fmt: skip


def test_the_tables_hold_every_documented_marker() -> None:
    assert set(EMOTIONS) == DOCUMENTED_EMOTIONS
    assert set(TONES) == {"in a hurry tone", "shouting", "screaming", "whispering", "soft tone"}
    assert set(SOUNDS) == {
        "laughing", "chuckling", "sobbing", "crying loudly", "sighing", "panting", "groaning",
        "crowd laughing", "background laughter", "audience laughing",
    }  # fmt: skip


@pytest.mark.parametrize("marker", ALL_MARKERS)
def test_every_marker_changes_pitch_rate_or_volume(marker: str, neutral: tuple[float, float, float]) -> None:
    [*_, last] = parse_markers(f"({marker.title()}) {SENTENCE}")
    assert isinstance(last, Spoken) and last.text == SENTENCE  # recognised, not read out

    audio = synthesize(f"({marker}) {SENTENCE}")
    pitch, duration, level = voicing(audio)[0], seconds(audio), loudness(audio)
    base_pitch, base_duration, base_level = neutral
    changes = {
        "pitch": abs(pitch / base_pitch - 1) if pitch else 1.0,
        "rate": abs(duration / base_duration - 1),
        "volume": abs(level / base_level - 1),
    }
    assert changes["pitch"] > 0.05 or changes["rate"] > 0.07 or changes["volume"] > 0.12, changes


def test_a_marker_holds_until_the_next_one() -> None:
    pieces = parse_markers("(sad) I miss you. It has been long. (excited) But you are here!")
    assert pieces == [
        Spoken("I miss you. It has been long.", EMOTIONS["sad"]),
        Spoken("But you are here!", EMOTIONS["excited"]),
    ]
    sentence = "We walked along the river for an hour."
    audio = synthesize(f"(sad) {sentence} (excited) {sentence}")
    half = len(audio) // 2
    assert voicing(audio[half:])[0] > 1.2 * voicing(audio[:half])[0]


def test_back_to_back_markers_combine_and_sounds_keep_the_mood() -> None:
    pieces = parse_markers("(excited)(laughing) Amazing! (sad)(whispering) oh no")
    assert pieces[0] == Sound("laughing", EMOTIONS["excited"])
    assert pieces[1] == Spoken("Amazing!", EMOTIONS["excited"])
    sad_whisper = pieces[2]
    assert isinstance(sad_whisper, Spoken) and sad_whisper.prosody.variant == "whisper"
    assert sad_whisper.prosody.pitch == EMOTIONS["sad"].pitch
    assert parse_markers("plain words") == [Spoken("plain words", NEUTRAL)]


def test_sounds_insert_audio_of_their_kind() -> None:
    plain = synthesize("Well.")
    assert seconds(synthesize("(laughing) Well.")) > seconds(plain) + 0.4
    assert seconds(synthesize("(crowd laughing) Well.")) > seconds(plain) + 1.8
    assert synthesize("(laughing)").size > 0

    speaker = Speaker()
    # A laugh is voiced and high, and follows the mood; a sigh is breath, not voice.
    laugh = SOUNDS["laughing"](speaker, NEUTRAL)
    assert voicing(laugh)[0] > 1.3 * voicing(plain)[0]
    excited_laugh = SOUNDS["laughing"](speaker, EMOTIONS["excited"])
    sad_laugh = SOUNDS["laughing"](speaker, EMOTIONS["sad"])
    assert voicing(excited_laugh)[0] > 1.2 * voicing(sad_laugh)[0]
    sigh = SOUNDS["sighing"](speaker, NEUTRAL)
    assert voicing(sigh)[1] < 0.1 and loudness(sigh) > 0.02
    groan = SOUNDS["groaning"](speaker, NEUTRAL)
    assert voicing(groan)[0] < 0.9 * voicing(plain)[0]
    # Background laughter sits under the speech; an audience is loud.
    assert loudness(SOUNDS["background laughter"](speaker, NEUTRAL)) < 0.6 * loudness(
        SOUNDS["audience laughing"](speaker, NEUTRAL)
    )


@pytest.mark.parametrize(
    "text", ["(banana) Hello there", "Hello (there", "Hello) there", "((happy)) Hello", "(" * 60 + "Hello",
             "(a parenthetical remark that is much too long to be any marker) Hello", "(Happy )  Hello"],
)  # fmt: skip
def test_unknown_markers_are_read_and_never_crash(text: str) -> None:
    assert seconds(synthesize(text)) > 0.3


def test_an_unknown_marker_is_spoken_as_words() -> None:
    assert seconds(synthesize("(banana) Hello there")) > seconds(synthesize("Hello there")) + 0.25


def test_voices_are_selectable() -> None:
    english = synthesize("Bonjour, comment allez-vous?", voice="en-us")
    french = synthesize("Bonjour, comment allez-vous?", voice="fr")
    assert not np.array_equal(english[: min(len(english), len(french))], french[: min(len(english), len(french))])
    female = synthesize(SENTENCE, voice="en-us+f3")
    assert voicing(female)[0] > 1.5 * voicing(synthesize(SENTENCE))[0]


@pytest.mark.parametrize(
    "params",
    [{"text": ""}, {"text": "   "}, {}, {"text": "x" * 5001}, {"text": "hi", "format": "aac"},
     {"text": "hi", "speed": 3}, {"text": "hi", "speed": "fast"}, {"text": "hi", "voice": "xx-nowhere"},
     {"text": "hi", "voice": "../../etc/passwd"}, {"text": "..."}],
)  # fmt: skip
async def test_bad_parameters_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        await speech.MODELS["local-tts"](request(**params), no_fetch)


async def test_unknown_voice_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed, match="voice"):
        await speech.MODELS["local-tts"](request(text="hello", voice="zz"), no_fetch)


def test_concurrent_synthesis_matches_one_at_a_time() -> None:
    # espeak adds random noise to its sounds, so runs are not bit-identical: compare measurements.
    texts = [f"({mood}) Number {i} is speaking now." for i, mood in enumerate(["sad", "excited", "whispering"] * 3)]
    alone = [synthesize(text) for text in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(synthesize, texts))
    for expected, got in zip(alone, together, strict=True):
        assert abs(len(got) / len(expected) - 1) < 0.02
        expected_pitch, expected_voicing, _ = voicing(expected)
        got_pitch, got_voicing, _ = voicing(got)
        assert abs(got_voicing - expected_voicing) < 0.1
        # A whisper has only a few voiced frames, whose pitch estimate is noise: compare voiced speech only.
        if expected_pitch and expected_voicing > 0.2:
            assert abs(got_pitch / expected_pitch - 1) < 0.05
