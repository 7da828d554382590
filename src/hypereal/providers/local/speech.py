"""`local-tts`: text to speech with the espeak-ng formant synthesiser, with emotion markers.

espeak-ng is a rule-based formant synthesiser, not a neural voice: it is clear, fast and fully
offline, and it sounds robotic. The library and its language data come from the
`espeakng-loader` wheel and are driven through ctypes.

Emotion markers follow the Fish Audio S1 convention used by the Hypereal docs:
`(happy) Hello! (sad) I miss you. (excited)(laughing) Amazing!`

- An emotion or tone marker sets the prosody (pitch, pitch range, rate, volume, word gap,
  voice variant) of everything after it, until the next marker. Markers written back to back
  with no text between them combine, so `(sad)(whispering)` is a sad whisper.
- `(whispering)` switches to espeak's whisper variant: unvoiced, breath-only speech.
- Sound markers (`(laughing)`, `(sighing)`, `(crowd laughing)`...) insert a synthesised vocal
  sound where they stand, in the current voice and mood, and do not change the prosody.
- Any other parenthesised text is not a marker and is read aloud as written.

The three tables are public (`EMOTIONS`, `TONES`, `SOUNDS`) so callers can list them.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import espeakng_loader
import numpy as np
from scipy import signal

from hypereal.errors import Unavailable, ValidationFailed
from hypereal.providers.base import InputFetcher, MediaRequest, Output, Result
from hypereal.providers.local import LocalModel
from hypereal.providers.local.audiocodec import FORMATS, Samples, duration_of, encode_audio

TTS_FORMATS = ("mp3", "wav", "ogg", "flac")
MAX_TEXT = 5000
DEFAULT_VOICE = "en-us"
BASE_RATE_WPM = 175
# espeak peaks near 0.8 at its normal volume; leave headroom for loud markers.
BASE_GAIN = 0.8
_VOICE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}(\+[A-Za-z0-9_-]{1,32})?$")


@dataclass(frozen=True, slots=True)
class Prosody:
    """A change from the neutral voice. Offsets are in espeak's 0..100 pitch/range units."""

    pitch: int = 0
    range: int = 0
    rate: float = 1.0
    volume: float = 1.0
    word_gap: int = 0
    """Extra pause between words, in units of 10 ms."""
    variant: str | None = None

    def then(self, other: Prosody) -> Prosody:
        """This prosody with `other` layered on top (for markers written back to back)."""
        return Prosody(
            pitch=self.pitch + other.pitch,
            range=self.range + other.range,
            rate=self.rate * other.rate,
            volume=self.volume * other.volume,
            word_gap=max(self.word_gap, other.word_gap),
            variant=other.variant or self.variant,
        )


NEUTRAL = Prosody()

