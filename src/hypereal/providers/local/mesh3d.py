"""Local 3D models: what they share (foreground segmentation, GLB export) and their entry points.

Both are classical geometry, not neural reconstruction:
- `local-3d-relief` (relief3d.py): one image becomes a textured relief of its foreground,
  a slab whose front is raised by a distance transform of the outline plus the luminance.
- `local-3d-multiview` (visualhull.py): four silhouettes (front, back, left, right) carve a
  voxel grid; marching cubes turns the carved volume into a smoothed, vertex-coloured mesh.

Output is glTF 2.0 binary (GLB), Y up, +Z facing the front view, 1 unit on the longest side.
"""

from __future__ import annotations

import asyncio
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import trimesh
from PIL import Image
from scipy import ndimage

from hypereal.errors import BadRequest, ValidationFailed
from hypereal.providers.base import InputFetcher, MediaRequest, Output, Result
from hypereal.providers.local import LocalModel
from hypereal.providers.local.imagecodec import decode_image

BoolArray = npt.NDArray[np.bool_]
ByteArray = npt.NDArray[np.uint8]

MIN_IMAGE_EDGE = 16
GLB = ("model/gltf-binary", "glb")
# Beyond this the texture is downscaled: many viewers refuse textures over 4096, and a
# relief cannot show more detail than its grid anyway.
MAX_TEXTURE_EDGE = 2048


def load_rgba(data: bytes, what: str = "image") -> ByteArray:
    """Decode image bytes to an RGBA array; BadRequest for anything too small to model."""
    image = decode_image(data, mode="RGBA")
    if min(image.size) < MIN_IMAGE_EDGE:
        raise BadRequest(
            f"The {what} is {image.width}x{image.height}; it needs at least {MIN_IMAGE_EDGE} pixels on each side."
        )
    return np.asarray(image.convert("RGBA"), dtype=np.uint8)


def has_transparency(rgba: ByteArray) -> bool:
    alpha = rgba[..., 3]
    return bool(alpha.min() < 250)


def foreground_mask(rgba: ByteArray) -> BoolArray:
    """Foreground of an image: its alpha when it has any, else what differs from the border colour.

    The background colour is the median of the image's border; each pixel's distance to
    it in CIELAB is thresholded by Otsu, never below the spread of the border itself (so
    a noisy or gradient backdrop is not taken for the object). Small specks are dropped
    and holes filled, because a silhouette's holes are almost always segmentation noise.
    """
    if has_transparency(rgba):
        mask = rgba[..., 3] >= 128
    else:
        lab = cv2.cvtColor(np.ascontiguousarray(rgba[..., :3]), cv2.COLOR_RGB2LAB).astype(np.float32)
        band = max(1, min(rgba.shape[:2]) // 100)
        border = np.concatenate(
            [
                lab[:band].reshape(-1, 3),
                lab[-band:].reshape(-1, 3),
                lab[:, :band].reshape(-1, 3),
                lab[:, -band:].reshape(-1, 3),
            ]
        )
        background = np.median(border, axis=0)
        distance = np.linalg.norm(lab - background, axis=2)
        border_spread = float(np.percentile(np.linalg.norm(border - background, axis=1), 98))
        scaled = np.clip(distance * (255.0 / max(float(distance.max()), 1e-6)), 0, 255).astype(np.uint8)
        otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        threshold = max(otsu * max(float(distance.max()), 1e-6) / 255.0, border_spread + 4.0, 12.0)
        mask = distance > threshold
    return clean_mask(mask)


def clean_mask(mask: BoolArray) -> BoolArray:
    if not mask.any():
        return mask
    radius = max(1, min(mask.shape) // 200)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, kernel).astype(bool)
    labels, count = ndimage.label(closed)
    if count == 0:
        return closed
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= 0.02 * sizes.max()) + 1
    kept = np.isin(labels, keep)
    filled: BoolArray = ndimage.binary_fill_holes(kept)
    return filled


def bounding_box(mask: BoolArray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive end, of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def fill_background(rgb: ByteArray, mask: BoolArray) -> ByteArray:
    """Give every background pixel the colour of its nearest foreground pixel.

    Sampling colours at a silhouette's edge then never blends in the backdrop.
    """
    if mask.all() or not mask.any():
        return rgb
    _, (rows, cols) = ndimage.distance_transform_edt(~mask, return_indices=True)
    filled: ByteArray = rgb[rows, cols]
    return filled


def texture_image(rgba: ByteArray) -> Image.Image:
    """The texture to embed: the source as is (RGB when it is opaque), capped in size."""
    image = Image.fromarray(rgba, "RGBA")
    if not has_transparency(rgba):
        image = image.convert("RGB")
    if max(image.size) > MAX_TEXTURE_EDGE:
        image.thumbnail((MAX_TEXTURE_EDGE, MAX_TEXTURE_EDGE), Image.Resampling.LANCZOS)
    return image


def export_glb(mesh: trimesh.Trimesh, name: str) -> bytes:
    scene = trimesh.Scene()
    scene.add_geometry(mesh, geom_name=name, node_name=name)
    data = scene.export(file_type="glb", include_normals=True)  # type: ignore[no-untyped-call]
    if not isinstance(data, bytes):
        raise TypeError("trimesh returned no bytes for a GLB export")
    return data


def _int_param(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValidationFailed(f"{name} must be a whole number from {low} to {high}")
    return int(value)


def _float_param(params: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = params.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValidationFailed(f"{name} must be a number from {low} to {high}")
    return float(value)


def _url_param(params: dict[str, Any], name: str) -> str:
    url = params.get(name)
    if not isinstance(url, str) or not url:
        raise ValidationFailed(f"{name} is required: the URL of an image")
    return url


def _glb_result(data: bytes, extra: dict[str, Any]) -> Result:
    content_type, extension = GLB
    return Result(outputs=[Output(content_type=content_type, extension=extension, data=data)], extra=extra)


# The algorithm modules build on the helpers above, so the entry points import them when called.


async def image_to_relief(request: MediaRequest, fetch: InputFetcher) -> Result:
    """`local-3d-relief`: a textured relief of the image's foreground, as GLB."""
    from hypereal.providers.local.relief3d import relief_glb

    params = request.params
    url = _url_param(params, "image")
    depth = _float_param(params, "depth", 0.2, 0.05, 1.0)
    resolution = _int_param(params, "resolution", 128, 32, 256)
    source = await fetch(url, kind="image")
    data, stats = await asyncio.to_thread(relief_glb, source.data, depth=depth, resolution=resolution)
    return _glb_result(data, stats)


VIEW_PARAMS = ("front_image_url", "back_image_url", "left_image_url", "right_image_url")


async def multiview_to_hull(request: MediaRequest, fetch: InputFetcher) -> Result:
    """`local-3d-multiview`: the visual hull of four silhouettes, vertex-coloured, as GLB."""
    from hypereal.providers.local.visualhull import hull_glb

    params = request.params
    urls = [_url_param(params, name) for name in VIEW_PARAMS]
    resolution = _int_param(params, "resolution", 96, 32, 192)
    fetched = await asyncio.gather(*(fetch(url, kind="image") for url in urls))
    front, back, left, right = (item.data for item in fetched)
    data, stats = await asyncio.to_thread(hull_glb, front, back, left, right, resolution=resolution)
    return _glb_result(data, stats)


MODELS: dict[str, LocalModel] = {
    "local-3d-relief": image_to_relief,
    "local-3d-multiview": multiview_to_hull,
}
