"""The objects of a `local-image` scene: trees, houses, boats, flowers and simple shapes.

Objects stand on the ground in front of the landscape, spread across the width; shapes
(circles, squares, triangles) get a soft contact shadow and simple shading so they read as
solids. A prompt made only of shapes ("three red circles") is set in a plain studio with a
floor instead of a landscape; in space, circles become planets.
"""

from __future__ import annotations

import cv2
import numpy as np

from hypereal.providers.local.imagecanvas import Canvas, lerp, times
from hypereal.providers.local.promptscene import SHAPES, Color


def _slots(c: Canvas, count: int, low: float, high: float) -> list[tuple[float, float]]:
    """Spread `count` spots across the width, between heights low and high (fractions)."""
    spots = []
    for i in range(count):
        x = c.w * (i + 0.5 + c.rng.uniform(-0.25, 0.25)) / count
        spots.append((x, c.h * c.rng.uniform(low, high)))
    return spots


def ground_objects(c: Canvas) -> None:
    objects = c.scene.objects
    ground_top = c.horizon / c.h + 0.08
    if c.space:
        for i, (x, y) in enumerate(_slots(c, c.count("circles", 1, 2), 0.25, 0.75)):
            c.disk(x, y, c.u * c.rng.uniform(0.08, 0.2), c.shape_color("circles", i), shaded=True)
        return
    if "boats" in objects and ("sea" in c.terrain or "beach" in c.terrain):
        for x, y in _slots(c, c.count("boats", 1, 3), ground_top, ground_top + 0.1):
            _boat(c, x, y, c.u * c.rng.uniform(0.05, 0.09))
    if "flowers" in objects:
        _flowers(c)
    layout = [("trees", _deciduous), ("houses", _house)] + [(s, _shape) for s in SHAPES]
    for noun, draw in layout:
        if noun in objects and not (noun == "trees" and "forest" in c.terrain):
            count = c.count(noun, 1, 3)
            for i, (x, y) in enumerate(_slots(c, count, max(ground_top + 0.1, 0.72), 0.9)):
                draw(c, noun, i, x, y, c.u * c.rng.uniform(0.1, 0.16) * min(1.0, 3.5 / count))


def _deciduous(c: Canvas, noun: str, index: int, x: float, base: float, size: float) -> None:
    trunk = np.array(
        [
            [x - size * 0.08, base],
            [x + size * 0.08, base],
            [x + size * 0.06, base - size * 1.2],
            [x - size * 0.06, base - size * 1.2],
        ]
    )
    c.blend(c.polygons([trunk]), c.lit((0.35, 0.22, 0.12)))
    color = c.lit(c.shape_color("trees", index) if "trees" in c.scene.colors or c.scene.tint else (0.2, 0.5, 0.2))
    for dx, dy, r in ((0, -1.55, 0.62), (-0.42, -1.2, 0.45), (0.42, -1.2, 0.45), (0, -1.1, 0.5)):
        c.disk(x + dx * size, base + dy * size, r * size, color, shaded=True)


def _house(c: Canvas, noun: str, index: int, x: float, base: float, size: float) -> None:
    wall = c.lit(c.shape_color("houses", index) if "houses" in c.scene.colors else (0.86, 0.8, 0.68))
    body = np.array([[x - size, base], [x + size, base], [x + size, base - size * 1.2], [x - size, base - size * 1.2]])
    roof = np.array([[x - size * 1.2, base - size * 1.15], [x + size * 1.2, base - size * 1.15], [x, base - size * 2]])
    door = np.array(
        [
            [x - size * 0.2, base],
            [x + size * 0.2, base],
            [x + size * 0.2, base - size * 0.65],
            [x - size * 0.2, base - size * 0.65],
        ]
    )
    c.blend(c.polygons([body]), wall)
    c.blend(c.polygons([roof]), c.lit((0.55, 0.18, 0.14)))
    c.blend(c.polygons([door]), c.lit((0.3, 0.18, 0.1)))
    glow: Color = (1.0, 0.85, 0.5) if c.time == "night" else c.lit((0.6, 0.78, 0.92))
    for side in (-1, 1):
        cx = x + side * size * 0.6
        window = np.array(
            [
                [cx - size * 0.18, base - size * 0.55],
                [cx + size * 0.18, base - size * 0.55],
                [cx + size * 0.18, base - size * 0.9],
                [cx - size * 0.18, base - size * 0.9],
            ]
        )
        c.blend(c.polygons([window]), glow)