P = Prosody
EMOTIONS: dict[str, Prosody] = {
    "angry": P(pitch=8, range=25, rate=1.12, volume=1.45),
    "sad": P(pitch=-14, range=-25, rate=0.8, volume=0.75),
    "disdainful": P(pitch=-10, range=12, rate=0.88, volume=0.9),
    "excited": P(pitch=22, range=30, rate=1.18, volume=1.25),
    "surprised": P(pitch=20, range=35, rate=1.05, volume=1.2),
    "satisfied": P(pitch=3, range=-5, rate=0.86, volume=1.0),
    "unhappy": P(pitch=-10, range=-15, rate=0.88, volume=0.85),
    "anxious": P(pitch=12, range=-10, rate=1.15, volume=0.9),
    "hysterical": P(pitch=30, range=40, rate=1.3, volume=1.45),
    "delighted": P(pitch=16, range=25, rate=1.08, volume=1.15),
    "scared": P(pitch=16, range=-15, rate=1.2, volume=0.8),
    "worried": P(pitch=6, range=-15, rate=0.88, volume=0.8),
    "indifferent": P(pitch=-6, range=-35, rate=0.95, volume=0.75),
    "upset": P(pitch=6, range=20, rate=1.12, volume=1.25),
    "impatient": P(pitch=6, range=10, rate=1.25, volume=1.15),
    "nervous": P(pitch=10, range=-10, rate=1.18, volume=0.8),
    "guilty": P(pitch=-10, range=-20, rate=0.85, volume=0.7),
    "scornful": P(pitch=-10, range=20, rate=0.88, volume=1.1),
    "frustrated": P(pitch=-4, range=20, rate=1.12, volume=1.3),
    "depressed": P(pitch=-20, range=-35, rate=0.75, volume=0.65),
    "panicked": P(pitch=26, range=20, rate=1.35, volume=1.35),
    "furious": P(pitch=4, range=35, rate=1.15, volume=1.6),
    "empathetic": P(pitch=-4, range=5, rate=0.86, volume=0.8),
    "embarrassed": P(pitch=5, range=-20, rate=0.88, volume=0.7),
    "reluctant": P(pitch=-6, range=-15, rate=0.8, volume=0.8),
    "disgusted": P(pitch=-12, range=15, rate=0.85, volume=1.1),
    "keen": P(pitch=12, range=15, rate=1.12, volume=1.1),
    "moved": P(pitch=4, range=10, rate=0.82, volume=0.8),
    "proud": P(pitch=4, range=15, rate=0.88, volume=1.3),
    "relaxed": P(pitch=-6, range=-10, rate=0.82, volume=0.8),
    "grateful": P(pitch=10, range=10, rate=0.88, volume=1.0),
    "confident": P(pitch=-3, range=10, rate=0.95, volume=1.3),
    "interested": P(pitch=10, range=20, rate=1.0, volume=1.05),
    "curious": P(pitch=12, range=25, rate=0.92, volume=1.0),
    "confused": P(pitch=6, range=20, rate=0.82, volume=0.9),
    "joyful": P(pitch=18, range=25, rate=1.12, volume=1.2),
    "disapproving": P(pitch=-10, range=5, rate=0.88, volume=1.1),
    "negative": P(pitch=-10, range=-10, rate=0.9, volume=0.85),
    "denying": P(pitch=-2, range=15, rate=1.12, volume=1.25),
    "astonished": P(pitch=24, range=40, rate=0.9, volume=1.25),
    "serious": P(pitch=-10, range=-20, rate=0.88, volume=1.1),
    "sarcastic": P(pitch=2, range=40, rate=0.82, volume=1.0),
    "conciliative": P(pitch=-2, range=-10, rate=0.85, volume=0.75),
    "comforting": P(pitch=-4, range=-5, rate=0.8, volume=0.7),
    "sincere": P(pitch=0, range=-5, rate=0.86, volume=0.9),
    "sneering": P(pitch=-8, range=30, rate=0.88, volume=1.05),
    "hesitating": P(pitch=-2, range=-10, rate=0.75, volume=0.8, word_gap=15),
    "yielding": P(pitch=-6, range=-15, rate=0.85, volume=0.75),
    "painful": P(pitch=-8, range=15, rate=0.75, volume=0.8),
    "awkward": P(pitch=4, range=-10, rate=0.85, volume=0.75, word_gap=8),
    "amused": P(pitch=12, range=25, rate=1.05, volume=1.1),
    "happy": P(pitch=14, range=20, rate=1.08, volume=1.15),
}

TONES: dict[str, Prosody] = {
    "in a hurry tone": P(pitch=4, range=0, rate=1.5, volume=1.05),
    "shouting": P(pitch=18, range=20, rate=1.05, volume=1.8),
    "screaming": P(pitch=40, range=30, rate=1.1, volume=2.0),
    "whispering": P(rate=0.92, volume=0.6, variant="whisper"),
    "soft tone": P(pitch=-4, range=-15, rate=0.88, volume=0.55),
}
del P

# Spellings people use for the same markers.
ALIASES: dict[str, str] = {
    "in a hurry": "in a hurry tone",
    "hurry": "in a hurry tone",
    "soft": "soft tone",
    "whisper": "whispering",
    "whispers": "whispering",
    "laughs": "laughing",
    "laugh": "laughing",
    "sighs": "sighing",
    "sigh": "sighing",
    "chuckles": "chuckling",
    "crying": "crying loudly",
    "background laughing": "background laughter",
    "audience laughter": "audience laughing",
    "crowd laughter": "crowd laughing",
    "hesitant": "hesitating",
}


# ---------------------------------------------------------------------------------------------
# The espeak-ng library


