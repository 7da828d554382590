"""local-video-i2v / local-video-t2v: decoded output, measured camera motion, bad input."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from hypereal.errors import BadRequest, ValidationFailed
from hypereal.providers.base import InputFile, MediaRequest
from hypereal.providers.local import video
from hypereal.providers.local.video import VideoSpec, parse_camera_move

SMALL = VideoSpec(duration=1, fps=12, short_edge=480)


def busy_picture(width: int = 600, height: int = 400, seed: int = 7) -> Image.Image:
    """Random shapes on a gradient: corners for feature matching, texture for phase correlation."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, width, dtype=np.float32)
    canvas = np.dstack([np.tile(ramp, (height, 1))] * 3).astype(np.uint8)
    for _ in range(90):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            cv2.circle(canvas, (x, y), int(rng.integers(5, 40)), colour, -1)
        else:
            cv2.rectangle(canvas, (x, y), (x + int(rng.integers(8, 60)), y + int(rng.integers(8, 60))), colour, -1)
    return Image.fromarray(canvas)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode(data: bytes) -> tuple[list[np.ndarray], dict[str, object]]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        assert stream.duration is not None and stream.time_base is not None
        info = {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "rate": stream.average_rate,
            "width": stream.width,
            "height": stream.height,
            "stream_duration": float(stream.duration * stream.time_base),
            "container_duration": container.duration / 1_000_000 if container.duration else None,
        }
    return frames, info


def grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)


def mean_shift(frames: list[np.ndarray]) -> tuple[float, float]:
    """Average content shift (dx, dy) between consecutive frames in the middle of the clip."""
    middle = range(len(frames) // 4, 3 * len(frames) // 4)
    shifts = [cv2.phaseCorrelate(grey(frames[i]), grey(frames[i + 1]))[0] for i in middle]
    return float(np.mean([s[0] for s in shifts])), float(np.mean([s[1] for s in shifts]))


def scale_change(first: np.ndarray, last: np.ndarray) -> float:
    """How much larger the content of `last` is than that of `first` (matched ORB features)."""
    orb = cv2.ORB_create(1500)
    kp1, des1 = orb.detectAndCompute(cv2.cvtColor(first, cv2.COLOR_RGB2GRAY), None)
    kp2, des2 = orb.detectAndCompute(cv2.cvtColor(last, cv2.COLOR_RGB2GRAY), None)
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(des1, des2)
    src = np.float32([kp1[m.queryIdx].pt for m in matches])
    dst = np.float32([kp2[m.trainIdx].pt for m in matches])
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC)
    assert matrix is not None
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


@pytest.fixture(scope="module")
def still() -> bytes:
    return png_bytes(busy_picture())


@pytest.fixture(scope="module")
def clips(still: bytes) -> dict[str, bytes]:
    prompts = {
        "pan left": "The camera pans left across the room",
        "pan right": "Camera slowly pans across the scene",
        "tilt up": "tilt up to the sky",
        "tilt down": "camera tilts down",
        "zoom in": "zoom in on the table",
        "zoom out": "slowly zoom out",
        "default": "",
    }
    return {key: video.video_from_image_bytes(still, prompt, SMALL) for key, prompt in prompts.items()}


