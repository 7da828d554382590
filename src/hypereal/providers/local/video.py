"""Local video models: a still frame animated by a virtual camera move read from the prompt.

This is a classical "Ken Burns" animator, not a neural video model: nothing in the scene
moves, only the camera. A view window slides and scales over an enlarged copy of the
source frame, each output frame is resampled with sub-pixel accuracy (`cv2.warpAffine`),
and the frames are encoded as H.264 in MP4 (yuv420p, so every browser and player opens it).

Camera vocabulary (first mention of each axis wins, axes combine):
pan left/right (also "truck", "pans across" = right), tilt up/down ("pedestal", "crane"),
zoom in/out ("push in", "dolly in", "pull back"...). Without any, a gentle push-in.
"slow"/"gentle"/"subtle" shorten the move, "fast"/"dramatic" lengthen it.

Directions are the camera's, as in film language: when the camera pans left, the view
travels left across the picture, so the scene drifts to the right of the frame.
"""

from __future__ import annotations

import asyncio
import math
import os
import queue
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from hypereal.errors import BadRequest, ValidationFailed
from hypereal.providers.base import InputFetcher, MediaRequest, Output, Result
from hypereal.providers.local import LocalModel
from hypereal.providers.local.imagecodec import decode_image
from hypereal.providers.local.imagegen import render_image

Frame = npt.NDArray[np.uint8]

ALLOWED_FPS = (12, 24, 30)
SHORT_EDGES = {"480p": 480, "720p": 720}
T2V_ASPECTS = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1)}
MAX_DURATION = 10
MIN_INPUT_EDGE = 16
# Panoramas wider than this are centre-cropped: a 10:1 strip would make a 7200 px wide video.
MAX_ASPECT = 3.0


@dataclass(frozen=True, slots=True)
class CameraMove:
    """A move of the view window over the source, as fractions of the source frame.

    `zoom_from`/`zoom_to` are the window's size relative to the whole source (1.0 shows all
    of it; smaller is closer). `pan` and `tilt` in -1..1 say how much of the free margin
    around the window is travelled, and which way (+pan = right, +tilt = up).
    """

    name: str
    zoom_from: float
    zoom_to: float
    pan: float = 0.0
    tilt: float = 0.0

    @property
    def tightest(self) -> float:
        return min(self.zoom_from, self.zoom_to)

    def window(self, progress: float) -> tuple[float, float, float]:
        """Window (centre x, centre y, size) at `progress` in 0..1, all relative to the source."""
        size = self.zoom_from + (self.zoom_to - self.zoom_from) * progress
        # The window never leaves the source: its centre travels at most the free margin.
        margin = (1.0 - size) / 2.0
        sweep = 2.0 * progress - 1.0
        centre_x = 0.5 + self.pan * sweep * margin
        centre_y = 0.5 - self.tilt * sweep * margin
        return centre_x, centre_y, size


_WORD = r"(?:s|es|ing|ed)?"
_CAMERA_VERB = rf"(?:camera\s+(?:mov|glid|drift|slid|travel){_WORD}|pan{_WORD}|truck{_WORD}|track{_WORD}|sweep{_WORD})"
_TILT_VERB = rf"(?:tilt{_WORD}|pedestal{_WORD}|crane{_WORD}|boom{_WORD}|camera\s+(?:mov|ris|glid|drift){_WORD})"
_SIDE = r"(?:\s+\w+)?\s+(?:to\s+the\s+|towards?\s+the\s+)?"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("pan-left", re.compile(rf"\b{_CAMERA_VERB}{_SIDE}left\b")),
    ("pan-right", re.compile(rf"\b{_CAMERA_VERB}{_SIDE}right\b|\bpan{_WORD}\s+across\b")),
    ("tilt-up", re.compile(rf"\b{_TILT_VERB}(?:\s+\w+)?\s+up(?:ward|wards)?\b")),
    ("tilt-down", re.compile(rf"\b{_TILT_VERB}(?:\s+\w+)?\s+down(?:ward|wards)?\b")),
    (
        "zoom-in",
        re.compile(
            rf"\b(?:zoom{_WORD}|push{_WORD}|dolly{_WORD}|camera\s+mov{_WORD})(?:\s+\w+)?\s+(?:in|into|closer)\b"
            r"|\bclose[- ]?up\b|\bpush[- ]in\b"
        ),
    ),
    (
        "zoom-out",
        re.compile(
            rf"\b(?:zoom{_WORD}|dolly{_WORD}|pull{_WORD}|camera\s+mov{_WORD})(?:\s+\w+)?\s+(?:out|back|away)\b"
            r"|\breveal"
        ),
    ),
]
_SLOW = re.compile(r"\b(?:slow|slowly|gentle|gently|subtle|subtly|soft|softly|calm)\b")
_FAST = re.compile(r"\b(?:fast|quick|quickly|rapid|rapidly|dramatic|dramatically|swift|swiftly)\b")