_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Espeak:
    """One process-wide espeak-ng instance. The library keeps global state and is not
    thread-safe, so every synthesis holds the lock from choosing the voice to the last sample."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        self._lib = lib
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray[Any, np.dtype[np.int16]]] = []
        self._voice: str | None = None
        # Kept on the instance: the C side holds only a raw pointer to it.
        self._callback = _SYNTH_CALLBACK(self._receive)
        data_path = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise Unavailable("The espeak-ng speech synthesiser could not start")
        lib.espeak_SetSynthCallback(self._callback)
        self.sample_rate = int(rate)

    def _receive(self, wav: Any, count: int, events: Any) -> int:
        if count > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # keep going

    def synth(self, text: str, voice: str, *, pitch: int, range_: int, wpm: int, word_gap: int = 0) -> Samples:
        """Speak `text` with `voice` ("en-us", "fr", "en-us+f3"...) at espeak's own settings:
        pitch and range 0..100, rate in words per minute. Float samples at `sample_rate`."""
        data = _CONTROL_CHARS.sub(" ", text).encode("utf-8") + b"\0"
        with self._lock:
            if voice != self._voice:
                self._voice = None
                if not _VOICE_NAME.match(voice) or self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise ValidationFailed(f"Unknown voice '{voice}'; use an espeak-ng voice such as en-us, en, fr, de")
                self._voice = voice
            for parameter, value in (
                (_PITCH, _clamp(pitch, 0, 100)),
                (_RANGE, _clamp(range_, 0, 100)),
                (_RATE, _clamp(wpm, 80, 450)),
                (_VOLUME, 100),
                (_WORDGAP, _clamp(word_gap, 0, 100)),
            ):
                self._lib.espeak_SetParameter(parameter, value, 0)
            self._chunks = []
            error = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            chunks, self._chunks = self._chunks, []
        if error != 0:
            raise Unavailable(f"espeak-ng failed to synthesise (error {error})")
        if not chunks:
            return np.zeros(0, np.float32)
        return (np.concatenate(chunks).astype(np.float32) / 32768.0).astype(np.float32)


def _clamp(value: float, low: int, high: int) -> int:
    return int(min(max(round(value), low), high))


_ENGINE_LOCK = threading.Lock()


@functools.cache
def _create_engine() -> Espeak:
    return Espeak()


def espeak() -> Espeak:
    """The process-wide synthesiser, started on first use."""
    with _ENGINE_LOCK:
        return _create_engine()


# ---------------------------------------------------------------------------------------------
# Speaking with prosody


@dataclass(frozen=True, slots=True)
class Speaker:
    """A voice ("en-us", "de", "en-us+f3") at a speed, ready to speak any prosody."""

    voice: str = DEFAULT_VOICE
    speed: float = 1.0

    @property
    def language(self) -> str:
        return self.voice.split("+", 1)[0]

    def render(self, text: str, prosody: Prosody = NEUTRAL) -> Samples:
        voice = self.voice
        if prosody.variant:
            own_variant = self.voice.partition("+")[2]
            # A female voice whispers with espeak's female whisper.
            variant = prosody.variant + ("f" if prosody.variant == "whisper" and own_variant[:1] == "f" else "")
            voice = f"{self.language}+{variant}"
        samples = espeak().synth(
            text,
            voice,
            pitch=50 + prosody.pitch,
            range_=50 + prosody.range,
            wpm=round(BASE_RATE_WPM * self.speed * prosody.rate),
            word_gap=prosody.word_gap,
        )
        return (samples * np.float32(BASE_GAIN * prosody.volume)).astype(np.float32)

    @property
    def sample_rate(self) -> int:
        return espeak().sample_rate


def _silence(speaker: Speaker, seconds: float) -> Samples:
    return np.zeros(round(seconds * speaker.sample_rate), np.float32)


def _tremolo(samples: Samples, rate: int, hz: float, depth: float) -> Samples:
    t = np.arange(len(samples)) / rate
    return (samples * (1.0 - depth * 0.5 * (1.0 + np.sin(2 * np.pi * hz * t)))).astype(np.float32)


def _breath(rate: int, seconds: float, low: float, high: float, level: float, seed: int) -> Samples:
    """Band-passed noise with a soft attack and a long fall: an audible breath."""
    count = round(seconds * rate)
    noise = np.random.default_rng(seed).standard_normal(count)
    sos = signal.butter(2, [low, high], btype="bandpass", fs=rate, output="sos")
    shaped: np.ndarray[Any, np.dtype[np.float64]] = signal.sosfilt(sos, noise)
    attack = max(1, count // 5)
    rise = np.sin(np.linspace(0, np.pi / 2, attack)) ** 2
    fall = np.linspace(1, 0, count - attack) ** 1.5
    breath: np.ndarray[Any, np.dtype[np.float64]] = shaped * np.concatenate([rise, fall])
    rms = float(np.sqrt(np.mean(breath**2))) or 1.0
    return (breath * (level / rms)).astype(np.float32)


def _laughing(s: Speaker, p: Prosody) -> Samples:
    return s.render("hah hah hah hah", p.then(Prosody(pitch=40, range=40, rate=1.25, volume=1.1)))


def _chuckling(s: Speaker, p: Prosody) -> Samples:
    return s.render("heh heh heh", p.then(Prosody(pitch=8, range=10, rate=1.5, volume=0.6)))


def _sobbing(s: Speaker, p: Prosody) -> Samples:
    sob = s.render("uh huh huh huh", p.then(Prosody(pitch=20, range=50, rate=0.9, volume=0.8)))
    gasp = _breath(s.sample_rate, 0.35, 500, 3000, 0.04 * p.volume, seed=3)
    return np.concatenate([_tremolo(sob, s.sample_rate, 7.0, 0.6), gasp])


def _crying_loudly(s: Speaker, p: Prosody) -> Samples:
    wail = s.render("waah waaah", p.then(Prosody(pitch=35, range=45, rate=0.7, volume=1.5)))
    return _tremolo(wail, s.sample_rate, 6.0, 0.5)


def _sighing(s: Speaker, p: Prosody) -> Samples:
    return _breath(s.sample_rate, 1.1, 400, 2500, 0.07 * p.volume, seed=1)


def _panting(s: Speaker, p: Prosody) -> Samples:
    pieces = []
    for i in range(4):
        low, high = (600, 3500) if i % 2 == 0 else (400, 2500)
        pieces += [_breath(s.sample_rate, 0.22, low, high, 0.07 * p.volume, seed=10 + i), _silence(s, 0.12)]
    return np.concatenate(pieces)


def _groaning(s: Speaker, p: Prosody) -> Samples:
    return s.render("unnnh", p.then(Prosody(pitch=-22, range=-40, rate=0.5, volume=0.9)))


def _crowd(laughers: int, level: float, seconds: float, seed: int) -> Callable[[Speaker, Prosody], Samples]:
    """Several laughing voices at different pitches and moments over a murmur of filtered noise."""
    variants = ("m1", "f2", "m3", "f4", "m7", "f5", "m2", "f1", "m6", "f3")

    def crowd(s: Speaker, p: Prosody) -> Samples:
        rng = np.random.default_rng(seed)
        rate = s.sample_rate
        mix = np.zeros(round(seconds * rate), np.float64)
        for i in range(laughers):
            laugher = Speaker(f"{s.language}+{variants[i % len(variants)]}", s.speed)
            style = Prosody(pitch=int(rng.integers(10, 45)), range=40, rate=float(rng.uniform(1.4, 1.9)))
            laugh = laugher.render("ha ha ha ha ha", style)[: len(mix)]
            start = int(rng.uniform(0, 0.35) * len(mix))
            end = min(len(mix), start + len(laugh))
            mix[start:end] += laugh[: end - start] * rng.uniform(0.35, 0.7)
        mix += _breath(rate, seconds, 250, 4000, 0.03, seed=seed)
        peak = float(np.max(np.abs(mix))) or 1.0
        return (mix * (0.7 * level * p.volume / peak)).astype(np.float32)

    return crowd


SOUNDS: dict[str, Callable[[Speaker, Prosody], Samples]] = {
    "laughing": _laughing,
    "chuckling": _chuckling,
    "sobbing": _sobbing,
    "crying loudly": _crying_loudly,
    "sighing": _sighing,
    "panting": _panting,
    "groaning": _groaning,
    "crowd laughing": _crowd(6, 0.9, 2.0, seed=21),
    "background laughter": _crowd(5, 0.35, 2.0, seed=22),
    "audience laughing": _crowd(9, 1.0, 2.6, seed=23),
}


# ---------------------------------------------------------------------------------------------
# Markers


@dataclass(frozen=True, slots=True)
class Spoken:
    text: str
    prosody: Prosody


@dataclass(frozen=True, slots=True)
class Sound:
    name: str
    prosody: Prosody


_MARKER = re.compile(r"\(([^()\n]{1,40})\)")


def marker_name(raw: str) -> str | None:
    """The canonical name of a marker's inner text, or None when it is not a marker."""
    name = " ".join(raw.lower().split())
    name = ALIASES.get(name, name)
    return name if name in EMOTIONS or name in TONES or name in SOUNDS else None