def _shape(c: Canvas, noun: str, index: int, x: float, base: float, size: float) -> None:
    sandstone = noun == "triangles" and "desert" in c.terrain and noun not in c.scene.colors
    color = c.lit((0.82, 0.66, 0.42) if sandstone else c.shape_color(noun, index))
    _shadow(c, x, base, size)
    if noun == "circles":
        c.disk(x, base - size, size, color, shaded=True)
    elif noun == "squares":
        top = base - 2 * size
        square = np.array([[x - size, base], [x + size, base], [x + size, top], [x - size, top]])
        gradient = c.column([(top, times(color, (1.15, 1.15, 1.15))), (base, times(color, (0.8, 0.8, 0.8)))])
        c.blend(c.polygons([square]), np.clip(np.broadcast_to(gradient, c.rgb.shape), 0, 1))
    else:  # a pyramid: lit left face, shaded right face
        apex = (x, base - 2 * size)
        c.blend(c.polygons([np.array([[x - size * 1.1, base], [x, base], apex])]), times(color, (1.05, 1.05, 1.05)))
        c.blend(c.polygons([np.array([[x, base], [x + size * 1.1, base], apex])]), times(color, (0.72, 0.72, 0.72)))


def _shadow(c: Canvas, x: float, base: float, size: float) -> None:
    mask = np.zeros((c.h, c.w), np.uint8)
    cv2.ellipse(
        mask,
        (round(x + size * 0.25), round(base)),
        (max(1, round(size * 1.1)), max(1, round(size * 0.22))),
        0,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
    )
    blurred = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), max(1.0, size * 0.12))
    c.blend(blurred * 0.45, (0.0, 0.0, 0.0))


def _boat(c: Canvas, x: float, y: float, size: float) -> None:
    hull = np.array(
        [
            [x - size, y - size * 0.2],
            [x + size, y - size * 0.2],
            [x + size * 0.7, y + size * 0.12],
            [x - size * 0.7, y + size * 0.12],
        ]
    )
    mast = x - size * 0.05
    sail = np.array([[mast, y - size * 0.3], [x + size * 0.75, y - size * 0.3], [mast, y - size * 1.6]])
    c.blend(c.polygons([hull]), c.lit(c.scene.colors.get("boats", (0.45, 0.22, 0.12))))
    c.blend(c.polygons([sail]), c.lit((0.97, 0.96, 0.92)))


def _flowers(c: Canvas) -> None:
    count = c.count("flowers", 20, 40) * (4 if c.scene.objects.get("flowers", 0) < 4 else 1)
    for i in range(count):
        y = c.h * c.rng.uniform(max(c.horizon / c.h + 0.12, 0.75), 0.98)
        size = c.u * 0.006 * (1 + 2 * (y / c.h - 0.7))
        c.disk(c.w * c.rng.random(), y, size, c.lit(c.shape_color("flowers", i)))


def studio(c: Canvas) -> None:
    backdrop = c.scene.colors.get("sky") or (
        lerp(c.scene.tint[0], (0.95, 0.95, 0.95), 0.55) if c.scene.tint else (0.88, 0.87, 0.85)
    )
    floor = c.h * 0.7
    c.rgb[:] = c.column(
        [
            (0, backdrop),
            (floor, times(backdrop, (0.82, 0.82, 0.82))),
            (floor + 1, times(backdrop, (0.7, 0.7, 0.7))),
            (c.h, times(backdrop, (0.88, 0.88, 0.88))),
        ]
    )
    shapes = [(noun, i) for noun in SHAPES if noun in c.scene.objects for i in range(c.count(noun, 1, 3))]
    size = min(c.u * 0.16, c.w * 0.4 / max(1, len(shapes)))
    for slot, (noun, i) in enumerate(shapes):
        x = c.w * (slot + 0.5) / len(shapes) + c.rng.uniform(-0.1, 0.1) * size
        _shape(c, noun, i, x, floor + c.h * c.rng.uniform(0.04, 0.2), size)
