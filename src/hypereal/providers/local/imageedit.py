"""Local image-edit models: upscale, background removal, inpaint, stylize, outpaint.

Classical OpenCV techniques, not neural models:

- `local-upscale`: Lanczos resampling, then an unsharp mask on luminance whose overshoot
  is clamped to the local range of the resampled image, so edges get crisper without halos
  or colour fringes.
- `local-remove-background`: GrabCut seeded from the image border (segmentation.py);
  always a PNG with alpha.
- `local-inpaint`: `cv2.inpaint` (Telea or Navier-Stokes) over a mask image or a box.
  It diffuses the surrounding colours inward: right for blots, wires and small objects,
  blurry for large regions.
- `local-stylize`: OpenCV's non-photorealistic filters and colour transforms, by `style`.
- `local-outpaint`: widens or heightens the canvas to an aspect ratio; the new border is a
  mirror of the nearby picture that dissolves into a heavy blur further out. The original
  pixels stay untouched in the middle.

The pure functions take and return Pillow images; the `MODELS` wrappers fetch, decode,
validate, run them in a thread and encode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from hypereal.errors import BadRequest, ValidationFailed
from hypereal.providers.base import InputFetcher, MediaRequest, Output, Result
from hypereal.providers.local import LocalModel
from hypereal.providers.local.imagecodec import (
    MAX_PIXELS,
    decode_image,
    encode_image,
    normalize_format,
    parse_aspect_ratio,
)
from hypereal.providers.local.segmentation import foreground_mask

Pixels = npt.NDArray[np.uint8]

UPSCALE_FACTORS = (2, 4)
SHARPEN_AMOUNT = 0.6
INPAINT_RADIUS = 5
# fmt: off
STYLES = (
    "stylize", "pencil-sketch", "color-pencil", "edge-preserving", "detail-enhance",
    "cartoon", "sepia", "grayscale", "warm", "cool",
)
# fmt: on
INPAINT_METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


# ---------------------------------------------------------------------------- pure functions
def upscale(image: Image.Image, scale: int = 2) -> Image.Image:
    """Enlarge by 2 or 4 with Lanczos, then sharpen luminance without halos."""
    if scale not in UPSCALE_FACTORS:
        raise ValidationFailed("scale must be 2 or 4")
    width, height = image.width * scale, image.height * scale
    _check_output(width, height)
    rgb, alpha = _split(image)
    enlarged = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LANCZOS4)
    ycrcb = cv2.cvtColor(enlarged, cv2.COLOR_RGB2YCrCb)
    luma = ycrcb[..., 0].astype(np.float32)
    blurred = cv2.GaussianBlur(luma, (0, 0), 0.6 * scale)
    sharpened = luma + SHARPEN_AMOUNT * (luma - blurred)
    # Clamp to the neighbourhood's own range: the detail is amplified, the ringing is not.
    kernel = np.ones((3, 3), np.uint8)
    low, high = cv2.erode(luma, kernel).astype(np.float32), cv2.dilate(luma, kernel).astype(np.float32)
    ycrcb[..., 0] = np.clip(np.clip(sharpened, low, high), 0, 255).round().astype(np.uint8)
    result = np.asarray(cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB), np.uint8)
    if alpha is not None:
        alpha = np.asarray(cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LANCZOS4), np.uint8)
    return _join(result, alpha)


def remove_background(image: Image.Image) -> Image.Image:
    """The image as RGBA whose alpha keeps the foreground subject."""
    rgb, alpha = _split(image)
    mask = foreground_mask(rgb)
    if alpha is not None:  # already transparent areas stay transparent
        mask = np.minimum(mask, alpha)
    return _join(rgb, mask, force_alpha=True)


def box_mask(width: int, height: int, box: Any) -> Pixels:
    """A mask from [x, y, w, h] in pixels, clipped to the image."""
    if not isinstance(box, list | tuple) or len(box) != 4:
        raise ValidationFailed("box must be [x, y, w, h] in pixels")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
        raise ValidationFailed("box must be four numbers [x, y, w, h]")
    x, y, w, h = (round(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValidationFailed("box width and height must be positive")
    x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
    if x0 >= x1 or y0 >= y1:
        raise ValidationFailed(f"box {list(box)} lies outside the {width}x{height} image")
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 255
    return mask


def mask_pixels(mask: Image.Image) -> Pixels:
    """Grey levels of a mask image; transparent areas count as black (not to be filled)."""
    rgba = np.asarray(mask.convert("RGBA"), np.float32)
    luma = rgba[..., :3] @ np.asarray([0.299, 0.587, 0.114], np.float32)
    return np.asarray(np.round(luma * rgba[..., 3] / 255), np.uint8)


def inpaint(image: Image.Image, mask: Pixels, method: str = "telea") -> Image.Image:
    """Fill the white (>127) region of `mask` from its surroundings."""
    if method not in INPAINT_METHODS:
        raise ValidationFailed("method must be telea or ns")
    rgb, alpha = _split(image)
    if mask.shape != rgb.shape[:2]:
        raise BadRequest(
            f"The mask is {mask.shape[1]}x{mask.shape[0]} but the image is {rgb.shape[1]}x{rgb.shape[0]}; "
            "they must be the same size."
        )
    region = (mask > 127).astype(np.uint8) * 255
    if not region.any():
        raise BadRequest("The mask marks no pixels to fill (white marks the region to inpaint).")
    if region.all():
        raise BadRequest("The mask covers the whole image; nothing is left to fill it from.")
    # Grow the region a little: the anti-aliased rim of a blot belongs to the blot.
    region = np.asarray(cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))), np.uint8)
    filled = _inpaint_multiscale(rgb, region, INPAINT_METHODS[method])
    return _join(filled, alpha)


def _inpaint_multiscale(rgb: Pixels, region: Pixels, flags: int) -> Pixels:
    """Large holes are filled on a smaller copy first; cv2.inpaint's cost grows with the hole."""
    height, width = region.shape
    if height * width <= 1_500_000:
        return np.asarray(cv2.inpaint(rgb, region, INPAINT_RADIUS, flags), np.uint8)
    scale = (1_500_000 / (height * width)) ** 0.5
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    small_rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    small_region = (cv2.resize(region, size, interpolation=cv2.INTER_AREA) > 0).astype(np.uint8) * 255
    coarse = cv2.resize(
        cv2.inpaint(small_rgb, small_region, INPAINT_RADIUS, flags), (width, height), interpolation=cv2.INTER_CUBIC
    )
    seeded = np.where(region[..., None] > 0, coarse, rgb).astype(np.uint8)
    # A final pass at full size over a thin seam keeps the boundary sharp.
    seam = cv2.morphologyEx(region, cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8))
    return np.asarray(cv2.inpaint(seeded, seam, INPAINT_RADIUS, flags), np.uint8)