def parse_markers(text: str) -> list[Spoken | Sound]:
    """Split text into spoken runs and inserted sounds, each with the prosody in force there."""
    pieces: list[Spoken | Sound] = []
    prosody = NEUTRAL
    spoke_since_style = True
    position = 0
    for match in _MARKER.finditer(text):
        name = marker_name(match.group(1))
        if name is None:
            continue  # not a marker: stays in the text and is read aloud
        before = text[position : match.start()]
        position = match.end()
        if before.strip():
            pieces.append(Spoken(before.strip(), prosody))
            spoke_since_style = True
        if name in SOUNDS:
            pieces.append(Sound(name, prosody))
            continue
        style = EMOTIONS.get(name) or TONES[name]
        prosody = style if spoke_since_style else prosody.then(style)
        spoke_since_style = False
    rest = text[position:]
    if rest.strip():
        pieces.append(Spoken(rest.strip(), prosody))
    return pieces


def synthesize(text: str, voice: str = DEFAULT_VOICE, speed: float = 1.0) -> Samples:
    """Speak `text` with its markers. Mono float samples at `espeak().sample_rate`."""
    speaker = Speaker(voice, speed)
    parts: list[Samples] = []
    for piece in parse_markers(text):
        if isinstance(piece, Spoken):
            parts.append(speaker.render(piece.text, piece.prosody))
        else:
            gap = _silence(speaker, 0.08)
            parts += [gap, SOUNDS[piece.name](speaker, piece.prosody), gap]
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if len(audio) == 0 or float(np.max(np.abs(audio))) < 1e-4:
        raise ValidationFailed("The text has nothing to say")
    return _soft_limit(audio)


