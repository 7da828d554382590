"""`local-asr`: offline English transcription with CMU PocketSphinx and its bundled model.

PocketSphinx is a classical HMM/GMM recogniser with an n-gram language model: it works on
clear, close-miked English and makes many more mistakes than a neural recogniser on
accented, noisy or conversational speech. Its US English acoustic model, dictionary and
language model ship in the `pocketsphinx` wheel; nothing is downloaded.

How a file is transcribed:
1. decode any common container with PyAV and resample (band-limited) to 16 kHz mono;
2. find the speech regions with PocketSphinx's voice activity detector plus an energy floor,
   so silence between utterances never turns into words; no region at all is "no speech";
3. decode each region as one utterance and read the word segmentation (100 frames a second),
   dropping silences, noise and sentence markers;
4. join words into phrases, starting a new phrase at every pause of `PHRASE_PAUSE` seconds.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pocketsphinx

from hypereal.errors import BadRequest, ValidationFailed
from hypereal.providers.base import InputFetcher, MediaRequest, Result
from hypereal.providers.local import LocalModel
from hypereal.providers.local.audiocodec import Samples, decode_audio, duration_of

SAMPLE_RATE = 16_000
MAX_SECONDS = 30 * 60
PHRASE_PAUSE = 0.3
MAX_PHRASE_WORDS = 16
LANGUAGES = ("en", "en-us", "english")

_FRAMES_PER_SECOND = 100
_VAD_FRAME = 0.03
# Frames quieter than this are silence whatever the detector thinks (about -50 dBFS).
_ENERGY_FLOOR = 0.003
_MERGE_GAP = 0.35
_MIN_REGION = 0.12
_REGION_PAD = 0.15
# Long stretches of speech are decoded in pieces; a single utterance grows the search lattice.
_MAX_REGION = 25.0
_NOT_WORDS = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")
_ALTERNATE = re.compile(r"\(\d+\)$")


@dataclass(frozen=True, slots=True)
class Span:
    text: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    duration: float
    segments: list[Span]
    words: list[Span]

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "duration": round(self.duration, 3),
            "segments": [_rounded(span) for span in self.segments],
            "words": [_rounded(span) for span in self.words],
        }


def _rounded(span: Span) -> dict[str, Any]:
    return {**asdict(span), "start": round(span.start, 3), "end": round(span.end, 3)}


# ---------------------------------------------------------------------------------------------
# Decoders are costly to load (a few tenths of a second) and not thread-safe: keep idle ones.

_idle_decoders: list[Any] = []
_idle_lock = threading.Lock()


@contextmanager
def _decoder() -> Iterator[Any]:
    with _idle_lock:
        decoder = _idle_decoders.pop() if _idle_decoders else None
    if decoder is None:
        # Skipping the flat-lexicon rescoring pass makes decoding about a third faster
        # without a measurable loss on bench/local_audio.py's sentences.
        decoder = pocketsphinx.Decoder(loglevel="FATAL", fwdflat=False)
    try:
        yield decoder
    finally:
        with _idle_lock:
            _idle_decoders.append(decoder)


# ---------------------------------------------------------------------------------------------


def speech_regions(samples: Samples, rate: int = SAMPLE_RATE) -> list[tuple[float, float]]:
    """Stretches of speech as (start, end) seconds, in order and apart from each other."""
    vad = pocketsphinx.Vad(mode=2, sample_rate=rate, frame_length=_VAD_FRAME)
    frame_length = vad.frame_bytes // 2
    frame_seconds = frame_length / rate
    pcm = _int16(samples)
    count = len(pcm) // frame_length
    frames = pcm[: count * frame_length].reshape(count, frame_length)
    loudness = np.sqrt(np.mean((frames.astype(np.float32) / 32768.0) ** 2, axis=1))
    speech = np.zeros(count, dtype=bool)
    for index in np.flatnonzero(loudness > _ENERGY_FLOOR).tolist():
        speech[index] = vad.is_speech(frames[index].tobytes())
    regions: list[list[float]] = []
    for index in np.flatnonzero(speech).tolist():
        start, end = index * frame_seconds, (index + 1) * frame_seconds
        if regions and start - regions[-1][1] < _MERGE_GAP:
            regions[-1][1] = end
        else:
            regions.append([start, end])
    total = len(samples) / rate
    padded: list[tuple[float, float]] = []
    for start, end in regions:
        if end - start < _MIN_REGION:
            continue
        start = max(0.0, start - _REGION_PAD, padded[-1][1] if padded else 0.0)
        padded.append((start, min(total, end + _REGION_PAD)))
    return [piece for region in padded for piece in _split_long(samples, rate, region)]


def _split_long(samples: Samples, rate: int, region: tuple[float, float]) -> list[tuple[float, float]]:
    start, end = region
    if end - start <= _MAX_REGION:
        return [region]
    # Cut at the quietest 10 ms between 60% and 100% of the allowed length.
    low, high = int((start + 0.6 * _MAX_REGION) * rate), int((start + _MAX_REGION) * rate)
    hop = rate // 100
    window = samples[low:high]
    energy = np.add.reduceat(window.astype(np.float64) ** 2, np.arange(0, len(window), hop))
    cut = (low + int(np.argmin(energy)) * hop) / rate
    return [(start, cut), *_split_long(samples, rate, (cut, end))]


def _int16(samples: Samples) -> np.ndarray[Any, np.dtype[np.int16]]:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def _recognise(decoder: Any, samples: Samples, rate: int, offset: float) -> list[Span]:
    decoder.start_utt()
    decoder.process_raw(_int16(samples).tobytes(), no_search=False, full_utt=True)
    decoder.end_utt()
    words = []
    for segment in decoder.seg():
        word = _ALTERNATE.sub("", segment.word)
        if _NOT_WORDS.match(word):
            continue
        start = offset + segment.start_frame / _FRAMES_PER_SECOND
        end = offset + (segment.end_frame + 1) / _FRAMES_PER_SECOND
        words.append(Span(word, start, min(end, offset + len(samples) / rate)))
    return words


def phrases(words: list[Span], pause: float = PHRASE_PAUSE) -> list[Span]:
    """Group consecutive words into phrases, breaking at pauses and after MAX_PHRASE_WORDS."""
    groups: list[list[Span]] = []
    for word in words:
        if groups and word.start - groups[-1][-1].end < pause and len(groups[-1]) < MAX_PHRASE_WORDS:
            groups[-1].append(word)
        else:
            groups.append([word])
    return [Span(" ".join(w.text for w in group), group[0].start, group[-1].end) for group in groups]


def transcribe_samples(samples: Samples, rate: int = SAMPLE_RATE) -> Transcript:
    """Transcribe mono float samples at 16 kHz. Raises BadRequest when there is no speech."""
    if rate != SAMPLE_RATE:
        raise ValueError(f"transcription runs at {SAMPLE_RATE} Hz, got {rate}")
    regions = speech_regions(samples, rate)
    if not regions:
        raise BadRequest("No speech found in the audio")
    words: list[Span] = []
    with _decoder() as decoder:
        for start, end in regions:
            piece = samples[int(start * rate) : int(end * rate)]
            words += _recognise(decoder, piece, rate, start)
    segments = phrases(words)
    text = " ".join(segment.text for segment in segments)
    return Transcript(text, duration_of(samples, rate), segments, words)


def transcribe(data: bytes, *, max_seconds: float = MAX_SECONDS) -> Transcript:
    """Transcribe an audio file (wav, mp3, ogg, flac, m4a, webm...) of at most `max_seconds`."""
    samples = decode_audio(data, SAMPLE_RATE, max_seconds=max_seconds)
    return transcribe_samples(samples)


async def transcribe_audio(request: MediaRequest, fetch: InputFetcher) -> Result:
    """local-asr: {audio, language} → no files, extra {"text", "duration", "segments", "words"}."""
    params = request.params
    url = params.get("audio")
    if not isinstance(url, str) or not url:
        raise ValidationFailed("audio is required (a URL of the recording)", field="audio")
    language = str(params.get("language") or "en").lower()
    if language not in LANGUAGES:
        raise ValidationFailed("local-asr transcribes English only (language 'en')", field="language")
    source = await fetch(url, kind="audio")
    transcript = await asyncio.to_thread(transcribe, source.data)
    return Result([], extra=transcript.as_dict())


MODELS: dict[str, LocalModel] = {"local-asr": transcribe_audio}
