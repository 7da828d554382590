"""`local-voice-match`: speak a text at the pitch and pace of a reference recording.

This matches pitch and pace, not timbre. It is not voice cloning: the output is espeak-ng's
formant voice, moved to the reference speaker's median pitch, pitch range and speaking
rate. Who the speaker is (the colour of the voice, accent, recording room) is not carried over.

How:
1. measure the reference: F0 contour with the WORLD vocoder's DIO + StoneMask (`pyworld`),
   giving the median pitch and the spread between the 10th and 90th percentiles (in
   semitones); the speaking rate as syllable-like peaks of the smoothed speech-band energy
   per second of speech;
2. synthesise the text with espeak-ng, choosing the pitch, pitch range and words-per-minute
   settings from a first neutral rendering measured the same way; above 165 Hz a female
   espeak variant is used, whose formants suit a higher voice;
3. re-synthesise that speech with WORLD, with its F0 contour moved so that its median lands
   on the reference's and its spread scaled to the reference's.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyworld
from scipy import signal

from hypereal.errors import BadRequest, ValidationFailed
from hypereal.providers.base import InputFetcher, MediaRequest, Output, Result
from hypereal.providers.local import LocalModel
from hypereal.providers.local.audiocodec import FORMATS, Samples, decode_audio, duration_of, encode_audio
from hypereal.providers.local.speech import (
    BASE_RATE_WPM,
    DEFAULT_VOICE,
    Prosody,
    Speaker,
    Spoken,
    check_format,
    check_text,
    espeak,
    parse_markers,
)

MAX_REFERENCE_SECONDS = 300.0
FEMALE_ABOVE_HZ = 165.0
_FRAME_PERIOD = 5.0  # ms
_F0_FLOOR, _F0_CEIL = 55.0, 700.0
_MIN_VOICED_SECONDS = 0.3
# espeak's pitch setting moves the voice by about an octave every 70 units.
_PITCH_UNITS_PER_OCTAVE = 70.0

Float64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class VoiceProfile:
    median_pitch: float
    """Hz, over voiced frames."""
    pitch_low: float
    pitch_high: float
    """10th and 90th percentiles of F0, Hz."""
    pitch_range: float
    """Semitones between the 10th and 90th percentiles."""
    speaking_rate: float
    """Syllable-like energy peaks per second of speech."""
    voiced_fraction: float

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 3) for key, value in asdict(self).items()}


def _f0(samples: Float64, rate: int) -> tuple[Float64, Float64]:
    f0, times = pyworld.dio(samples, rate, f0_floor=_F0_FLOOR, f0_ceil=_F0_CEIL, frame_period=_FRAME_PERIOD)
    return pyworld.stonemask(samples, f0, times, rate), times


def speaking_rate(samples: Float64, rate: int) -> float:
    """Syllable nuclei per second of speech, from peaks of the smoothed 300-3000 Hz energy."""
    sos = signal.butter(2, [300, 3000], btype="bandpass", fs=rate, output="sos")
    band = signal.sosfilt(sos, samples)
    hop = rate // 100
    frames = len(band) // hop
    if frames < 10:
        return 0.0
    energy = np.sqrt(np.mean(band[: frames * hop].reshape(frames, hop) ** 2, axis=1))
    smooth = np.convolve(energy, np.hanning(7) / np.hanning(7).sum(), mode="same")
    loud = float(np.percentile(smooth, 95))
    if loud <= 1e-6:
        return 0.0
    speaking = smooth > 0.1 * loud
    peaks, _ = signal.find_peaks(smooth, height=0.25 * loud, prominence=0.12 * loud, distance=8)
    seconds = float(np.count_nonzero(speaking)) / 100.0
    return len(peaks) / seconds if seconds > 0 else 0.0


def analyse_voice(samples: Samples, rate: int) -> VoiceProfile:
    """Measure pitch and pace of a recording. BadRequest when it holds no voiced speech."""
    audio = samples.astype(np.float64)
    f0, _ = _f0(audio, rate)
    voiced = f0[f0 > 0]
    if len(voiced) * _FRAME_PERIOD / 1000.0 < _MIN_VOICED_SECONDS:
        raise BadRequest("The reference audio holds no voiced speech to match")
    low, median, high = (float(v) for v in np.percentile(voiced, [10, 50, 90]))
    return VoiceProfile(
        median_pitch=median,
        pitch_low=low,
        pitch_high=high,
        pitch_range=12.0 * math.log2(high / low),
        speaking_rate=speaking_rate(audio, rate),
        voiced_fraction=len(voiced) / len(f0),
    )


def _speak(text: str, speaker: Speaker, prosody: Prosody) -> Samples:
    """The text with its emotion markers' prosody on top of `prosody`; sound markers are left out."""
    pieces = [piece for piece in parse_markers(text) if isinstance(piece, Spoken)]
    parts = [speaker.render(piece.text, prosody.then(piece.prosody)) for piece in pieces]
    if not parts or not any(len(part) for part in parts):
        raise ValidationFailed("The text has nothing to say", field="text")
    return np.concatenate(parts)