def test_clip_decodes_as_h264_yuv420p_with_exact_frames_fps_and_duration(clips: dict[str, bytes]) -> None:
    frames, info = decode(clips["default"])
    assert len(frames) == 12
    assert info["codec"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert info["rate"] == Fraction(12)
    # A 600x400 still at 480p keeps its 3:2 aspect.
    assert (info["width"], info["height"]) == (720, 480)
    assert info["stream_duration"] == pytest.approx(1.0, abs=1e-6)
    assert info["container_duration"] == pytest.approx(1.0, abs=0.05)


def test_frame_count_follows_duration_times_fps(still: bytes) -> None:
    frames, info = decode(video.video_from_image_bytes(still, "", VideoSpec(duration=2, fps=30, short_edge=480)))
    assert len(frames) == 60
    assert info["rate"] == Fraction(30)
    assert info["stream_duration"] == pytest.approx(2.0, abs=1e-6)


def test_pans_move_the_content_opposite_to_the_camera(clips: dict[str, bytes]) -> None:
    left_dx, left_dy = mean_shift(decode(clips["pan left"])[0])
    right_dx, right_dy = mean_shift(decode(clips["pan right"])[0])
    # The camera turning left makes the scene drift right in the frame, and vice versa.
    assert left_dx > 3.0 and abs(left_dy) < 0.5
    assert right_dx < -1.5 and abs(right_dy) < 0.5


def test_tilts_move_the_content_vertically(clips: dict[str, bytes]) -> None:
    up_dx, up_dy = mean_shift(decode(clips["tilt up"])[0])
    down_dx, down_dy = mean_shift(decode(clips["tilt down"])[0])
    assert up_dy > 2.0 and abs(up_dx) < 0.5
    assert down_dy < -2.0 and abs(down_dx) < 0.5


def test_zooms_scale_the_content(clips: dict[str, bytes]) -> None:
    zoom_in = decode(clips["zoom in"])[0]
    zoom_out = decode(clips["zoom out"])[0]
    push = decode(clips["default"])[0]
    assert scale_change(zoom_in[0], zoom_in[-1]) > 1.3
    assert scale_change(zoom_out[0], zoom_out[-1]) < 0.85
    # The default is a gentle push-in: closer, but less than an explicit zoom.
    push_scale = scale_change(push[0], push[-1])
    assert 1.03 < push_scale < 1.2


def test_motion_eases_in_and_out(clips: dict[str, bytes]) -> None:
    frames = decode(clips["pan left"])[0]
    steps = [abs(cv2.phaseCorrelate(grey(frames[i]), grey(frames[i + 1]))[0][0]) for i in range(len(frames) - 1)]
    middle = steps[len(steps) // 2]
    assert steps[0] < 0.25 * middle and steps[-1] < 0.25 * middle


def test_colours_survive_encoding() -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128), (250, 200, 40), (20, 30, 60)]
    strip = np.concatenate([np.full((64, 64, 3), c, np.uint8) for c in colours], axis=1)
    frames, _ = decode(video.encode_mp4(iter([strip] * 3), strip.shape[1], 64, 12))
    for index, colour in enumerate(colours):
        centre = frames[-1][32, index * 64 + 32].astype(int)
        assert np.abs(centre - colour).max() <= 4, (colour, centre)


def test_the_same_still_gives_the_same_bytes(still: bytes) -> None:
    first = video.video_from_image_bytes(still, "tilt up", SMALL)
    assert video.video_from_image_bytes(still, "tilt up", SMALL) == first


@pytest.mark.parametrize("prompt", ["pan left", "pan right", "tilt up", "tilt down", "zoom out", "zoom in fast"])
def test_moves_never_show_the_source_border(prompt: str) -> None:
    # On per-pixel noise, sampling past the source's edge would repeat its last pixels, so the
    # outer rows and columns would copy their neighbours instead of differing like all others.
    noise = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    move = parse_camera_move(prompt)
    width, height = video.output_size(320 / 240, 120)
    source = video.prepare_source(Image.fromarray(noise), width, height, move)
    for frame in video.camera_frames(source, width, height, move, 9):
        f = frame.astype(np.int16)
        for edge, inner in ((f[:, 0], f[:, 1]), (f[:, -1], f[:, -2]), (f[0], f[1]), (f[-1], f[-2])):
            assert np.abs(edge - inner).mean() > 8.0


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("", "push-in"),
        ("slow push on a quiet street", "push-in"),
        ("a girl looking up at the stars", "push-in"),
        ("Camera slowly pans across the scene", "pan-right"),
        ("pan to the left", "pan-left"),
        ("the camera moves right", "pan-right"),
        ("tilting upward toward the tower", "tilt-up"),
        ("crane down to the river", "tilt-down"),
        ("dolly in", "zoom-in"),
        ("pull back to reveal the valley", "zoom-out"),
        ("pan left while zooming in", "pan-left+zoom-in"),
        ("zoom out, then pan right", "pan-right+zoom-out"),
    ],
)
def test_camera_moves_are_read_from_the_prompt(prompt: str, expected: str) -> None:
    assert parse_camera_move(prompt).name == expected


def test_speed_words_change_the_size_of_the_move() -> None:
    slow, plain, fast = (parse_camera_move(p) for p in ("slowly zoom in", "zoom in", "fast zoom in"))
    assert slow.zoom_to > plain.zoom_to > fast.zoom_to


def test_window_never_leaves_the_source() -> None:
    for prompt in ("pan left and tilt up while zooming out fast", "pan right, tilt down, zoom in", ""):
        move = parse_camera_move(prompt)
        for progress in np.linspace(0.0, 1.0, 21):
            cx, cy, size = move.window(float(progress))
            assert 0.0 < size <= 1.0
            assert cx - size / 2 >= -1e-9 and cx + size / 2 <= 1 + 1e-9
            assert cy - size / 2 >= -1e-9 and cy + size / 2 <= 1 + 1e-9