def stylize(image: Image.Image, style: str = "stylize") -> Image.Image:
    """Apply one of STYLES; alpha, if any, is kept."""
    try:
        effect = _EFFECTS[style]
    except KeyError as exc:
        raise ValidationFailed(f"style must be one of {', '.join(STYLES)}") from exc
    rgb, alpha = _split(image)
    return _join(effect(rgb), alpha)


def _bgr_filter(run: Callable[[Pixels], Any]) -> Callable[[Pixels], Pixels]:
    """OpenCV's photo filters assume BGR channel order (they convert to Lab internally)."""

    def apply(rgb: Pixels) -> Pixels:
        out = np.asarray(run(np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.uint8)), np.uint8)
        if out.ndim == 2:
            return np.asarray(cv2.cvtColor(out, cv2.COLOR_GRAY2RGB), np.uint8)
        return np.asarray(cv2.cvtColor(out, cv2.COLOR_BGR2RGB), np.uint8)

    return apply


def _pencil(rgb: Pixels, colored: bool) -> Pixels:
    """Colour-dodge sketch: grey divided by a blurred negative leaves strokes where tones change.

    (OpenCV's own pencilSketch turns plain areas white and sensor grain into speckle; the
    dodge keeps soft shading.) The coloured variant tints the strokes with washed colours.
    """
    calm = cv2.bilateralFilter(rgb, 7, 30, 5)
    gray = cv2.cvtColor(calm, cv2.COLOR_RGB2GRAY)
    sigma = max(2.0, min(gray.shape) / 120)
    negative_blur = cv2.GaussianBlur(255 - gray, (0, 0), sigma)
    dodge = cv2.divide(gray, 255 - negative_blur, scale=256).astype(np.float32) / 255
    strokes = np.clip(dodge, 0, 1) ** 2.2  # darker, more visible graphite
    if not colored:
        tone = np.repeat((strokes * 255)[..., None], 3, axis=2)
    else:
        washed = calm.astype(np.float32) * 0.55 + 255 * 0.45
        tone = washed * (strokes**1.5)[..., None]
    return np.asarray(np.clip(tone, 0, 255).round(), np.uint8)


