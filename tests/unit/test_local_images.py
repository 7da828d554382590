"""Image codec and `local-image`: decoded sizes and formats, determinism, prompt-driven content."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hypereal.errors import BadRequest, ValidationFailed
from hypereal.providers.base import InputFile, MediaRequest
from hypereal.providers.local import imagegen
from hypereal.providers.local.imagecodec import (
    ASPECT_RATIOS,
    decode_image,
    encode_image,
    normalize_format,
    size_for,
)
from hypereal.providers.local.imagegen import generate_image, render_image
from hypereal.providers.local.promptscene import parse_prompt

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size; its pixel data is a token, never reached."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def luminance(image: Image.Image) -> float:
    return float(np.asarray(image.convert("L"), np.float64).mean())


# ------------------------------------------------------------------------------------ codec
@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_encode_decode_round_trip(fmt: str) -> None:
    source = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (48, 1, 3)))
    data, content_type, extension = encode_image(source, fmt)
    assert content_type == f"image/{fmt}"
    assert extension == {"png": "png", "jpeg": "jpg", "webp": "webp"}[fmt]
    assert Image.open(io.BytesIO(data)).format == PIL_FORMATS[fmt]
    decoded = decode_image(data)
    assert decoded.size == (64, 48) and decoded.mode == "RGB"
    assert np.abs(np.asarray(decoded, np.int16) - np.asarray(source, np.int16)).mean() < 3


def test_jpeg_flattens_alpha_onto_white_and_png_keeps_it() -> None:
    clear = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    jpeg, _, _ = encode_image(clear, "jpeg")
    assert np.asarray(decode_image(jpeg)).min() > 245
    png, _, _ = encode_image(clear, "png")
    assert decode_image(png, mode="RGBA").getpixel((3, 3)) == (0, 0, 0, 0)
    assert decode_image(png, mode="RGB").getpixel((3, 3)) == (255, 255, 255)


def test_sixteen_bit_greyscale_is_stretched_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (16, 1))
    decoded = np.asarray(decode_image(png_bytes(Image.fromarray(ramp))))
    assert decoded[0, 0, 0] == 0 and decoded[0, -1, 0] == 255 and 100 < decoded[0, 16, 0] < 160


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is plainly some text, not an image at all", "not a readable image"),
        (png_bytes(Image.new("RGB", (1, 1))), "1x1"),
        (png_bytes(Image.new("RGB", (7, 300))), "at least 8"),
        (png_header_only(10_000, 6_000), "megapixels"),
    ],
)
def test_decode_refuses_unusable_bytes(data: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        decode_image(data)


def test_decode_refuses_a_truncated_png() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = png_bytes(Image.fromarray(noise))
    with pytest.raises(BadRequest, match="truncated"):
        decode_image(data[: len(data) * 2 // 3])


def test_sizes_for_aspect_ratios_and_resolutions() -> None:
    assert size_for("1:1", "1K") == (1024, 1024)
    assert size_for("16:9", "1K") == (1024, 576)
    assert size_for("9:16", "2K") == (1152, 2048)
    assert size_for("4:3", "512") == (512, 384)
    for ratio in ASPECT_RATIOS:
        width, height = size_for(ratio, "1K")
        ratio_w, ratio_h = (int(v) for v in ratio.split(":"))
        assert max(width, height) == 1024 and width % 2 == 0 and height % 2 == 0
        assert abs(width / height - ratio_w / ratio_h) < 0.01
    with pytest.raises(ValidationFailed):
        size_for("wide", "1K")
    with pytest.raises(ValidationFailed):
        size_for("1:1", "8K")
    assert normalize_format("JPG") == "jpeg"
    with pytest.raises(ValidationFailed):
        normalize_format("gif")


# ------------------------------------------------------------------------------ local-image
@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_image_has_the_requested_size(ratio: str) -> None:
    data, content_type, _ = generate_image("a lake under mountains", aspect_ratio=ratio, resolution="512")
    assert content_type == "image/png"
    assert Image.open(io.BytesIO(data)).size == size_for(ratio, "512")


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_image_has_the_requested_format(fmt: str) -> None:
    data, content_type, _ = generate_image("city skyline at night", resolution="512", output_format=fmt)
    opened = Image.open(io.BytesIO(data))
    assert opened.format == PIL_FORMATS[fmt] and content_type == f"image/{fmt}"
    assert opened.size == (512, 512)


def test_same_prompt_and_seed_give_identical_bytes() -> None:
    for fmt in ("png", "jpeg"):
        first = generate_image("forest by the sea at sunset", seed=42, resolution="512", output_format=fmt)
        second = generate_image("forest by the sea at sunset", seed=42, resolution="512", output_format=fmt)
        assert first[0] == second[0]
    unseeded = [generate_image("snowy mountains", resolution="512")[0] for _ in range(2)]
    assert unseeded[0] == unseeded[1]


def test_another_seed_rearranges_the_scene() -> None:
    one = np.asarray(render_image("three trees in a field", width=256, height=256, seed=1), np.float64)
    two = np.asarray(render_image("three trees in a field", width=256, height=256, seed=2), np.float64)
    assert np.abs(one - two).mean() > 5


def test_night_sky_is_darker_than_a_sunny_beach() -> None:
    night = render_image("night sky with stars", width=384, height=384, seed=0)
    beach = render_image("sunny beach", width=384, height=384, seed=0)
    assert luminance(night) < 0.4 * luminance(beach)
    assert luminance(night) < 60 < 120 < luminance(beach)


def test_different_prompts_give_clearly_different_images() -> None:
    prompts = ["desert dunes at noon", "a city skyline at night", "green hills with a rainbow", "stormy sea"]
    images = [np.asarray(render_image(p, width=256, height=256, seed=5), np.float64) for p in prompts]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i] - images[j]).mean() > 20, (prompts[i], prompts[j])


def test_colour_words_colour_the_objects() -> None:
    red = np.asarray(render_image("three red circles", width=256, height=256, seed=3), np.float64)
    blue = np.asarray(render_image("three blue circles", width=256, height=256, seed=3), np.float64)
    assert (red[..., 0] - red[..., 2]).mean() > (blue[..., 0] - blue[..., 2]).mean() + 10


def test_sunset_sky_is_warmer_than_noon() -> None:
    def warmth(prompt: str) -> float:
        sky = np.asarray(render_image(prompt, width=256, height=256, seed=9), np.float64)[:90]
        return float((sky[..., 0] - sky[..., 2]).mean())

    assert warmth("mountains at sunset") > warmth("mountains at noon") + 40


def test_city_at_night_has_lit_windows() -> None:
    city = np.asarray(render_image("a city skyline at night", width=384, height=384, seed=1), np.float64)
    warm_lights = (city[..., 0] > 180) & (city[..., 2] < 150)
    assert warm_lights.sum() > 200
    assert city.mean() < 70


def test_prompt_words_are_read_into_a_scene() -> None:
    scene = parse_prompt("Two green trees and a yellow house in a field at night")
    assert scene.time == "night" and scene.terrain == ["field"]
    assert scene.objects == {"trees": 2, "houses": 1}
    assert scene.colors["trees"][1] > scene.colors["trees"][0]
    assert not parse_prompt("zxqv blorp").recognised


def test_unknown_words_still_render_deterministically() -> None:
    first = np.asarray(render_image("a portrait of a cat", width=128, height=96, seed=0))
    second = np.asarray(render_image("a portrait of a cat", width=128, height=96, seed=0))
    assert first.shape == (96, 128, 3) and np.array_equal(first, second) and first.std() > 5


def test_render_refuses_impossible_sizes() -> None:
    with pytest.raises(ValidationFailed):
        render_image("sky", width=4, height=100)


# ------------------------------------------------------------------------- LocalModel wrapper
def fetcher(files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    async def fetch(url: str, *, kind: str) -> InputFile:
        return InputFile(data=files[url], content_type="application/octet-stream", url=url)

    return fetch


def image_request(**params: object) -> MediaRequest:
    return MediaRequest(
        job_id="job_t", model="local-image", upstream_model="local-image", category="image", params=params
    )


async def test_local_image_model_answers_with_one_file() -> None:
    model = imagegen.MODELS["local-image"]
    result = await model(
        image_request(prompt="sunny beach", seed=7, aspect_ratio="16:9", resolution="512", output_format="webp"),
        fetcher({}),
    )
    assert len(result.outputs) == 1
    output = result.outputs[0]
    assert output.content_type == "image/webp" and output.extension == "webp" and output.data
    assert Image.open(io.BytesIO(output.data)).size == (512, 288)
    assert result.extra == {"width": 512, "height": 288, "seed": 7}


async def test_local_image_model_uses_catalog_defaults_when_keys_are_missing() -> None:
    result = await imagegen.MODELS["local-image"](image_request(prompt="mountains"), fetcher({}))
    data = result.outputs[0].data
    assert data is not None and Image.open(io.BytesIO(data)).size == (1024, 1024)
    assert result.outputs[0].content_type == "image/png"


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"prompt": "  "},
        {"prompt": "sky", "seed": -1},
        {"prompt": "sky", "seed": "x"},
        {"prompt": "sky", "aspect_ratio": "5"},
        {"prompt": "sky", "resolution": "9K"},
        {"prompt": "sky", "output_format": "gif"},
    ],
)
async def test_local_image_model_refuses_bad_parameters(params: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        await imagegen.MODELS["local-image"](image_request(**params), fetcher({}))
