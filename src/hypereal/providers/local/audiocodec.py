"""Audio in and out for the local speech models, through PyAV (FFmpeg's codecs, no system packages).

Everything inside the speech models is mono float32 PCM in -1..1 at a known rate.
`decode_audio` turns any common container (wav, mp3, ogg, flac, m4a, webm...) into that,
resampling with FFmpeg's swresample (band-limited, not sample dropping) and downmixing
channels properly; `encode_audio` writes it back out as mp3, wav, ogg (Opus), flac, m4a or webm.

Input that is not audio, is cut off before any sound, or holds no samples raises `BadRequest`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

from hypereal.errors import BadRequest

Samples = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class AudioFormat:
    container: str
    codec: str
    content_type: str
    extension: str
    rates: tuple[int, ...] = ()
    """Sample rates the codec accepts; empty means any. Other rates are resampled to the nearest above."""
    bit_rate: int | None = None


_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_OPUS_RATES = (48000,)

FORMATS: dict[str, AudioFormat] = {
    "mp3": AudioFormat("mp3", "libmp3lame", "audio/mpeg", "mp3", _MP3_RATES, 64_000),
    "wav": AudioFormat("wav", "pcm_s16le", "audio/wav", "wav"),
    # FFmpeg's own Vorbis encoder is experimental and stereo-only; Opus is the better codec anyway.
    "ogg": AudioFormat("ogg", "libopus", "audio/ogg", "ogg", _OPUS_RATES, 48_000),
    "flac": AudioFormat("flac", "flac", "audio/flac", "flac"),
    "m4a": AudioFormat("ipod", "aac", "audio/mp4", "m4a", (), 64_000),
    "webm": AudioFormat("webm", "libopus", "audio/webm", "webm", _OPUS_RATES, 48_000),
}


def duration_of(samples: Samples, rate: int) -> float:
    """Length in seconds of `samples` at `rate`."""
    return len(samples) / float(rate)


def decode_audio(data: bytes, rate: int, *, max_seconds: float | None = None) -> Samples:
    """Decode the first audio stream of `data` to mono float32 at `rate` Hz.

    Decoding stops as soon as more than `max_seconds` have come out, so an over-long upload
    is refused without holding all of it in memory.
    """
    if not data:
        raise BadRequest("The audio file is empty")
    limit = None if max_seconds is None else int(max_seconds * rate)
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise BadRequest("The file holds no audio stream")
            stream = container.streams.audio[0]
            declared = _declared_seconds(container, stream)
            if max_seconds is not None and declared is not None and declared > max_seconds + 1.0:
                raise _too_long(max_seconds)
            pieces: list[Samples] = []
            total = 0
            for piece in _resampled(container, stream, rate):
                pieces.append(piece)
                total += len(piece)
                if limit is not None and total > limit:
                    raise _too_long(max_seconds)
    except BadRequest:
        raise
    except (av.FFmpegError, ValueError, EOFError, IndexError, UnicodeDecodeError) as error:
        raise BadRequest(f"The audio could not be decoded: {_reason(error)}") from error
    if total == 0:
        raise BadRequest("The audio file holds no samples (empty or cut off)")
    samples = np.concatenate(pieces).astype(np.float32, copy=False)
    if not np.all(np.isfinite(samples)):
        raise BadRequest("The audio could not be decoded: it holds invalid samples")
    return samples


def _resampled(container: av.container.InputContainer, stream: av.AudioStream, rate: int) -> Iterator[Samples]:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
    for out in resampler.resample(None):
        yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _too_long(max_seconds: float | None) -> BadRequest:
    limit = float(max_seconds or 0.0)
    shown = f"{limit / 60:g} minutes" if limit >= 60 else f"{limit:g} seconds"
    return BadRequest(f"The audio is longer than the limit of {shown}", max_seconds=limit)


def _reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return str(text).strip().rstrip(".")


def encode_audio(samples: Samples, rate: int, format: str) -> bytes:
    """Encode mono float PCM in -1..1 at `rate` Hz as a file of `format` (a key of FORMATS)."""
    spec = FORMATS.get(format)
    if spec is None:
        raise BadRequest(f"Unsupported audio format '{format}'; use one of {', '.join(FORMATS)}")
    if len(samples) == 0:
        raise BadRequest("There is no audio to encode")
    out_rate = _codec_rate(spec, rate)
    pcm = np.ascontiguousarray(np.clip(samples, -1.0, 1.0), dtype=np.float32).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(pcm, format="flt", layout="mono")
    frame.sample_rate = rate
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=spec.container) as container:
        stream = container.add_stream(spec.codec, rate=out_rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        if spec.bit_rate:
            stream.bit_rate = spec.bit_rate
        sample_format = stream.codec_context.format.name
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=out_rate)
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(converted):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _codec_rate(spec: AudioFormat, rate: int) -> int:
    if not spec.rates or rate in spec.rates:
        return rate
    higher = [allowed for allowed in spec.rates if allowed >= rate]
    return min(higher) if higher else max(spec.rates)


def resample(samples: Samples, rate: int, new_rate: int) -> Samples:
    """Band-limited resampling of mono float PCM (swresample, as used for decoding)."""
    if rate == new_rate or len(samples) == 0:
        return samples.astype(np.float32, copy=False)
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=new_rate)
    pieces = [out.to_ndarray().reshape(-1) for out in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