def parse_camera_move(prompt: str) -> CameraMove:
    """Read the camera move a prompt asks for; a gentle push-in when it names none."""
    text = prompt.lower()
    found: dict[str, int] = {}
    for name, pattern in _PATTERNS:
        match = pattern.search(text)
        if match:
            found[name] = match.start()
    strength = 0.6 if _SLOW.search(text) else 1.5 if _FAST.search(text) else 1.0

    def first_of(a: str, b: str) -> str | None:
        hits = [(found[n], n) for n in (a, b) if n in found]
        return min(hits)[1] if hits else None

    horizontal = first_of("pan-left", "pan-right")
    vertical = first_of("tilt-up", "tilt-down")
    depth = first_of("zoom-in", "zoom-out")
    if not (horizontal or vertical or depth):
        return CameraMove("push-in", 1.0, 1.0 - 0.1 * strength)

    # A pan needs room around the window: start from a window already inside the source.
    base = 1.0 / (1.0 + 0.25 * strength) if horizontal or vertical else 1.0
    zoom_depth = min(0.45, 0.3 * strength)
    zoom_from, zoom_to = base, base
    if depth == "zoom-in":
        zoom_to = base * (1.0 - zoom_depth)
    elif depth == "zoom-out":
        zoom_from = base * (1.0 - zoom_depth)
    pan = {"pan-left": -1.0, "pan-right": 1.0}.get(horizontal or "", 0.0)
    tilt = {"tilt-up": 1.0, "tilt-down": -1.0}.get(vertical or "", 0.0)
    name = "+".join(n for n in (horizontal, vertical, depth) if n)
    return CameraMove(name, zoom_from, zoom_to, pan, tilt)


def ease_in_out(t: float) -> float:
    """Smootherstep: zero velocity and acceleration at both ends, so the move starts and lands softly."""
    t = min(1.0, max(0.0, t))
    return t * t * t * (t * (6.0 * t - 15.0) + 10.0)


def output_size(aspect: float, short_edge: int) -> tuple[int, int]:
    """(width, height) with the given short edge; the long edge follows `aspect`, rounded to even."""
    aspect = min(MAX_ASPECT, max(1.0 / MAX_ASPECT, aspect))
    long_edge = max(short_edge, 2 * round(short_edge * max(aspect, 1.0 / aspect) / 2))
    return (long_edge, short_edge) if aspect >= 1.0 else (short_edge, long_edge)


def source_size(width: int, height: int, move: CameraMove) -> tuple[int, int]:
    """Size of the enlarged source for a move.

    The tightest window is sampled at least 1:1 and the widest at most ~1.3:1, taking the
    geometric mean of the two so neither upsampling blur nor downsampling aliasing dominates.
    """
    widest = max(move.zoom_from, move.zoom_to)
    scale = 1.0 / math.sqrt(move.tightest * widest)
    scale = max(scale, 1.0 / widest)  # the widest window must still cover the frame
    return math.ceil(width * scale) + 2, math.ceil(height * scale) + 2


