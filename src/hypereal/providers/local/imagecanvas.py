"""The canvas of `local-image`: the scene's layout and palette, and the drawing primitives.

Colours are floats in 0..1 (sRGB); sizes are fractions of the short edge `u`, so every
aspect ratio composes the same way. The layers themselves are painted by imagegen.py.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from hypereal.providers.local.promptscene import SHAPES, Color, Scene

F32 = npt.NDArray[np.float32]
Floats = npt.NDArray[np.floating[Any]]

# time of day -> (sky top, sky middle, sky at the horizon, light on surfaces)
SKIES: dict[str, tuple[Color, Color, Color, Color]] = {
    "day": ((0.2, 0.45, 0.86), (0.45, 0.68, 0.95), (0.78, 0.89, 0.98), (1.0, 1.0, 0.97)),
    "sunset": ((0.16, 0.14, 0.4), (0.86, 0.4, 0.38), (1.0, 0.74, 0.4), (0.9, 0.66, 0.52)),
    "night": ((0.0, 0.01, 0.05), (0.02, 0.04, 0.12), (0.06, 0.09, 0.2), (0.2, 0.24, 0.4)),
    "overcast": ((0.42, 0.45, 0.5), (0.58, 0.6, 0.64), (0.72, 0.74, 0.76), (0.72, 0.74, 0.78)),
    "space": ((0.0, 0.0, 0.02), (0.01, 0.0, 0.04), (0.03, 0.01, 0.07), (0.5, 0.5, 0.6)),
}
# fmt: off
GROUND: dict[str, Color] = {
    "field": (0.3, 0.58, 0.2), "hills": (0.36, 0.55, 0.24), "snow": (0.9, 0.93, 0.98),
    "desert": (0.88, 0.7, 0.45), "city": (0.3, 0.3, 0.33), "forest": (0.18, 0.36, 0.16),
    "beach": (0.93, 0.84, 0.64), "sea": (0.1, 0.32, 0.5), "mountains": (0.38, 0.4, 0.48),
}
SHAPE_COLORS: list[Color] = [
    (0.9, 0.3, 0.25), (0.2, 0.5, 0.9), (0.98, 0.78, 0.2), (0.3, 0.72, 0.4), (0.6, 0.35, 0.8), (0.1, 0.7, 0.7),
]
RAINBOW: list[Color] = [
    (0.9, 0.1, 0.1), (1.0, 0.5, 0.0), (1.0, 0.9, 0.1), (0.2, 0.8, 0.2), (0.1, 0.4, 1.0), (0.3, 0.1, 0.6),
    (0.55, 0.2, 0.8),
]
# fmt: on


def lerp(a: Color, b: Color, t: float) -> Color:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def times(a: Color, b: Color) -> Color:
    return (a[0] * b[0], a[1] * b[1], a[2] * b[2])


class Canvas:
    def __init__(self, width: int, height: int, scene: Scene, rng: np.random.Generator) -> None:
        self.w, self.h, self.u = width, height, min(width, height)
        self.scene, self.rng = scene, rng
        self.rgb: F32 = np.zeros((height, width, 3), np.float32)
        self.terrain, time = list(scene.terrain), scene.time
        if not scene.recognised:
            # Nothing we know: still a pleasant landscape, chosen by the prompt's digest.
            self.terrain = [str(rng.choice(["field", "hills", "sea", "mountains", "desert"]))]
            time = str(rng.choice(["day", "day", "sunset"]))
        self.space = "space" in self.terrain
        self.time = "space" if self.space else time or "day"
        self.studio = not self.terrain and any(s in scene.objects for s in SHAPES) and "sky" not in scene.objects
        if self.space:
            self.horizon = float(height)
        else:
            self.horizon = height * (rng.uniform(0.56, 0.68) if self.terrain else 0.84)
        top, mid, low, self.light = SKIES[self.time]
        for tint in scene.tint + ([scene.colors["sky"]] if "sky" in scene.colors else []):
            weight = 0.2 if self.time in ("night", "space") else 0.4
            tint = times(tint, (0.35, 0.35, 0.35)) if self.time in ("night", "space") else tint
            top, mid, low = lerp(top, tint, weight), lerp(mid, tint, weight), lerp(low, tint, weight * 0.8)
        self.sky = (top, mid, low)
        self.ys = np.arange(height, dtype=np.float32)[:, None]
        self.xs = np.arange(width, dtype=np.float32)[None, :]
        self.sun_at: tuple[float, float] | None = None
        self.texture = self.noise(height, width, cells=20, octaves=3)

    # ------------------------------------------------------------------ primitives
    def column(self, stops: list[tuple[float, Color]]) -> F32:
        """A vertical gradient through (y, colour) stops, as an (h, 1, 3) array."""
        ys = self.ys[:, 0]
        positions = [y for y, _ in stops]
        channels = [np.interp(ys, positions, [c[k] for _, c in stops]) for k in range(3)]
        return np.stack(channels, axis=-1).astype(np.float32)[:, None, :]

    def blend(self, mask: Floats, color: Color | Floats, y0: int = 0, x0: int = 0) -> None:
        region = self.rgb[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]]
        region += (np.asarray(color, np.float32) - region) * mask[..., None]

    def lit(self, color: Color) -> Color:
        return times(color, self.light)

    def polygons(self, polys: list[npt.NDArray[np.float64]]) -> F32:
        mask = np.zeros((self.h, self.w), np.uint8)
        if polys:
            points = [np.round(p * 16).astype(np.int32) for p in polys]
            cv2.fillPoly(mask, points, 255, lineType=cv2.LINE_AA, shift=4)
        return mask.astype(np.float32) / 255.0

    def disk(self, cx: float, cy: float, r: float, color: Color, opacity: float = 1.0, shaded: bool = False) -> None:
        x0, x1 = max(0, int(cx - r - 2)), min(self.w, int(cx + r + 3))
        y0, y1 = max(0, int(cy - r - 2)), min(self.h, int(cy + r + 3))
        if x0 >= x1 or y0 >= y1:
            return
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        dist = np.sqrt(xx * xx + yy * yy)
        mask = np.clip(r - dist + 0.5, 0, 1) * opacity
        if shaded:  # a sphere lit from the upper left
            light = np.clip(1.0 - np.sqrt((xx + r * 0.35) ** 2 + (yy + r * 0.4) ** 2) / (r * 1.6), 0, 1)
            base = np.asarray(color, np.float32)
            shade = base * (0.35 + 0.75 * light[..., None]) + 0.35 * light[..., None] ** 6
            self.blend(mask, np.clip(shade, 0, 1).astype(np.float32), y0, x0)
        else:
            self.blend(mask, color, y0, x0)

    def glow(self, cx: float, cy: float, radius: float, color: Color, strength: float) -> None:
        dist2 = (self.xs - cx) ** 2 + (self.ys - cy) ** 2
        self.rgb += np.exp(-dist2 / (radius * radius))[..., None] * (np.asarray(color, np.float32) * strength)

    def noise(self, h: int, w: int, cells: float, octaves: int = 4, stretch: float = 1.0) -> F32:
        """Fractal value noise in 0..1: random grids upsampled with cubic interpolation."""
        total = np.zeros((h, w), np.float32)
        amplitude, weight = 1.0, 0.0
        for octave in range(octaves):
            scale = cells * 2**octave
            grid_w, grid_h = max(2, round(scale * w / self.u / stretch)) + 1, max(2, round(scale * h / self.u)) + 1
            grid = self.rng.random((grid_h, grid_w), dtype=np.float32)
            total += cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC) * amplitude
            weight += amplitude
            amplitude *= 0.5
        return np.asarray(np.clip(total / weight, 0, 1), np.float32)

    def ridge(self, cells: int, octaves: int = 5, smooth: bool = False) -> npt.NDArray[np.float64]:
        """A 1-D fractal profile across the width in 0..1 (linear pieces: craggy; cosine: rolling)."""
        x = np.linspace(0, 1, self.w)
        total = np.zeros(self.w)
        amplitude = 1.0
        for octave in range(octaves):
            count = cells * 2**octave
            knots = self.rng.random(count + 1)
            pos = x * count
            if smooth:
                i = np.minimum(pos.astype(int), count - 1)
                t = (1 - np.cos((pos - i) * math.pi)) / 2
                total += (knots[i] * (1 - t) + knots[i + 1] * t) * amplitude
            else:
                total += np.interp(pos, np.arange(count + 1), knots) * amplitude
            amplitude *= 0.5
        total -= total.min()
        return np.asarray(total / max(float(total.max()), 1e-6), np.float64)

    def profile_mask(self, tops: npt.NDArray[np.float64]) -> F32:
        """Everything below the line y = tops[x], anti-aliased along the line."""
        return np.asarray(np.clip(self.ys - tops[None, :].astype(np.float32) + 0.5, 0, 1), np.float32)

    def shape_color(self, noun: str, index: int) -> Color:
        if noun in self.scene.colors:
            return self.scene.colors[noun]
        if self.scene.tint:
            return self.scene.tint[index % len(self.scene.tint)]
        return SHAPE_COLORS[int(self.rng.integers(len(SHAPE_COLORS)))]

    def count(self, noun: str, default_low: int, default_high: int) -> int:
        asked = self.scene.objects.get(noun, 0)
        return asked if asked > 0 else int(self.rng.integers(default_low, default_high + 1))

    def pixels(self) -> npt.NDArray[np.uint8]:
        return np.round(np.clip(self.rgb, 0, 1) * 255).astype(np.uint8)
