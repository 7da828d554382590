"""`local-3d-multiview`: the visual hull of four silhouettes, as a vertex-coloured mesh.

Views are orthographic and axis-aligned (Y up, the object facing +Z):

    front  camera on +Z, image right = +X        back   camera on -Z, image right = -X
    left   camera on -X, image right = +Z        right  camera on +X, image right = -Z

("left" is the view from the viewer's left of the front, which shows the object's side
that faces -X.) Each silhouette is cropped to its bounding box, so the four pictures may
frame the object at different scales: all share the object's height, front/back give its
width and left/right its depth.

A voxel keeps the smallest of the four silhouettes' coverages at its centre (a fuzzy
intersection, so flat faces land between voxels with sub-voxel accuracy); marching cubes
extracts the 0.5 surface; Taubin smoothing rounds off voxel steps without shrinking the
volume as plain Laplacian smoothing does. Each vertex takes its colour from the views
that see it, weighted by how squarely it faces them; a vertex is seen by a view when no
carved voxel lies in front of it along that view's axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import trimesh
from skimage import measure

from hypereal.errors import BadRequest
from hypereal.providers.local.mesh3d import (
    BoolArray,
    ByteArray,
    bounding_box,
    export_glb,
    fill_background,
    foreground_mask,
    has_transparency,
    load_rgba,
)

FloatArray = npt.NDArray[np.float64]
VIEW_NAMES = ("front", "back", "left", "right")
# Without alpha, a "silhouette" filling the whole frame means the backdrop was not found.
MAX_OPAQUE_FILL = 0.97
SMOOTHING_ITERATIONS = 10
# Pieces smaller than this share of the largest are carving debris, not parts of the object.
MIN_PIECE_FRACTION = 0.01


@dataclass(frozen=True, slots=True)
class View:
    name: str
    colours: ByteArray
    """RGB with the backdrop replaced by the nearest object colour."""
    mask: BoolArray
    box: tuple[int, int, int, int]

    @property
    def aspect(self) -> float:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) / (y1 - y0)

    def coverage(self, columns: int, rows: int) -> npt.NDArray[np.float32]:
        """Share of each cell covered by the silhouette, over its bounding box, on a rows x columns grid."""
        x0, y0, x1, y1 = self.box
        crop = self.mask[y0:y1, x0:x1].astype(np.float32)
        shrinking = crop.shape[1] >= columns and crop.shape[0] >= rows
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        resized = cv2.resize(crop, (columns, rows), interpolation=interpolation)
        return np.asarray(resized, dtype=np.float32)

    def sample(self, across: FloatArray, down: FloatArray) -> FloatArray:
        """RGB (0..1) at positions given as fractions (0..1) across and down the bounding box."""
        x0, y0, x1, y1 = self.box
        height, width = self.colours.shape[:2]
        x = np.clip(x0 + across * (x1 - x0) - 0.5, 0.0, width - 1.0)
        y = np.clip(y0 + down * (y1 - y0) - 0.5, 0.0, height - 1.0)
        left, top = np.minimum(x.astype(int), width - 2), np.minimum(y.astype(int), height - 2)
        dx, dy = (x - left)[:, None], (y - top)[:, None]
        image = self.colours.astype(np.float64) / 255.0
        upper = image[top, left] * (1.0 - dx) + image[top, left + 1] * dx
        lower = image[top + 1, left] * (1.0 - dx) + image[top + 1, left + 1] * dx
        result: FloatArray = upper * (1.0 - dy) + lower * dy
        return result


def make_view(name: str, rgba: ByteArray) -> View:
    mask = foreground_mask(rgba)
    if not mask.any():
        raise BadRequest(f"The {name} image shows no object: its silhouette is empty.")
    if not has_transparency(rgba) and mask.mean() > MAX_OPAQUE_FILL:
        raise BadRequest(
            f"The {name} image has no background to separate the object from; "
            "use a plain backdrop or a transparent PNG."
        )
    colours = fill_background(np.ascontiguousarray(rgba[..., :3]), mask)
    return View(name=name, colours=colours, mask=mask, box=bounding_box(mask))


def hull_glb(
    front: bytes, back: bytes, left: bytes, right: bytes, *, resolution: int = 96
) -> tuple[bytes, dict[str, Any]]:
    """Four images' bytes in, GLB bytes and a few facts about the mesh out."""
    views = [
        make_view(name, load_rgba(data, f"{name} image"))
        for name, data in zip(VIEW_NAMES, (front, back, left, right), strict=True)
    ]
    mesh = visual_hull(*views, resolution=resolution)
    stats = {"vertices": len(mesh.vertices), "faces": len(mesh.faces), "watertight": bool(mesh.is_watertight)}
    return export_glb(mesh, "visual_hull"), stats


