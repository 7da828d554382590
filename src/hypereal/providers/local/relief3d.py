"""`local-3d-relief`: one image becomes a textured relief of its foreground.

The foreground (alpha, or what stands out from the border colour) is rasterised on a grid
of `resolution` cells along the long edge. Each cell of it becomes a column of a slab: a
flat back, side walls along the outline, and a front raised by

    height = profile(distance to the outline) * (shape + (1 - shape) * luminance)

where the profile is a quarter circle, so the outline swells like a cushion, and brighter
parts come forward. The front, back and walls share vertices, so the mesh is closed
(watertight) by construction. The image is the mesh's texture, mapped straight on.

When no distinct foreground is found (a photograph that fills its frame), the whole image
becomes a plaque with softly rounded edges.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import trimesh
from scipy import ndimage

from hypereal.errors import BadRequest
from hypereal.providers.local.mesh3d import (
    BoolArray,
    ByteArray,
    export_glb,
    fill_background,
    foreground_mask,
    has_transparency,
    load_rgba,
    texture_image,
)

FloatArray = npt.NDArray[np.float64]

# Foreground covering less or more than this is taken as "no distinct object".
MIN_OBJECT_FRACTION = 0.005
MAX_OBJECT_FRACTION = 0.97
BASE_FRACTION = 0.15
"""Thickness of the flat slab under the raised front, relative to the raised part's height."""


def relief_glb(data: bytes, *, depth: float = 0.2, resolution: int = 128) -> tuple[bytes, dict[str, Any]]:
    """Image bytes in, GLB bytes and a few facts about the mesh out."""
    rgba = load_rgba(data)
    mesh = relief_mesh(rgba, depth=depth, resolution=resolution)
    stats = {"vertices": len(mesh.vertices), "faces": len(mesh.faces), "watertight": bool(mesh.is_watertight)}
    return export_glb(mesh, "relief"), stats


def relief_mesh(rgba: ByteArray, *, depth: float = 0.2, resolution: int = 128) -> trimesh.Trimesh:
    """A textured, closed relief mesh of the image's foreground; 1 unit on the image's long edge."""
    height_px, width_px = rgba.shape[:2]
    mask = foreground_mask(rgba)
    fraction = float(mask.mean())
    if has_transparency(rgba) and fraction == 0.0:
        raise BadRequest("The image is fully transparent: there is nothing to model.")
    plaque = not MIN_OBJECT_FRACTION <= fraction <= MAX_OBJECT_FRACTION
    if plaque:
        mask = np.ones_like(mask)

    long_edge = max(width_px, height_px)
    cells_w = max(1, round(resolution * width_px / long_edge))
    cells_h = max(1, round(resolution * height_px / long_edge))
    coverage = cv2.resize(mask.astype(np.float32), (cells_w, cells_h), interpolation=cv2.INTER_AREA)
    cells = coverage >= 0.5
    if not cells.any():
        cells = coverage >= coverage.max() * 0.5
    if not cells.any():
        raise BadRequest("The image's foreground is too small to model.")

    heights = _vertex_heights(rgba, mask, cells, plaque)
    width_units, height_units = width_px / long_edge, height_px / long_edge
    # `depth` is relative to the object's own width, so a narrow figure is not a deep block.
    used_columns = np.flatnonzero(cells.any(axis=0))
    object_width = (used_columns[-1] + 1 - used_columns[0]) / cells_w * width_units
    thickness = depth * object_width
    front_z = thickness * (BASE_FRACTION + heights) / (1.0 + BASE_FRACTION)

    rows, cols = np.divmod(np.arange((cells_h + 1) * (cells_w + 1)), cells_w + 1)
    corners = np.column_stack([cols, rows]).astype(np.float64)
    edges, outward = _outline_edges(cells)
    if not plaque:
        corners = _smooth_outline(corners, edges)
    mesh = _slab(cells, corners, front_z.ravel(), edges, outward, (width_units, height_units))

    texture = texture_image(_bleed_transparent(rgba, mask))
    material = trimesh.visual.material.PBRMaterial(  # type: ignore[no-untyped-call]
        name="relief", baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=0.85
    )
    uv = np.column_stack([corners[:, 0] / cells_w, 1.0 - corners[:, 1] / cells_h])
    if not plaque:
        _pull_outline_uvs_inside(uv, np.unique(edges), mask)
    mesh.visual = trimesh.visual.TextureVisuals(  # type: ignore[no-untyped-call]
        uv=np.vstack([uv, uv]), material=material
    )
    mesh.remove_unreferenced_vertices()
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    return mesh