def _cartoon(rgb: Pixels) -> Pixels:
    smooth = rgb
    for _ in range(3):
        smooth = np.asarray(cv2.bilateralFilter(smooth, 9, 40, 7), np.uint8)
    levels = 6
    posterized = ((smooth.astype(np.int32) * levels // 256) * (255 // (levels - 1))).astype(np.uint8)
    posterized = np.asarray(cv2.addWeighted(posterized, 0.6, smooth, 0.4, 0), np.uint8)
    gray = cv2.medianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 7)
    edges = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    return np.asarray(cv2.bitwise_and(posterized, posterized, mask=edges), np.uint8)


def _color_matrix(matrix: list[list[float]]) -> Callable[[Pixels], Pixels]:
    weights = np.asarray(matrix, np.float32)

    def apply(rgb: Pixels) -> Pixels:
        return np.asarray(np.clip(rgb.astype(np.float32) @ weights.T, 0, 255).round(), np.uint8)

    return apply


def _channel_curves(red: float, blue: float) -> Callable[[Pixels], Pixels]:
    """Gamma-like curves: >1 lifts a channel's mid-tones, <1 lowers them; black and white stay."""
    ramp = np.arange(256, dtype=np.float32) / 255
    tables = [np.clip(255 * ramp ** (1 / g), 0, 255).round().astype(np.uint8) for g in (red, 1.0, blue)]

    def apply(rgb: Pixels) -> Pixels:
        channels = [cv2.LUT(rgb[..., i].copy(), tables[i]) for i in range(3)]
        return np.asarray(np.dstack(channels), np.uint8)

    return apply


_EFFECTS: dict[str, Callable[[Pixels], Pixels]] = {
    "stylize": _bgr_filter(lambda bgr: cv2.stylization(bgr, sigma_s=60, sigma_r=0.45)),
    "pencil-sketch": lambda rgb: _pencil(rgb, colored=False),
    "color-pencil": lambda rgb: _pencil(rgb, colored=True),
    "edge-preserving": _bgr_filter(
        lambda bgr: cv2.edgePreservingFilter(bgr, flags=cv2.RECURS_FILTER, sigma_s=60, sigma_r=0.4)
    ),
    "detail-enhance": _bgr_filter(lambda bgr: cv2.detailEnhance(bgr, sigma_s=10, sigma_r=0.15)),
    "cartoon": _cartoon,
    "sepia": _color_matrix([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]]),
    "grayscale": _color_matrix([[0.299, 0.587, 0.114]] * 3),
    "warm": _channel_curves(red=1.25, blue=0.8),
    "cool": _channel_curves(red=0.8, blue=1.25),
}


def outpaint(image: Image.Image, aspect_ratio: str = "16:9") -> Image.Image:
    """Extend the canvas (never crop) to the aspect ratio; the source stays centred, unchanged."""
    ratio_w, ratio_h = parse_aspect_ratio(aspect_ratio)
    width, height = image.size
    target = ratio_w / ratio_h
    if width / height < target:
        new_width, new_height = max(width, round(height * target)), height
    else:
        new_width, new_height = width, max(height, round(width / target))
    _check_output(new_width, new_height)
    rgb, alpha = _split(image)
    left, top = (new_width - width) // 2, (new_height - height) // 2
    right, bottom = new_width - width - left, new_height - height - top
    if left == right == top == bottom == 0:
        return image.copy()
    pad = ((top, bottom), (left, right), (0, 0))
    mirrored = np.pad(rgb, pad, mode="symmetric").astype(np.float32)
    # Distance from the original picture, in pixels, for every new pixel.
    inside = np.zeros((new_height, new_width), np.uint8)
    inside[top : top + height, left : left + width] = 1
    distance = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)
    reach = max(left, right, top, bottom)
    blurred = _wide_blur(mirrored, sigma=max(4.0, reach / 4))
    weight = np.clip(distance / max(1.0, reach * 0.6), 0, 1)[..., None]
    weight = weight * weight * (3 - 2 * weight)
    extended = mirrored * (1 - weight) + blurred * weight
    # A slight fade of the new area keeps the eye on the original picture.
    extended *= 1 - 0.08 * weight
    result = np.clip(extended, 0, 255).round().astype(np.uint8)
    result[top : top + height, left : left + width] = rgb
    if alpha is not None:
        alpha = np.pad(alpha, pad[:2], mode="symmetric")
        alpha[top : top + height, left : left + width] = np.asarray(image.getchannel("A"))
    return _join(result, alpha)