def prepare_source(image: Image.Image, width: int, height: int, move: CameraMove) -> Frame:
    """Centre-crop the still to the video's aspect and resample it to the enlarged source size."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    img_h, img_w = rgb.shape[:2]
    target = width / height
    if img_w / img_h > target:
        crop_w = max(1, round(img_h * target))
        x0 = (img_w - crop_w) // 2
        rgb = rgb[:, x0 : x0 + crop_w]
    else:
        crop_h = max(1, round(img_w / target))
        y0 = (img_h - crop_h) // 2
        rgb = rgb[y0 : y0 + crop_h]
    src_w, src_h = source_size(width, height, move)
    shrinking = src_w < rgb.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(rgb, (src_w, src_h), interpolation=interpolation))


def camera_frames(source: Frame, width: int, height: int, move: CameraMove, count: int) -> Iterator[Frame]:
    """Yield `count` frames of the move, eased, each sampled from `source` at sub-pixel positions."""
    src_h, src_w = source.shape[:2]
    for index in range(count):
        progress = ease_in_out(index / (count - 1)) if count > 1 else 0.0
        centre_x, centre_y, size = move.window(progress)
        # Source pixels per output pixel; the window keeps the output's aspect.
        step = size * src_w / width
        left = (centre_x * src_w) - step * width / 2.0
        top = (centre_y * src_h) - step * height / 2.0
        # Output pixel centre u maps to source x = left + (u + 0.5) * step - 0.5 (pixel-centre convention).
        matrix = np.array([[step, 0.0, left + 0.5 * step - 0.5], [0.0, step, top + 0.5 * step - 0.5]], dtype=np.float64)
        warped = cv2.warpAffine(
            source,
            matrix,
            (width, height),
            flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        yield np.asarray(warped, dtype=np.uint8)


# BT.709, limited ("TV") range: what players assume for untagged HD video, and what the
# stream is tagged with. The last column is the offset of each channel.
_YUV_FROM_RGB = np.array(
    [
        [0.2126 * 219 / 255, 0.7152 * 219 / 255, 0.0722 * 219 / 255, 16.0],
        [-0.2126 / 1.8556 * 224 / 255, -0.7152 / 1.8556 * 224 / 255, 0.5 * 224 / 255, 128.0],
        [0.5 * 224 / 255, -0.7152 / 1.5748 * 224 / 255, -0.0722 / 1.5748 * 224 / 255, 128.0],
    ],
    dtype=np.float32,
)


def rgb_to_yuv420(rgb: Frame) -> Frame:
    """RGB (even height and width) to planar YUV 4:2:0 as PyAV lays it out: Y, then U, then V.

    Converted here rather than by the encoder's scaler, which would use BT.601 untagged.
    """
    height, width = rgb.shape[:2]
    yuv = cv2.transform(rgb.astype(np.float32), _YUV_FROM_RGB)
    # Chroma of each 2x2 block is the block's mean (an exact halving with INTER_AREA).
    chroma = cv2.resize(yuv[..., 1:], (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    planes = [yuv[..., 0].ravel(), chroma[..., 0].ravel(), chroma[..., 1].ravel()]
    packed: Frame = np.clip(np.rint(np.concatenate(planes)), 0, 255).astype(np.uint8)
    return packed.reshape(height * 3 // 2, width)


def encode_mp4(frames: Iterator[Frame], width: int, height: int, fps: int) -> bytes:
    """Encode RGB frames as H.264 (yuv420p) in an MP4 with `moov` up front for progressive playback."""
    # +faststart rewrites the file after the last packet, which needs a real file, not a buffer.
    with tempfile.TemporaryDirectory(prefix="hypereal-video-") as workdir:
        path = os.path.join(workdir, "out.mp4")
        _encode_on_own_thread(path, frames, width, height, fps)
        with open(path, "rb") as file:
            return file.read()


def _encode_on_own_thread(path: str, frames: Iterator[Frame], width: int, height: int, fps: int) -> None:
    """Run x264 on a fresh thread fed through a short queue, while this one renders frames.

    Besides overlapping the two halves of the work, this keeps the output reproducible:
    encoding on a thread that had also done other numeric work did not always give the
    same bytes for the same frames.
    """
    pending: queue.Queue[Frame | None] = queue.Queue(maxsize=4)
    failures: list[BaseException] = []

    def queued() -> Iterator[Frame]:
        while (item := pending.get()) is not None:
            yield item

    def encode() -> None:
        try:
            _encode_to(path, queued(), width, height, fps)
        except BaseException as exc:  # handed to the calling thread below
            failures.append(exc)
            while pending.get() is not None:  # keep the producer from blocking
                pass

    worker = threading.Thread(target=encode, name="hypereal-x264", daemon=True)
    worker.start()
    try:
        for rgb in frames:
            if failures:
                break
            pending.put(rgb_to_yuv420(rgb))
    finally:
        pending.put(None)
        worker.join()
    if failures:
        raise failures[0]


def _encode_to(path: str, frames: Iterator[Frame], width: int, height: int, fps: int) -> None:
    """Mux YUV 4:2:0 frames (as laid out by rgb_to_yuv420) into an H.264 MP4 at `path`."""
    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        # Still-image motion compresses well; crf 20 keeps gradients free of banding. One
        # encoder thread: the rendering thread keeps the other core busy, and the local
        # provider runs one job per core. The colour tags match rgb_to_yuv420.
        stream.options = {
            "crf": "20",
            "preset": "faster",
            "profile": "high",
            "threads": "1",
            "x264-params": "colorprim=bt709:transfer=bt709:colormatrix=bt709:range=tv",
        }
        for index, yuv in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@dataclass(frozen=True, slots=True)
class VideoSpec:
    duration: int
    fps: int
    short_edge: int

    @property
    def frame_count(self) -> int:
        return self.duration * self.fps


def animate_still(image: Image.Image, prompt: str, spec: VideoSpec, *, aspect: float | None = None) -> bytes:
    """Animate a still with the prompt's camera move; returns MP4 bytes of exactly duration*fps frames."""
    if min(image.size) < MIN_INPUT_EDGE:
        raise BadRequest(
            f"Image is {image.width}x{image.height}; it needs at least {MIN_INPUT_EDGE} pixels on each side."
        )
    move = parse_camera_move(prompt)
    width, height = output_size(aspect or image.width / image.height, spec.short_edge)
    source = prepare_source(image, width, height, move)
    frames = camera_frames(source, width, height, move, spec.frame_count)
    return encode_mp4(frames, width, height, spec.fps)