def _vertex_heights(rgba: ByteArray, mask: BoolArray, cells: BoolArray, plaque: bool) -> FloatArray:
    """Relief height (0..1) at each grid corner, zero on the outline of the cell mask."""
    height_px, width_px = mask.shape
    cells_h, cells_w = cells.shape
    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    # A plaque keeps a flat face with rounded rims; an object swells over most of its width.
    reach = 0.04 * max(height_px, width_px) if plaque else 0.8 * float(distance.max())
    t = np.clip(distance / max(reach, 1e-6), 0.0, 1.0)
    profile = np.sqrt(1.0 - (1.0 - t) ** 2)

    rgb = rgba[..., :3].astype(np.float32)
    luminance = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
    inside = luminance[mask]
    low, high = np.percentile(inside, [2, 98]) if inside.size else (0.0, 1.0)
    luminance = np.clip((luminance - low) / max(float(high - low), 1e-3), 0.0, 1.0).astype(np.float32)
    # Luminance edges would stand as cliffs: soften them over about a cell and a half, so
    # bright parts rise as slopes; the outline profile only needs anti-aliasing to the grid.
    cell = width_px / cells_w
    luminance = cv2.GaussianBlur(luminance, (0, 0), sigmaX=1.5 * cell, sigmaY=1.5 * cell)
    shape = 0.25 if plaque else 0.6
    field = (profile * (shape + (1.0 - shape) * luminance)).astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigmaX=0.5 * cell, sigmaY=0.5 * cell)

    corner_x = np.arange(cells_w + 1) * (width_px / cells_w) - 0.5
    corner_y = np.arange(cells_h + 1) * (height_px / cells_h) - 0.5
    map_x, map_y = np.meshgrid(corner_x.astype(np.float32), corner_y.astype(np.float32))
    heights = cv2.remap(field, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    heights = heights.astype(np.float64) / max(float(heights.max()), 1e-6)

    # Corners on the cell outline touch a non-foreground cell: pin them to the slab.
    padded = np.pad(cells, 1)
    all_around = padded[:-1, :-1] & padded[:-1, 1:] & padded[1:, :-1] & padded[1:, 1:]
    heights[~all_around] = 0.0
    result: FloatArray = heights
    return result


def _outline_edges(cells: BoolArray) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Grid edges between a foreground cell and a background one, as corner index pairs,
    with the outward direction (x right, y down in grid terms) of each."""
    cells_w = cells.shape[1]
    stride = cells_w + 1
    padded = np.pad(cells, 1)
    # Vertical edges: between cell (i, j-1) and (i, j), from corner (i, j) to (i+1, j).
    left, right = padded[1:-1, :-1], padded[1:-1, 1:]
    vi, vj = np.nonzero(left != right)
    vertical = np.column_stack([vi * stride + vj, (vi + 1) * stride + vj])
    vertical_out = np.column_stack([np.where(left[vi, vj], 1.0, -1.0), np.zeros(len(vi))])
    # Horizontal edges: between cell (i-1, j) and (i, j), from corner (i, j) to (i, j+1).
    above, below = padded[:-1, 1:-1], padded[1:, 1:-1]
    hi, hj = np.nonzero(above != below)
    horizontal = np.column_stack([hi * stride + hj, hi * stride + hj + 1])
    horizontal_out = np.column_stack([np.zeros(len(hi)), np.where(above[hi, hj], 1.0, -1.0)])
    return np.vstack([vertical, horizontal]), np.vstack([vertical_out, horizontal_out])


def _smooth_outline(corners: FloatArray, edges: npt.NDArray[np.int64], iterations: int = 3) -> FloatArray:
    """Taubin-smooth the outline's corners along the outline, turning the cells' staircase into
    the object's curve without shrinking it; inner corners stay on the grid."""
    smoothed = corners.copy()
    on_outline = np.unique(edges)
    degree = np.bincount(edges.ravel(), minlength=len(corners)).astype(np.float64)[on_outline, None]
    for _ in range(iterations):
        for factor in (0.5, -0.53):
            total = np.zeros_like(smoothed)
            np.add.at(total, edges[:, 0], smoothed[edges[:, 1]])
            np.add.at(total, edges[:, 1], smoothed[edges[:, 0]])
            average = total[on_outline] / degree
            smoothed[on_outline] += factor * (average - smoothed[on_outline])
    return smoothed


def _slab(
    cells: BoolArray,
    corners: FloatArray,
    front_z: FloatArray,
    edges: npt.NDArray[np.int64],
    outward: FloatArray,
    size: tuple[float, float],
) -> trimesh.Trimesh:
    """Front, back and outline walls over the foreground cells, sharing one vertex grid each side."""
    cells_h, cells_w = cells.shape
    width_units, height_units = size
    stride = cells_w + 1
    count = len(corners)
    xs = (corners[:, 0] / cells_w - 0.5) * width_units
    ys = (0.5 - corners[:, 1] / cells_h) * height_units
    front = np.column_stack([xs, ys, front_z])
    back = np.column_stack([xs, ys, np.zeros(count)])
    vertices = np.vstack([front, back])

    i, j = np.nonzero(cells)
    a, b = i * stride + j, i * stride + j + 1
    c, d = (i + 1) * stride + j + 1, (i + 1) * stride + j
    faces = [
        np.column_stack([d, c, b]),
        np.column_stack([d, b, a]),
        np.column_stack([d + count, b + count, c + count]),
        np.column_stack([d + count, a + count, b + count]),
    ]
    # Outward in world terms: grid y runs down, world y up.
    world_out = np.column_stack([outward[:, 0], -outward[:, 1], np.zeros(len(outward))])
    faces.append(_wall(vertices, edges[:, 0], edges[:, 1], count, world_out))
    return trimesh.Trimesh(vertices=vertices, faces=np.vstack(faces), process=False)


def _wall(
    vertices: FloatArray,
    start: npt.NDArray[np.int64],
    end: npt.NDArray[np.int64],
    count: int,
    outward: FloatArray,
) -> npt.NDArray[np.int64]:
    """Two triangles per outline edge, from the front corners down to the back, facing `outward`."""
    triangles = np.vstack(
        [
            np.column_stack([start, end, end + count]),
            np.column_stack([start, end + count, start + count]),
        ]
    )
    directions = np.vstack([outward, outward])
    corners = vertices[triangles]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    flip = np.einsum("ij,ij->i", normals, directions) < 0
    triangles[flip] = triangles[flip][:, [0, 2, 1]]
    return triangles


def _pull_outline_uvs_inside(uv: FloatArray, outline: npt.NDArray[np.int64], mask: BoolArray) -> None:
    """Point the outline's UVs at the nearest pixel well inside the object.

    The outline runs along cell edges, partly over the backdrop: sampled there, the rim
    and walls would show a fringe of background colour.
    """
    height, width = mask.shape
    inner = ndimage.binary_erosion(mask, iterations=2)
    if not inner.any():
        inner = mask
    _, (near_rows, near_cols) = ndimage.distance_transform_edt(~inner, return_indices=True)
    cols = np.clip((uv[outline, 0] * width).astype(int), 0, width - 1)
    rows = np.clip(((1.0 - uv[outline, 1]) * height).astype(int), 0, height - 1)
    uv[outline, 0] = (near_cols[rows, cols] + 0.5) / width
    uv[outline, 1] = 1.0 - (near_rows[rows, cols] + 0.5) / height


def _bleed_transparent(rgba: ByteArray, mask: BoolArray) -> ByteArray:
    """Give fully transparent pixels their nearest visible colour.

    Their colour is invisible in the source but a texture sampled at the outline would
    blend it in (often black); alpha and every visible pixel stay exactly as they were.
    """
    if not has_transparency(rgba):
        return rgba
    visible = rgba[..., 3] > 0
    rgb = fill_background(np.ascontiguousarray(rgba[..., :3]), visible if visible.any() else mask)
    result: ByteArray = np.dstack([rgb, rgba[..., 3]])
    return result