def _soft_limit(samples: Samples, knee: float = 0.9) -> Samples:
    """Round off peaks above the knee instead of clipping them (loud markers can overshoot)."""
    magnitude = np.abs(samples)
    over = magnitude > knee
    if not np.any(over):
        return samples
    limited = samples.copy()
    headroom = 1.0 - knee
    limited[over] = np.sign(samples[over]) * (knee + headroom * np.tanh((magnitude[over] - knee) / headroom))
    return limited.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The model


def check_text(params: dict[str, Any]) -> str:
    text = params.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValidationFailed("text is required", field="text")
    if len(text) > MAX_TEXT:
        raise ValidationFailed(f"text is longer than {MAX_TEXT} characters", field="text")
    return text


def check_format(params: dict[str, Any]) -> str:
    format = params.get("format") or "mp3"
    if format not in TTS_FORMATS:
        raise ValidationFailed(f"format must be one of {', '.join(TTS_FORMATS)}", field="format")
    return str(format)


def speech_file(text: str, voice: str, format: str, speed: float = 1.0) -> tuple[bytes, float]:
    """Synthesise and encode: (file bytes, duration in seconds)."""
    audio = synthesize(text, voice, speed)
    rate = espeak().sample_rate
    return encode_audio(audio, rate, format), duration_of(audio, rate)


async def generate_speech(request: MediaRequest, fetch: InputFetcher) -> Result:
    """local-tts: {text, voice, format, speed} → one audio file, extra {"duration"}."""
    params = request.params
    text = check_text(params)
    format = check_format(params)
    voice = params.get("voice") or DEFAULT_VOICE
    if not isinstance(voice, str) or not _VOICE_NAME.match(voice):
        raise ValidationFailed(f"Unknown voice '{voice}'", field="voice")
    speed = params.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.5 <= speed <= 2.0:
        raise ValidationFailed("speed must be a number from 0.5 to 2.0", field="speed")
    data, duration = await asyncio.to_thread(speech_file, text, voice, format, float(speed))
    spec = FORMATS[format]
    return Result([Output(spec.content_type, spec.extension, data=data)], extra={"duration": round(duration, 3)})


MODELS: dict[str, LocalModel] = {"local-tts": generate_speech}