def _wide_blur(pixels: npt.NDArray[np.float32], sigma: float) -> npt.NDArray[np.float32]:
    """A large Gaussian blur, computed on a reduced copy: same look, a fraction of the cost."""
    height, width = pixels.shape[:2]
    factor = max(1, int(sigma // 4))
    small = cv2.resize(pixels, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return np.asarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR), np.float32)


# ---------------------------------------------------------------------------- helpers
def _check_output(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise BadRequest(
            f"The result would be {width}x{height}, over the {MAX_PIXELS // 1_000_000} megapixel limit; "
            "send a smaller image."
        )


def _split(image: Image.Image) -> tuple[Pixels, Pixels | None]:
    """RGB pixels and, only if some pixel is not opaque, the alpha channel."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"))
        alpha = rgba[..., 3]
        if int(alpha.min()) < 255:
            return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(alpha)
        return np.ascontiguousarray(rgba[..., :3]), None
    return np.asarray(image.convert("RGB")), None


def _join(rgb: Pixels, alpha: Pixels | None, force_alpha: bool = False) -> Image.Image:
    if alpha is None and not force_alpha:
        return Image.fromarray(rgb, mode="RGB")
    if alpha is None:
        alpha = np.full(rgb.shape[:2], 255, np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")


# ---------------------------------------------------------------------------- local models
async def _load(fetch: InputFetcher, url: Any, what: str, mode: str = "RGBA") -> Image.Image:
    if not isinstance(url, str) or not url:
        raise ValidationFailed(f"{what} must be an image URL")
    source = await fetch(url, kind="image")
    return await asyncio.to_thread(decode_image, source.data, mode=mode)


def _image_urls(params: dict[str, Any]) -> list[Any]:
    images = params.get("images")
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not images:
        raise ValidationFailed("images must hold the URL of the image to edit")
    return images


def _result(image: Image.Image, output_format: str, **extra: Any) -> Result:
    data, content_type, extension = encode_image(image, output_format)
    return Result(
        outputs=[Output(content_type=content_type, extension=extension, data=data)],
        extra={"width": image.width, "height": image.height, **extra},
    )


async def local_upscale(request: MediaRequest, fetch: InputFetcher) -> Result:
    params = request.params
    scale = params.get("scale", 2)
    if scale not in UPSCALE_FACTORS or isinstance(scale, bool):
        raise ValidationFailed("scale must be 2 or 4")
    fmt = normalize_format(params.get("output_format"))
    source = await _load(fetch, _image_urls(params)[0], "images[0]")
    _check_output(source.width * scale, source.height * scale)
    return await asyncio.to_thread(lambda: _result(upscale(source, int(scale)), fmt))


async def local_remove_background(request: MediaRequest, fetch: InputFetcher) -> Result:
    source = await _load(fetch, _image_urls(request.params)[0], "images[0]")
    return await asyncio.to_thread(lambda: _result(remove_background(source), "png"))


async def local_inpaint(request: MediaRequest, fetch: InputFetcher) -> Result:
    params = request.params
    urls = _image_urls(params)
    method = params.get("method") or "telea"
    if method not in INPAINT_METHODS:
        raise ValidationFailed("method must be telea or ns")
    fmt = normalize_format(params.get("output_format"))
    mask_url = params.get("mask") or (urls[1] if len(urls) > 1 else None)
    box = params.get("box")
    if mask_url is None and box is None:
        raise ValidationFailed("local-inpaint needs a mask (image URL) or a box [x, y, w, h]")
    source = await _load(fetch, urls[0], "images[0]")
    if mask_url is not None:
        mask = mask_pixels(await _load(fetch, mask_url, "mask"))
    else:
        mask = box_mask(source.width, source.height, box)
    return await asyncio.to_thread(lambda: _result(inpaint(source, mask, str(method)), fmt))


async def local_stylize(request: MediaRequest, fetch: InputFetcher) -> Result:
    params = request.params
    style = params.get("style") or "stylize"
    if style not in STYLES:
        raise ValidationFailed(f"style must be one of {', '.join(STYLES)}")
    fmt = normalize_format(params.get("output_format"))
    source = await _load(fetch, _image_urls(params)[0], "images[0]")
    return await asyncio.to_thread(lambda: _result(stylize(source, str(style)), fmt, style=style))


async def local_outpaint(request: MediaRequest, fetch: InputFetcher) -> Result:
    params = request.params
    aspect_ratio = str(params.get("aspect_ratio") or "16:9")
    parse_aspect_ratio(aspect_ratio)
    fmt = normalize_format(params.get("output_format"))
    source = await _load(fetch, _image_urls(params)[0], "images[0]")
    return await asyncio.to_thread(lambda: _result(outpaint(source, aspect_ratio), fmt))


MODELS: dict[str, LocalModel] = {
    "local-upscale": local_upscale,
    "local-remove-background": local_remove_background,
    "local-inpaint": local_inpaint,
    "local-stylize": local_stylize,
    "local-outpaint": local_outpaint,
}