def video_from_image_bytes(data: bytes, prompt: str, spec: VideoSpec) -> bytes:
    """Pure entry point of `local-video-i2v`: encoded image bytes in, MP4 bytes out."""
    return animate_still(decode_image(data, mode="RGB"), prompt, spec)


def video_from_prompt(prompt: str, spec: VideoSpec, aspect_ratio: str = "16:9", seed: int | None = None) -> bytes:
    """Pure entry point of `local-video-t2v`: renders a `local-image` frame, then animates it."""
    aspect_w, aspect_h = T2V_ASPECTS[aspect_ratio]
    width, height = output_size(aspect_w / aspect_h, spec.short_edge)
    move = parse_camera_move(prompt)
    src_w, src_h = source_size(width, height, move)
    still = render_image(prompt, width=src_w, height=src_h, seed=seed)
    return animate_still(still, prompt, spec, aspect=aspect_w / aspect_h)


def _whole(value: Any) -> int | None:
    """An integer from JSON, where 5 and 5.0 are the same number; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if float(value).is_integer() else None


def _spec(params: dict[str, Any]) -> VideoSpec:
    duration = _whole(params.get("duration", 5))
    fps = _whole(params.get("fps", 24))
    resolution = params.get("resolution", "720p")
    if duration is None or not 1 <= duration <= MAX_DURATION:
        raise ValidationFailed(f"duration must be a whole number of seconds from 1 to {MAX_DURATION}")
    if fps not in ALLOWED_FPS:
        raise ValidationFailed(f"fps must be one of {', '.join(map(str, ALLOWED_FPS))}")
    if resolution not in SHORT_EDGES:
        raise ValidationFailed(f"resolution must be one of {', '.join(SHORT_EDGES)}")
    return VideoSpec(duration=duration, fps=fps, short_edge=SHORT_EDGES[resolution])


def _result(data: bytes, spec: VideoSpec, prompt: str) -> Result:
    extra = {
        "duration": spec.duration,
        "fps": spec.fps,
        "frames": spec.frame_count,
        "camera": parse_camera_move(prompt).name,
    }
    return Result(outputs=[Output(content_type="video/mp4", extension="mp4", data=data)], extra=extra)


async def image_to_video(request: MediaRequest, fetch: InputFetcher) -> Result:
    """`local-video-i2v`: the input image, animated by the prompt's camera move."""
    params = request.params
    url = params.get("image")
    if not isinstance(url, str) or not url:
        raise ValidationFailed("image is required: the URL of the still to animate")
    prompt = str(params.get("prompt") or "")
    spec = _spec(params)
    source = await fetch(url, kind="image")
    data = await asyncio.to_thread(video_from_image_bytes, source.data, prompt, spec)
    return _result(data, spec, prompt)


async def text_to_video(request: MediaRequest, fetch: InputFetcher) -> Result:
    """`local-video-t2v`: a `local-image` frame for the prompt, animated by its camera move."""
    params = request.params
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationFailed("prompt is required")
    aspect_ratio = params.get("aspect_ratio", "16:9")
    if aspect_ratio not in T2V_ASPECTS:
        raise ValidationFailed(f"aspect_ratio must be one of {', '.join(T2V_ASPECTS)}")
    seed = params.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValidationFailed("seed must be a non-negative integer")
    spec = _spec(params)
    data = await asyncio.to_thread(video_from_prompt, prompt, spec, aspect_ratio, seed)
    return _result(data, spec, prompt)


MODELS: dict[str, LocalModel] = {
    "local-video-i2v": image_to_video,
    "local-video-t2v": text_to_video,
}