def shift_pitch(samples: Samples, rate: int, median: float, range_scale: float = 1.0) -> Samples:
    """Re-synthesise with WORLD so the voiced F0 median is `median` Hz and the spread (in log
    frequency) around it is scaled by `range_scale`. Spectral envelope and aperiodicity are kept."""
    audio = samples.astype(np.float64)
    f0, times = _f0(audio, rate)
    voiced = f0 > 0
    if not np.any(voiced):
        return samples
    envelope = pyworld.cheaptrick(audio, f0, times, rate)
    aperiodicity = pyworld.d4c(audio, f0, times, rate)
    log_median = np.log(np.median(f0[voiced]))
    moved = np.zeros_like(f0)
    moved[voiced] = np.exp(math.log(median) + (np.log(f0[voiced]) - log_median) * range_scale)
    out: Float64 = pyworld.synthesize(moved, envelope, aperiodicity, rate, _FRAME_PERIOD)
    # WORLD's output level follows the envelope; keep the original loudness.
    gain = float(np.sqrt(np.mean(audio**2)) / (np.sqrt(np.mean(out**2)) or 1.0))
    return np.clip(out * gain, -1.0, 1.0).astype(np.float32)[: len(samples)]


def match_voice(text: str, reference: VoiceProfile, voice: str = DEFAULT_VOICE) -> tuple[Samples, dict[str, Any]]:
    """Speak `text` at the reference's pitch and pace. Returns samples at espeak's rate and
    what was measured: {"reference", "output", "settings"}."""
    rate = espeak().sample_rate
    if reference.median_pitch > FEMALE_ABOVE_HZ and "+" not in voice:
        voice = f"{voice}+f3"
    speaker = Speaker(voice)
    first = analyse_voice(_speak(text, speaker, Prosody()), rate)
    pitch_offset = round(_PITCH_UNITS_PER_OCTAVE * math.log2(reference.median_pitch / first.median_pitch))
    range_offset = round(50 * (reference.pitch_range / max(first.pitch_range, 0.5) - 1.0))
    tempo = reference.speaking_rate / first.speaking_rate if first.speaking_rate > 0 else 1.0
    settings = Prosody(
        pitch=max(-50, min(50, pitch_offset)),
        range=max(-50, min(50, range_offset)),
        rate=min(max(tempo, 80 / BASE_RATE_WPM), 450 / BASE_RATE_WPM),
    )
    spoken = _speak(text, speaker, settings)
    second = analyse_voice(spoken, rate)
    range_scale = min(max(reference.pitch_range / max(second.pitch_range, 0.5), 0.5), 2.0)
    matched = shift_pitch(spoken, rate, reference.median_pitch, range_scale)
    output = analyse_voice(matched, rate)
    details = {
        "reference": reference.as_dict(),
        "output": output.as_dict(),
        "settings": {"voice": voice, "espeak_pitch": 50 + settings.pitch, "espeak_range": 50 + settings.range,
                     "words_per_minute": round(BASE_RATE_WPM * settings.rate)},
    }  # fmt: skip
    return matched, details


def voice_match_file(
    text: str, reference_audio: bytes, format: str, voice: str = DEFAULT_VOICE
) -> tuple[bytes, float, dict[str, Any]]:
    """Decode the reference, match it and encode: (file bytes, duration, measurements)."""
    rate = espeak().sample_rate
    reference = analyse_voice(decode_audio(reference_audio, rate, max_seconds=MAX_REFERENCE_SECONDS), rate)
    samples, details = match_voice(text, reference, voice)
    return encode_audio(samples, rate, format), duration_of(samples, rate), details


async def generate_matched_speech(request: MediaRequest, fetch: InputFetcher) -> Result:
    """local-voice-match: {text, audio, format} → one audio file, extra {"duration", "matched"}."""
    params = request.params
    text = check_text(params)
    format = check_format(params)
    url = params.get("audio")
    if not isinstance(url, str) or not url:
        raise ValidationFailed("audio is required (a URL of the reference recording)", field="audio")
    source = await fetch(url, kind="audio")
    data, duration, details = await asyncio.to_thread(voice_match_file, text, source.data, format)
    spec = FORMATS[format]
    return Result(
        [Output(spec.content_type, spec.extension, data=data)],
        extra={"duration": round(duration, 3), "matched": details},
    )


MODELS: dict[str, LocalModel] = {"local-voice-match": generate_matched_speech}
