"""Image bytes in and out for the local models: decoding with clear errors, encoding, sizes.

Every local model that reads a user's image goes through `decode_image`, so a truncated
file, text posing as an image, a 1x1 pixel or a 20000x20000 bomb all become the same kind
of `BadRequest` with a message a client can act on, before any work is done.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from hypereal.errors import BadRequest, ValidationFailed

MIN_EDGE = 8
MAX_PIXELS = 50_000_000

ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9")
RESOLUTIONS = {"512": 512, "1K": 1024, "2K": 2048}
OUTPUT_FORMATS = {"png": ("image/png", "png"), "jpeg": ("image/jpeg", "jpg"), "webp": ("image/webp", "webp")}
_FORMAT_ALIASES = {"jpg": "jpeg"}

JPEG_QUALITY = 92
WEBP_QUALITY = 90
# A flat backdrop for formats or modes without alpha: white is what viewers show for
# transparent areas, black would turn anti-aliased edges into dark halos.
FLATTEN_BACKGROUND = (255, 255, 255)


def decode_image(data: bytes, *, mode: str = "RGB") -> Image.Image:
    """Decode encoded image bytes into a fully loaded Pillow image in `mode` (RGB, RGBA or L).

    EXIF orientation is applied; the first frame of an animation is used. Alpha is flattened
    onto white when the requested mode has none. Raises BadRequest for anything that is not a
    whole image of at least 8x8 and at most 50 megapixels.
    """
    if not data:
        raise BadRequest("The image is empty (0 bytes).")
    try:
        opened = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise BadRequest(f"The image is too large; at most {MAX_PIXELS // 1_000_000} megapixels.") from exc
    except Exception as exc:  # Pillow raises many unrelated types for foreign bytes
        raise BadRequest("The input is not a readable image (PNG, JPEG, WebP, GIF, BMP or TIFF).") from exc
    # The header is enough to refuse a size before decoding a single pixel.
    _check_size(opened.width, opened.height)
    try:
        opened.load()
        image = ImageOps.exif_transpose(opened) or opened
    except Exception as exc:  # truncated or corrupt pixel data
        raise BadRequest("The image is truncated or corrupt and could not be decoded.") from exc
    return _convert(image, mode)


def _check_size(width: int, height: int) -> None:
    if width < MIN_EDGE or height < MIN_EDGE:
        raise BadRequest(f"The image is {width}x{height}; it needs at least {MIN_EDGE} pixels on each side.")
    if width * height > MAX_PIXELS:
        raise BadRequest(
            f"The image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
            f"at most {MAX_PIXELS // 1_000_000} megapixels are accepted."
        )


def _convert(image: Image.Image, mode: str) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        image = _to_8bit(image)
    if image.mode == mode:
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha and mode not in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        backdrop = Image.new("RGBA", rgba.size, (*FLATTEN_BACKGROUND, 255))
        return Image.alpha_composite(backdrop, rgba).convert(mode)
    return image.convert(mode)


def _to_8bit(image: Image.Image) -> Image.Image:
    """Stretch 16-bit or float greyscale to 0..255; Pillow's own conversion clips it to white."""
    values = np.asarray(image, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(scaled.round().astype(np.uint8), mode="L")


def check_image_size(image: Image.Image) -> None:
    """Refuse images produced or sized by a request (not decoded) that break the same limits."""
    _check_size(image.width, image.height)


def normalize_format(output_format: str | None) -> str:
    fmt = (output_format or "png").lower()
    fmt = _FORMAT_ALIASES.get(fmt, fmt)
    if fmt not in OUTPUT_FORMATS:
        raise ValidationFailed(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def encode_image(image: Image.Image, fmt: str = "png") -> tuple[bytes, str, str]:
    """Encode to png, jpeg or webp; returns (bytes, content type, file extension).

    Encoding is deterministic: the same pixels give the same bytes. PNG and WebP keep alpha;
    JPEG flattens it onto white.
    """
    fmt = normalize_format(fmt)
    content_type, extension = OUTPUT_FORMATS[fmt]
    keeps_alpha = fmt in ("png", "webp")
    if image.mode not in ("RGB", "L", "RGBA", "LA") or (not keeps_alpha and image.mode in ("RGBA", "LA")):
        image = _convert(image, "RGBA" if keeps_alpha and "A" in image.mode else "RGB")
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=3)  # 3x faster than 6, ~4% larger
    elif fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    else:
        image.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
    return buffer.getvalue(), content_type, extension


def parse_aspect_ratio(aspect_ratio: str) -> tuple[int, int]:
    """Split "16:9" into (16, 9); any positive W:H is accepted, the catalog narrows the list."""
    try:
        left, right = aspect_ratio.split(":")
        width, height = int(left), int(right)
    except (AttributeError, ValueError) as exc:
        raise ValidationFailed(f"aspect_ratio must look like 16:9, got {aspect_ratio!r}") from exc
    if width <= 0 or height <= 0 or max(width / height, height / width) > 8:
        raise ValidationFailed(f"aspect_ratio {aspect_ratio!r} is out of range")
    return width, height


def long_edge_for(resolution: str | int) -> int:
    if isinstance(resolution, int) and not isinstance(resolution, bool):
        edge = resolution
    elif isinstance(resolution, str) and resolution.upper() in RESOLUTIONS:
        edge = RESOLUTIONS[resolution.upper()]
    elif isinstance(resolution, str) and resolution.isdigit():
        edge = int(resolution)
    else:
        raise ValidationFailed(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    if not 64 <= edge <= 4096:
        raise ValidationFailed("resolution must give a long edge between 64 and 4096 pixels")
    return edge


def size_for(aspect_ratio: str = "1:1", resolution: str | int = "1K") -> tuple[int, int]:
    """Pixel size for an aspect ratio and a long edge ("512", "1K", "2K"): ("16:9", "1K") -> (1024, 576).

    The short edge is rounded to an even number, which video encoders need.
    """
    ratio_w, ratio_h = parse_aspect_ratio(aspect_ratio)
    long_edge = long_edge_for(resolution)
    short_edge = max(MIN_EDGE, 2 * round(long_edge * min(ratio_w, ratio_h) / max(ratio_w, ratio_h) / 2))
    return (long_edge, short_edge) if ratio_w >= ratio_h else (short_edge, long_edge)