def test_output_size_keeps_the_aspect_with_even_edges() -> None:
    assert video.output_size(16 / 9, 720) == (1280, 720)
    assert video.output_size(9 / 16, 480) == (480, 854)
    assert video.output_size(1.0, 720) == (720, 720)
    width, height = video.output_size(1001 / 667, 480)
    assert width % 2 == 0 and height == 480


def fetcher(data: bytes):  # type: ignore[no-untyped-def]
    async def fetch(url: str, *, kind: str) -> InputFile:
        assert kind == "image"
        return InputFile(data=data, content_type="image/png", url=url)

    return fetch


def request(model: str, **params: object) -> MediaRequest:
    return MediaRequest(job_id="job_test", model=model, upstream_model=model, category="video", params=params)


async def test_i2v_model_returns_an_mp4_with_the_requested_settings(still: bytes) -> None:
    model = video.MODELS["local-video-i2v"]
    params = {"image": "https://example.com/a.png", "prompt": "pan right", "duration": 1, "fps": 24}
    result = await model(request("local-video-i2v", resolution="480p", **params), fetcher(still))
    [output] = result.outputs
    assert (output.content_type, output.extension) == ("video/mp4", "mp4")
    assert output.data is not None
    frames, info = decode(output.data)
    assert len(frames) == 24 and info["rate"] == Fraction(24)
    assert result.extra["camera"] == "pan-right"


@pytest.mark.parametrize(
    "data",
    [
        png_bytes(Image.new("RGB", (1, 1), "red")),
        b"this is not an image",
        png_bytes(busy_picture())[:200],
    ],
    ids=["1x1", "text", "truncated"],
)
async def test_unusable_images_are_bad_requests(data: bytes) -> None:
    model = video.MODELS["local-video-i2v"]
    with pytest.raises(BadRequest):
        await model(request("local-video-i2v", image="https://example.com/a.png", duration=1, fps=12), fetcher(data))


@pytest.mark.parametrize(
    "params",
    [
        {"duration": 0},
        {"duration": 11},
        {"duration": 2.5},
        {"fps": 25},
        {"fps": True},
        {"resolution": "1080p"},
        {"image": ""},
    ],
)
async def test_invalid_parameters_are_rejected(still: bytes, params: dict[str, object]) -> None:
    model = video.MODELS["local-video-i2v"]
    base: dict[str, object] = {"image": "https://example.com/a.png", "duration": 1, "fps": 12}
    with pytest.raises(ValidationFailed):
        await model(request("local-video-i2v", **{**base, **params}), fetcher(still))


async def test_t2v_animates_a_rendered_frame() -> None:
    model = video.MODELS["local-video-t2v"]
    params = {"prompt": "a city at night, pan right", "duration": 1, "fps": 12, "resolution": "480p"}
    result = await model(request("local-video-t2v", aspect_ratio="16:9", seed=3, **params), fetcher(b""))
    [output] = result.outputs
    assert output.data is not None
    frames, info = decode(output.data)
    assert len(frames) == 12
    assert (info["width"], info["height"]) == (854, 480)
    assert result.extra["camera"] == "pan-right"
    # Same seed and prompt: the same clip, frame for frame. The pictures are compared, not the
    # MP4 bytes: x264's rate control may spend a few bits differently from one run to the next.
    again = await model(request("local-video-t2v", aspect_ratio="16:9", seed=3, **params), fetcher(b""))
    assert again.outputs[0].data is not None
    again_frames, _ = decode(again.outputs[0].data)
    assert len(again_frames) == len(frames)
    for first, second in zip(frames, again_frames, strict=True):
        assert np.abs(first.astype(int) - second.astype(int)).mean() < 1.0
    other = await model(request("local-video-t2v", aspect_ratio="16:9", seed=4, **params), fetcher(b""))
    assert other.outputs[0].data is not None
    other_frames, _ = decode(other.outputs[0].data)
    assert np.abs(other_frames[0].astype(int) - frames[0].astype(int)).mean() > 1.0


async def test_t2v_honours_the_aspect_ratio() -> None:
    model = video.MODELS["local-video-t2v"]
    params = {"prompt": "a forest", "duration": 1, "fps": 12, "resolution": "480p", "aspect_ratio": "9:16"}
    result = await model(request("local-video-t2v", **params), fetcher(b""))
    assert result.outputs[0].data is not None
    frames, info = decode(result.outputs[0].data)
    assert (info["width"], info["height"]) == (480, 854)
    # The frame is a real picture, not a flat fill.
    assert frames[0].std() > 5.0