def visual_hull(front: View, back: View, left: View, right: View, *, resolution: int = 96) -> trimesh.Trimesh:
    """The carved, smoothed and coloured hull; the object's height is 1 unit, centred on the origin.

    `resolution` voxels span the object's longest side; the other sides get as many as keep
    the voxels cubic.
    """
    extent = np.array([(front.aspect + back.aspect) / 2.0, 1.0, (left.aspect + right.aspect) / 2.0])
    voxel = float(extent.max()) / resolution
    counts = np.maximum(4, np.round(extent / voxel).astype(int))
    nx, ny, nz = (int(n) for n in counts)
    spacing = extent / counts

    # Image rows run downwards, world Y upwards: flip rows into (y, ·) order.
    front_yx = front.coverage(nx, ny)[::-1]
    back_yx = back.coverage(nx, ny)[::-1, ::-1]
    left_yz = left.coverage(nz, ny)[::-1]
    right_yz = right.coverage(nz, ny)[::-1, ::-1]
    side_x = np.minimum(front_yx, back_yx).T[:, :, None]  # (x, y, 1)
    side_z = np.minimum(left_yz, right_yz)[None, :, :]  # (1, y, z)
    volume = np.minimum(side_x, side_z)
    if not (volume > 0.5).any():
        raise BadRequest("The four silhouettes do not overlap: they cannot be views of one object.")

    padded = np.pad(volume, 1)
    vertices, faces, _, _ = measure.marching_cubes(  # type: ignore[no-untyped-call]
        padded, level=0.5, spacing=tuple(spacing)
    )
    # Padded index k holds the voxel centred at (k - 0.5) * spacing - extent / 2.
    vertices = vertices - 0.5 * spacing - extent / 2.0
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=True)
    mesh = _drop_debris(mesh)
    if mesh.volume < 0:
        mesh.invert()
    trimesh.smoothing.filter_taubin(  # type: ignore[no-untyped-call]
        mesh, lamb=0.5, nu=0.53, iterations=SMOOTHING_ITERATIONS
    )
    colours = _vertex_colours(mesh, volume > 0.5, extent, spacing, (front, back, left, right))
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=colours)
    return mesh


def _drop_debris(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    pieces = mesh.split(only_watertight=False)
    if len(pieces) <= 1:
        return mesh
    sizes = np.array([abs(piece.volume) for piece in pieces])
    floor = MIN_PIECE_FRACTION * sizes.max()
    merged = trimesh.util.concatenate([piece for piece, size in zip(pieces, sizes, strict=True) if size >= floor])
    if not isinstance(merged, trimesh.Trimesh):
        raise TypeError("concatenating meshes gave no mesh")
    return merged


def _vertex_colours(
    mesh: trimesh.Trimesh,
    solid: BoolArray,
    extent: FloatArray,
    spacing: FloatArray,
    views: tuple[View, View, View, View],
) -> ByteArray:
    front, back, left, right = views
    points = np.asarray(mesh.vertices)
    normals = np.asarray(mesh.vertex_normals)
    # Fractions across the world box, 0..1 along each axis.
    fx, fy, fz = ((points + extent / 2.0) / extent).T
    down = 1.0 - fy

    def seen(axis: int, towards: int) -> FloatArray:
        return _seen(solid, points, extent, spacing, axis=axis, towards=towards)

    samples = [
        (front.sample(fx, down), normals[:, 2], seen(2, 1)),
        (back.sample(1.0 - fx, down), -normals[:, 2], seen(2, -1)),
        (left.sample(fz, down), -normals[:, 0], seen(0, -1)),
        (right.sample(1.0 - fz, down), normals[:, 0], seen(0, 1)),
    ]
    weights = np.stack([(np.clip(facing, 0.0, None) ** 2 + 1e-3) * sees for _, facing, sees in samples])
    # Tops and bottoms face no camera: they take the plain average of every view.
    unseen = weights.sum(axis=0) <= 1e-6
    weights[:, unseen] = 1.0
    colours = np.stack([colour for colour, _, _ in samples])
    blended = (colours * weights[..., None]).sum(axis=0) / weights.sum(axis=0)[:, None]
    rgb = np.clip(np.round(blended * 255.0), 0, 255).astype(np.uint8)
    result: ByteArray = np.column_stack([rgb, np.full(len(rgb), 255, np.uint8)])
    return result


def _seen(
    solid: BoolArray, points: FloatArray, extent: FloatArray, spacing: FloatArray, *, axis: int, towards: int
) -> FloatArray:
    """1.0 for points with no solid voxel between them and the camera on `axis` (at `towards` infinity)."""
    index = np.clip(((points + extent / 2.0) / spacing).astype(int), 0, np.array(solid.shape) - 1)
    coordinate = (points[:, axis] + extent[axis] / 2.0) / spacing[axis]
    # The outermost solid voxel along the axis, per column; columns with none hide nothing.
    filled = np.asarray(solid.any(axis=axis), dtype=bool)
    if towards > 0:
        outermost = solid.shape[axis] - np.argmax(np.flip(solid, axis=axis), axis=axis)
    else:
        outermost = np.argmax(solid, axis=axis)
    other = [a for a in range(3) if a != axis]
    column = (index[:, other[0]], index[:, other[1]])
    surface = outermost[column].astype(np.float64)
    tolerance = 1.5
    visible = coordinate >= surface - tolerance if towards > 0 else coordinate <= surface + tolerance
    seen: FloatArray = np.where(filled[column], visible, True).astype(np.float64)
    return seen
