"""Local image-edit models: measured results (SSIM, IoU, repaired blots), refused input."""

from __future__ import annotations

import io
from itertools import combinations

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from hypereal.errors import BadRequest, InputFetchFailed, ValidationFailed
from hypereal.providers.base import InputFile, MediaRequest, Result
from hypereal.providers.local import imageedit
from hypereal.providers.local.imageedit import (
    STYLES,
    box_mask,
    inpaint,
    outpaint,
    remove_background,
    stylize,
    upscale,
)

SOURCE = "https://example.com/source.png"
MASK = "https://example.com/mask.png"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def photo(width: int = 256, height: int = 192, seed: int = 3) -> Image.Image:
    """Shapes, a gradient and fine texture: something with edges, flats and detail."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(30, 220, width, dtype=np.float32)
    canvas = np.dstack([np.tile(ramp, (height, 1)), np.tile(ramp[::-1], (height, 1)), np.full((height, width), 120.0)])
    canvas = canvas.astype(np.uint8)
    for _ in range(25):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            cv2.circle(canvas, (x, y), int(rng.integers(6, 30)), colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(canvas, (x, y), (x + int(rng.integers(8, 50)), y + int(rng.integers(8, 50))), colour, -1)
    grain = rng.normal(0, 6, canvas.shape)
    return Image.fromarray(np.clip(canvas + grain, 0, 255).astype(np.uint8))


def subject_on_plain_background(background: str = "plain") -> tuple[Image.Image, np.ndarray]:
    """A two-coloured textured subject (a disc joined to a bar) and its exact mask."""
    height, width = 300, 400
    rng = np.random.default_rng(11)
    if background == "plain":
        canvas = np.full((height, width, 3), (236, 234, 228), np.float64)
    else:
        fade = np.linspace(0, 1, height)[:, None, None]
        canvas = np.array([190.0, 210, 235]) * (1 - fade) + np.array([120.0, 140, 190]) * fade
        canvas = np.broadcast_to(canvas, (height, width, 3)).copy()
    mask = np.zeros((height, width), np.uint8)
    cv2.circle(mask, (170, 140), 75, 1, -1)
    cv2.rectangle(mask, (200, 120), (320, 230), 1, -1)
    texture = rng.normal(0, 12, (height, width, 1))
    subject = np.where(np.arange(width)[None, :, None] < 200, [200.0, 70, 40], [40.0, 110, 60]) + texture
    canvas[mask == 1] = subject[mask == 1]
    noisy = np.clip(canvas + rng.normal(0, 3, canvas.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy), mask.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# ------------------------------------------------------------------------------------ upscale
@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_multiplies_size_and_keeps_structure(scale: int) -> None:
    source = photo()
    result = upscale(source, scale)
    assert result.size == (source.width * scale, source.height * scale) and result.mode == "RGB"
    back = np.asarray(result.resize(source.size, Image.Resampling.LANCZOS))
    assert structural_similarity(np.asarray(source), back, channel_axis=2) > 0.9


def test_upscale_is_sharper_than_plain_lanczos() -> None:
    source = photo()
    plain = np.asarray(source.resize((512, 384), Image.Resampling.LANCZOS).convert("L"), np.float64)
    ours = np.asarray(upscale(source, 2).convert("L"), np.float64)

    def edge_energy(pixels: np.ndarray) -> float:
        return float(np.abs(cv2.Laplacian(pixels, cv2.CV_64F)).mean())

    assert edge_energy(ours) > 1.1 * edge_energy(plain)
    # ...without inventing brightness outside the source's own range (no halos).
    assert ours.max() <= np.asarray(source.convert("L")).max() + 4


def test_upscale_keeps_transparency() -> None:
    rgba = photo(64, 64).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.arange(64)[None, :] < 32, 0, 255).astype(np.uint8).repeat(64, 0)))
    result = upscale(rgba, 2)
    assert result.mode == "RGBA"
    alpha = np.asarray(result.getchannel("A"))
    assert alpha[:, :56].max() < 10 and alpha[:, 72:].min() > 245


def test_upscale_refuses_a_result_over_the_pixel_limit() -> None:
    with pytest.raises(BadRequest, match="megapixel"):
        upscale(Image.new("RGB", (4000, 4000)), 4)


# -------------------------------------------------------------------------- remove background
@pytest.mark.parametrize("background", ["plain", "gradient"])
def test_background_removal_matches_the_subject(background: str) -> None:
    image, truth = subject_on_plain_background(background)
    result = remove_background(image)
    assert result.mode == "RGBA" and result.size == image.size
    alpha = np.asarray(result.getchannel("A"))
    assert iou(alpha > 127, truth) >= 0.9
    assert alpha[:10, :10].max() == 0 and alpha[180, 260] == 255
    assert np.array_equal(np.asarray(result)[..., :3], np.asarray(image))


def test_background_removal_with_sky_and_ground_and_a_subject_touching_the_edge() -> None:
    rng = np.random.default_rng(5)
    canvas = np.zeros((300, 400, 3))
    canvas[:200], canvas[200:] = (120, 170, 230), (90, 150, 70)
    truth = np.zeros((300, 400), np.uint8)
    cv2.ellipse(truth, (200, 170), (70, 100), 0, 0, 360, 1, -1)
    cv2.rectangle(truth, (330, 100), (399, 180), 1, -1)  # runs off the right edge
    canvas[truth == 1] = np.array([220, 180, 40]) + rng.normal(0, 10, (int(truth.sum()), 1))
    image = Image.fromarray(np.clip(canvas + rng.normal(0, 3, canvas.shape), 0, 255).astype(np.uint8))
    alpha = np.asarray(remove_background(image).getchannel("A"))
    assert iou(alpha > 127, truth == 1) >= 0.9
    assert alpha[140, 390] == 255


# ------------------------------------------------------------------------------------ inpaint
def blotted(surface: Image.Image) -> tuple[Image.Image, np.ndarray]:
    pixels = np.asarray(surface).copy()
    mask = np.zeros(pixels.shape[:2], np.uint8)
    cv2.circle(mask, (100, 80), 14, 255, -1)
    cv2.circle(pixels, (100, 80), 12, (10, 10, 10), -1, cv2.LINE_AA)
    return Image.fromarray(pixels), mask


def smooth_surface() -> Image.Image:
    ys, xs = np.mgrid[0:160, 0:200].astype(np.float64)
    return Image.fromarray(np.dstack([120 + 0.4 * xs, 150 + 0.2 * ys, 90 + 0.1 * (xs + ys)]).astype(np.uint8))


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_inpaint_removes_a_marked_blot(method: str) -> None:
    clean = smooth_surface()
    dirty, mask = blotted(clean)
    region = mask > 0
    before = np.abs(np.asarray(dirty, np.float64) - np.asarray(clean, np.float64))[region].mean()
    repaired = inpaint(dirty, mask, method)
    after = np.abs(np.asarray(repaired, np.float64) - np.asarray(clean, np.float64))[region].mean()
    assert before > 80 and after < 6
    far = cv2.dilate(mask, np.ones((15, 15), np.uint8)) == 0
    assert np.array_equal(np.asarray(repaired)[far], np.asarray(dirty)[far])


def test_inpaint_with_a_box() -> None:
    clean = smooth_surface()
    dirty, _ = blotted(clean)
    repaired = inpaint(dirty, box_mask(200, 160, [84, 64, 32, 32]))
    patch = (slice(64, 96), slice(84, 116))
    error = np.abs(np.asarray(repaired, np.float64)[patch] - np.asarray(clean, np.float64)[patch]).mean()
    assert error < 6


def test_inpaint_refuses_unusable_masks() -> None:
    image = smooth_surface()
    with pytest.raises(BadRequest, match="same size"):
        inpaint(image, np.full((10, 10), 255, np.uint8))
    with pytest.raises(BadRequest, match="no pixels"):
        inpaint(image, np.zeros((160, 200), np.uint8))
    with pytest.raises(BadRequest, match="whole image"):
        inpaint(image, np.full((160, 200), 255, np.uint8))
    with pytest.raises(ValidationFailed):
        box_mask(200, 160, [500, 500, 10, 10])
    with pytest.raises(ValidationFailed):
        box_mask(200, 160, [1, 2, 3])


# ------------------------------------------------------------------------------------ stylize
def test_every_style_changes_the_picture_and_differs_from_the_others() -> None:
    source = photo(160, 120)
    base = np.asarray(source, np.float64)
    results = {}
    for style in STYLES:
        styled = stylize(source, style)
        assert styled.size == source.size
        results[style] = np.asarray(styled.convert("RGB"), np.float64)
        assert np.abs(results[style] - base).mean() > 2.0, style
    for first, second in combinations(STYLES, 2):
        assert np.abs(results[first] - results[second]).mean() > 1.0, (first, second)
    grey = results["grayscale"]
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    assert (results["sepia"][..., 0] >= results["sepia"][..., 2]).all()
    assert (results["warm"][..., 0] - results["warm"][..., 2]).mean() > (base[..., 0] - base[..., 2]).mean()
    assert (results["cool"][..., 2] - results["cool"][..., 0]).mean() > (base[..., 2] - base[..., 0]).mean()


def test_unknown_style_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        stylize(photo(32, 32), "vaporwave")


# ------------------------------------------------------------------------------------ outpaint
@pytest.mark.parametrize(("ratio", "expected"), [("16:9", (341, 192)), ("9:16", (256, 455)), ("21:9", (448, 192))])
def test_outpaint_reaches_the_ratio_and_keeps_the_original_in_the_centre(ratio: str, expected: tuple[int, int]) -> None:
    source = photo()
    result = outpaint(source, ratio)
    assert result.size == expected
    left, top = (expected[0] - source.width) // 2, (expected[1] - source.height) // 2
    pixels = np.asarray(result)
    assert np.array_equal(pixels[top : top + source.height, left : left + source.width], np.asarray(source))
    # The new border continues the picture: no black bars, the seam matches its neighbour.
    new_area = np.ones(pixels.shape[:2], bool)
    new_area[top : top + source.height, left : left + source.width] = False
    assert pixels[new_area].mean() > 40
    if left:
        seam = np.abs(pixels[:, left - 1].astype(np.float64) - pixels[:, left].astype(np.float64)).mean()
        assert seam < 25


def test_outpaint_at_the_ratio_already_changes_nothing() -> None:
    source = photo(320, 180)
    assert np.array_equal(np.asarray(outpaint(source, "16:9")), np.asarray(source))


# --------------------------------------------------------------------- the LocalModel wrappers
def fetcher(files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    async def fetch(url: str, *, kind: str) -> InputFile:
        assert kind == "image"
        if url not in files:
            raise InputFetchFailed(f"Could not fetch {url}")
        return InputFile(data=files[url], content_type="image/png", url=url)

    return fetch


def edit_request(model: str, **params: object) -> MediaRequest:
    return MediaRequest(job_id="job_t", model=model, upstream_model=model, category="image-edit", params=params)


async def run(model: str, files: dict[str, bytes], **params: object) -> tuple[Result, Image.Image]:
    result = await imageedit.MODELS[model](edit_request(model, **params), fetcher(files))
    assert len(result.outputs) == 1 and result.outputs[0].data
    return result, Image.open(io.BytesIO(result.outputs[0].data))


async def test_upscale_model() -> None:
    result, image = await run(
        "local-upscale", {SOURCE: png_bytes(photo())}, images=[SOURCE], scale=4, output_format="jpeg"
    )
    assert image.format == "JPEG" and image.size == (1024, 768)
    assert result.outputs[0].content_type == "image/jpeg"


async def test_remove_background_model_answers_png_with_alpha() -> None:
    picture, truth = subject_on_plain_background()
    _, image = await run("local-remove-background", {SOURCE: png_bytes(picture)}, images=[SOURCE])
    assert image.format == "PNG" and image.mode == "RGBA"
    assert iou(np.asarray(image.getchannel("A")) > 127, truth) >= 0.9


async def test_inpaint_model_takes_the_mask_from_the_second_image_or_a_box() -> None:
    dirty, mask = blotted(smooth_surface())
    files = {SOURCE: png_bytes(dirty), MASK: png_bytes(Image.fromarray(mask))}
    clean = np.asarray(smooth_surface(), np.float64)
    for params in (
        {"images": [SOURCE, MASK]},
        {"images": [SOURCE], "mask": MASK},
        {"images": [SOURCE], "box": [84, 64, 32, 32]},
    ):
        _, image = await run("local-inpaint", files, **params)
        assert np.abs(np.asarray(image, np.float64)[66:94, 86:114] - clean[66:94, 86:114]).mean() < 6


async def test_inpaint_mask_transparency_counts_as_keep() -> None:
    dirty, mask = blotted(smooth_surface())
    strokes = np.zeros((*mask.shape, 4), np.uint8)
    strokes[mask > 0] = (255, 255, 255, 255)  # white strokes on a transparent sheet
    files = {SOURCE: png_bytes(dirty), MASK: png_bytes(Image.fromarray(strokes))}
    _, image = await run("local-inpaint", files, images=[SOURCE], mask=MASK)
    assert np.array_equal(np.asarray(image)[:40], np.asarray(dirty)[:40])
    assert np.asarray(image)[80, 100].min() > 60


async def test_stylize_and_outpaint_models() -> None:
    files = {SOURCE: png_bytes(photo())}
    result, image = await run("local-stylize", files, images=[SOURCE], style="sepia", output_format="webp")
    assert image.format == "WEBP" and result.extra["style"] == "sepia"
    _, image = await run("local-outpaint", files, images=[SOURCE], aspect_ratio="16:9")
    assert image.size == (341, 192)
    _, image = await run("local-outpaint", files, images=[SOURCE])  # catalog default 16:9
    assert image.size == (341, 192)


def truncated_png() -> bytes:
    data = png_bytes(photo(64, 64))
    return data[: len(data) // 2]


@pytest.mark.parametrize("model", sorted(imageedit.MODELS))
@pytest.mark.parametrize(
    "data",
    [truncated_png(), b"GIF? no: just some words in a text file", png_bytes(Image.new("RGB", (1, 1)))],
    ids=["truncated", "text", "1x1"],
)
async def test_broken_sources_are_bad_requests(model: str, data: bytes) -> None:
    params: dict[str, object] = {"images": [SOURCE], "box": [0, 0, 4, 4]}
    with pytest.raises(BadRequest):
        await imageedit.MODELS[model](edit_request(model, **params), fetcher({SOURCE: data}))


async def test_wrapper_parameter_errors() -> None:
    files = {SOURCE: png_bytes(smooth_surface()), MASK: png_bytes(Image.new("L", (20, 20), 255))}
    cases = [
        ("local-inpaint", {"images": [SOURCE]}, ValidationFailed, "mask"),
        ("local-inpaint", {"images": [SOURCE, MASK]}, BadRequest, "same size"),
        ("local-inpaint", {"images": [SOURCE], "box": [0, 0, 10, 10], "method": "magic"}, ValidationFailed, "method"),
        ("local-upscale", {"images": [SOURCE], "scale": 3}, ValidationFailed, "scale"),
        ("local-stylize", {"images": [SOURCE], "style": "oil"}, ValidationFailed, "style"),
        ("local-outpaint", {"images": [SOURCE], "aspect_ratio": "wide"}, ValidationFailed, "aspect_ratio"),
        ("local-upscale", {}, ValidationFailed, "images"),
        ("local-upscale", {"images": ["https://example.com/missing.png"]}, InputFetchFailed, "fetch"),
    ]
    for model, params, error, words in cases:
        with pytest.raises(error, match=words):
            await imageedit.MODELS[model](edit_request(model, **params), fetcher(files))


def test_models_are_exported_by_id() -> None:
    assert set(imageedit.MODELS) == {
        "local-upscale",
        "local-remove-background",
        "local-inpaint",
        "local-stylize",
        "local-outpaint",
    }


@pytest.mark.parametrize("size", [(8, 8), (8, 300), (300, 8)])
def test_the_smallest_accepted_images_go_through_every_model(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    for style in STYLES:
        assert stylize(image, style).size == size
    assert upscale(image, 4).size == (size[0] * 4, size[1] * 4)
    assert remove_background(image).mode == "RGBA"
    assert outpaint(image, "1:1").size == (max(size), max(size))
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[2:5, 2:5] = 255
    assert inpaint(image, mask).size == size


def test_background_removal_of_a_featureless_picture_is_empty_not_an_error() -> None:
    alpha = np.asarray(remove_background(Image.new("RGB", (120, 90), (50, 60, 70))).getchannel("A"))
    assert alpha.max() == 0
