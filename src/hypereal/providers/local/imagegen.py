"""`local-image`: a deterministic procedural renderer, the offline stand-in for text-to-image.

This is not a neural model. It reads the prompt's words into a small scene description
(promptscene.py) and paints it with classical techniques in NumPy and OpenCV: sky
gradients, fractal value noise for clouds, terrain and texture, anti-aliased polygons for
ridges, trees and buildings, a mirrored and wave-displaced copy of the scene for water,
additive glows for the sun and moon. "night sky with stars" comes out as a dark starry sky,
"sunny beach" as a bright shore under a blue sky, "three red circles" as three red spheres.

Everything random is drawn from one generator seeded by the prompt and the `seed`, so the
same prompt and seed always give the same pixels (and the same encoded bytes). A request
without a seed uses 0, so it is deterministic too; another seed rearranges the scene.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from hypereal.errors import ValidationFailed
from hypereal.providers.base import InputFetcher, MediaRequest, Output, Result
from hypereal.providers.local import LocalModel
from hypereal.providers.local.imagecanvas import F32, GROUND, RAINBOW, Canvas, lerp, times
from hypereal.providers.local.imagecodec import encode_image, normalize_format, size_for
from hypereal.providers.local.imageobjects import ground_objects, studio
from hypereal.providers.local.promptscene import Color, parse_prompt

MAX_PROMPT = 2000
MAX_RENDER_EDGE = 4096


def render_image(prompt: str, *, width: int, height: int, seed: int | None = None) -> Image.Image:
    """Paint the prompt's scene at width x height (RGB). Pure and deterministic."""
    if not 8 <= width <= MAX_RENDER_EDGE or not 8 <= height <= MAX_RENDER_EDGE:
        raise ValidationFailed(f"Image size must be between 8 and {MAX_RENDER_EDGE} pixels per side.")
    canvas = Canvas(width, height, parse_prompt(prompt), _generator(prompt, seed))
    if canvas.studio:
        studio(canvas)
    else:
        _sky(canvas)
        _landscape(canvas)
        ground_objects(canvas)
    _weather(canvas)
    _finish(canvas)
    return Image.fromarray(canvas.pixels(), mode="RGB")


def generate_image(
    prompt: str,
    *,
    seed: int | None = None,
    aspect_ratio: str = "1:1",
    resolution: str | int = "1K",
    output_format: str = "png",
) -> tuple[bytes, str, str]:
    """Render and encode; returns (bytes, content type, extension)."""
    fmt = normalize_format(output_format)
    width, height = size_for(aspect_ratio, resolution)
    return encode_image(render_image(prompt, width=width, height=height, seed=seed), fmt)


def _generator(prompt: str, seed: int | None) -> np.random.Generator:
    # The prompt's digest and the seed together: another prompt with the same seed is
    # still laid out differently, and hash() is not used because it changes per process.
    digest = hashlib.sha256(prompt.strip().lower().encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence([*words, seed or 0]))


def _params(params: dict[str, Any]) -> tuple[str, int | None, str, str, str]:
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationFailed("prompt is required")
    if len(prompt) > MAX_PROMPT:
        raise ValidationFailed(f"prompt is longer than {MAX_PROMPT} characters")
    seed = params.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValidationFailed("seed must be a whole number >= 0")
    aspect_ratio = params.get("aspect_ratio") or "1:1"
    resolution = params.get("resolution") or "1K"
    output_format = params.get("output_format") or "png"
    return prompt, seed, str(aspect_ratio), str(resolution), str(output_format)


async def local_image(request: MediaRequest, fetch: InputFetcher) -> Result:
    prompt, seed, aspect_ratio, resolution, output_format = _params(request.params)
    size_for(aspect_ratio, resolution)  # validate before the thread starts
    normalize_format(output_format)
    data, content_type, extension = await asyncio.to_thread(
        generate_image,
        prompt,
        seed=seed,
        aspect_ratio=aspect_ratio,
        resolution=resolution,
        output_format=output_format,
    )
    width, height = size_for(aspect_ratio, resolution)
    return Result(
        outputs=[Output(content_type=content_type, extension=extension, data=data)],
        extra={"width": width, "height": height, "seed": seed if seed is not None else 0},
    )


# ---------------------------------------------------------------------- layers, back to front
def _smoothstep(low: float, high: float, x: F32) -> F32:
    t = np.asarray(np.clip((x - low) / (high - low), 0, 1), np.float32)
    return t * t * (3 - 2 * t)


def _sky(c: Canvas) -> None:
    top, mid, low = c.sky
    c.rgb[:] = c.column([(0.0, top), (c.horizon * 0.55, mid), (c.horizon, low), (c.h, low)])
    if c.space:
        _nebula(c)
    if c.space or c.time == "night" or "stars" in c.scene.objects:
        _stars(c)
    _sun_and_moon(c)
    if not c.space:
        _clouds(c)
    if "rainbow" in c.scene.objects:
        _rainbow(c)
    if "birds" in c.scene.objects:
        _birds(c)


def _nebula(c: Canvas) -> None:
    first = c.scene.tint[0] if c.scene.tint else (0.55, 0.2, 0.75)
    second = c.scene.tint[1] if len(c.scene.tint) > 1 else (0.15, 0.35, 0.85)
    clouds = c.noise(c.h, c.w, cells=1.5, octaves=6)
    hue = c.noise(c.h, c.w, cells=1.0, octaves=2)[..., None]
    color = np.asarray(first, np.float32) * hue + np.asarray(second, np.float32) * (1 - hue)
    c.rgb += color * (_smoothstep(0.45, 0.8, clouds) * 0.55)[..., None]


def _stars(c: Canvas) -> None:
    density = 900 if c.space else 450
    count = int(c.w * c.h / c.u**2 * density)
    ys = (c.rng.random(count) ** 1.3 * (c.horizon - 1)).astype(int)
    xs = (c.rng.random(count) * (c.w - 1)).astype(int)
    brightness = c.rng.random(count) ** 4 * 1.5 + 0.12
    layer = np.zeros((c.h, c.w), np.float32)
    np.add.at(layer, (ys, xs), brightness.astype(np.float32))
    sigma = max(0.6, c.u / 1500)
    layer = cv2.GaussianBlur(layer, (0, 0), sigma) * (2 * np.pi * sigma * sigma * 0.6)
    c.rgb += layer[..., None] * np.asarray((0.95, 0.95, 1.0), np.float32)
    for i in np.argsort(brightness)[-6:]:  # a few bright ones with a halo
        c.disk(float(xs[i]), float(ys[i]), c.u * 0.0025, (1.0, 1.0, 0.95), opacity=0.9)
        c.disk(float(xs[i]), float(ys[i]), c.u * 0.008, (0.7, 0.75, 0.9), opacity=0.15)


def _sun_and_moon(c: Canvas) -> None:
    objects, rng = c.scene.objects, c.rng
    wants_sun = "sun" in objects or c.time == "sunset" or (c.time == "day" and rng.random() < 0.7)
    if wants_sun and c.time in ("day", "sunset"):
        sx = c.w * rng.uniform(0.2, 0.8)
        if c.time == "sunset":
            sy, radius = c.horizon - c.u * rng.uniform(0.02, 0.09), c.u * 0.075
            color = c.scene.colors.get("sun", (1.0, 0.78, 0.42))
            c.glow(sx, sy, c.u * 0.55, (1.0, 0.45, 0.2), 0.45)
        else:
            sy, radius = c.horizon * rng.uniform(0.15, 0.38), c.u * 0.055
            color = c.scene.colors.get("sun", (1.3, 1.25, 1.1))  # above 1: stays white after shading
            c.glow(sx, sy, c.u * 0.4, (1.0, 0.95, 0.8), 0.3)
        c.glow(sx, sy, radius * 2.2, color, 0.5)
        c.disk(sx, sy, radius, color)
        c.sun_at = (sx, sy)
    wants_moon = "moon" in objects or (c.time == "night" and rng.random() < 0.6)
    if wants_moon and not (c.space and "moon" not in objects):
        mx, my, radius = c.w * rng.uniform(0.15, 0.85), c.horizon * rng.uniform(0.15, 0.42), c.u * 0.045
        color = c.scene.colors.get("moon", (0.95, 0.93, 0.84))
        c.glow(mx, my, radius * 5, (0.55, 0.6, 0.8), 0.22 if c.time == "night" else 0.05)
        c.disk(mx, my, radius, color)
        for _ in range(5):  # maria: darker patches on the face
            angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.6) * radius
            c.disk(
                mx + np.cos(angle) * dist,
                my + np.sin(angle) * dist,
                radius * rng.uniform(0.15, 0.3),
                times(color, (0.8, 0.8, 0.82)),
                opacity=0.5,
            )
        if c.sun_at is None:
            c.sun_at = (mx, my)


def _clouds(c: Canvas) -> None:
    asked = "clouds" in c.scene.objects
    coverage = {"overcast": 0.8, "sunset": 0.35, "day": 0.3, "night": 0.2}.get(c.time, 0.2)
    if asked:
        coverage = max(coverage, 0.55)
    elif c.rng.random() < 0.35:
        return
    band = max(1, int(c.horizon))
    density = c.noise(band, c.w, cells=4, octaves=5, stretch=3)
    threshold = 0.6 - 0.2 * coverage
    fade = (1 - 0.7 * (np.arange(band, dtype=np.float32) / band) ** 2)[:, None]
    alpha = _smoothstep(threshold, threshold + 0.14, density) * fade
    lit, shadow = {
        "day": ((1.0, 1.0, 1.0), (0.74, 0.78, 0.86)),
        "sunset": ((1.0, 0.72, 0.58), (0.45, 0.3, 0.42)),
        "night": ((0.22, 0.25, 0.34), (0.07, 0.09, 0.15)),
        "overcast": ((0.82, 0.83, 0.85), (0.48, 0.5, 0.54)),
    }[c.time]
    lit = c.scene.colors.get("clouds", lit)
    shade = np.clip((density - threshold) / 0.3, 0, 1)[..., None]
    color = np.asarray(shadow, np.float32) + (np.asarray(lit, np.float32) - np.asarray(shadow, np.float32)) * shade
    c.blend(alpha * (0.75 if c.time == "night" else 0.95), color)


def _rainbow(c: Canvas) -> None:
    cx, cy = c.w * c.rng.uniform(0.3, 0.7), c.horizon + c.u * 0.1
    radius, band = c.u * c.rng.uniform(0.45, 0.6), c.u * 0.012
    rows = max(1, int(c.horizon))
    dist = np.sqrt((c.xs - cx) ** 2 + (c.ys[:rows] - cy) ** 2)
    for i, color in enumerate(RAINBOW):
        ring = np.clip(1 - np.abs(dist - (radius - i * band)) / band, 0, 1)
        c.blend(ring * 0.45, color)


def _birds(c: Canvas) -> None:
    mask = np.zeros((c.h, c.w), np.uint8)
    for _ in range(c.count("birds", 3, 7)):
        x, y = c.w * c.rng.uniform(0.1, 0.9), c.horizon * c.rng.uniform(0.12, 0.6)
        size = c.u * c.rng.uniform(0.012, 0.028)
        wing = [
            (x - size, y - size * 0.25),
            (x - size * 0.45, y - size * 0.45),
            (x, y),
            (x + size * 0.45, y - size * 0.45),
            (x + size, y - size * 0.25),
        ]
        points = np.round(np.asarray(wing) * 16).astype(np.int32)
        cv2.polylines(mask, [points], False, 255, max(1, round(size * 0.14)), cv2.LINE_AA, shift=4)
    c.blend(mask.astype(np.float32) / 255, c.scene.colors.get("birds", (0.08, 0.08, 0.1)))


def _haze(c: Canvas, color: Color, amount: float) -> Color:
    """Aerial perspective: far things take the colour of the sky at the horizon."""
    return lerp(c.lit(color), c.sky[2], amount)


def _landscape(c: Canvas) -> None:
    terrain = c.terrain
    if c.space:
        return
    watery = "sea" in terrain or "beach" in terrain
    if "mountains" in terrain:
        _mountains(c)
    if "hills" in terrain or not terrain or (not watery and not {"desert", "city"} & set(terrain)):
        _hills(c, silhouette=not terrain)
    if "city" in terrain:
        _city(c)
    if "desert" in terrain:
        _dunes(c)
    if watery:
        if "forest" in terrain:
            _forest(c, rows=1)
        _water(c)
        if "beach" in terrain:
            _beach(c)
    elif "forest" in terrain:
        _forest(c, rows=3)


def _mountains(c: Canvas) -> None:
    base_color = c.scene.colors.get("mountains", GROUND["mountains"])
    snowy = "snow" in c.terrain or c.rng.random() < 0.5
    for k in range(3):
        base = c.horizon + c.u * 0.01 * k
        height = c.u * (0.36 - 0.09 * k) * c.rng.uniform(0.8, 1.1)
        tops = base - height * (0.2 + 0.8 * c.ridge(cells=2 + k, octaves=7))
        mask = c.profile_mask(tops)
        color = _haze(c, base_color, 0.55 - 0.22 * k)
        texture = (0.82 + 0.3 * c.texture)[..., None] * np.asarray(color, np.float32)
        c.blend(mask, texture)
        if snowy and k < 2:
            snowline = base - height * c.rng.uniform(0.72, 0.82)
            cap = _smoothstep(0.0, c.u * 0.004, snowline - c.ys + (c.texture - 0.5) * c.u * 0.04) * mask
            c.blend(cap, _haze(c, (0.95, 0.96, 1.0), 0.45 - 0.2 * k))


def _hills(c: Canvas, silhouette: bool) -> None:
    kind = next((t for t in ("snow", "field", "hills") if t in c.terrain), "field")
    base_color = c.scene.colors.get(kind, c.scene.colors.get("hills", GROUND[kind]))
    if silhouette:  # a sky picture: only a dark line of hills at the bottom
        base_color = times(base_color, (0.35, 0.35, 0.35))
    depth = c.h - c.horizon
    for k in range(3):
        tops = c.horizon + depth * 0.22 * k - c.u * (0.06 - 0.015 * k) * c.ridge(cells=2 + k, octaves=4, smooth=True)
        color = _haze(c, base_color, 0.4 - 0.18 * k) if not silhouette else c.lit(base_color)
        shading = c.column([(c.horizon, (0.92, 0.92, 0.92)), (c.h, (1.08, 1.08, 1.08))])
        texture = (0.86 + 0.22 * c.texture)[..., None] * shading * np.asarray(color, np.float32)
        c.blend(c.profile_mask(tops), texture)


def _city(c: Canvas) -> None:
    night = c.time == "night"
    base_color = c.scene.colors.get("city", (0.42, 0.44, 0.5))
    c.blend(c.profile_mask(np.full(c.w, c.horizon)), c.lit(GROUND["city"]))
    for k in range(2):
        x = -c.rng.uniform(0, c.u * 0.05)
        while x < c.w:
            width = c.u * c.rng.uniform(0.045, 0.11) * (1 + 0.4 * k)
            height = c.u * c.rng.uniform(0.08, 0.34) * (0.8 + 0.35 * k)
            shade = c.rng.uniform(0.7, 1.2)
            color = (0.05, 0.06, 0.09) if night else _haze(c, times(base_color, (shade, shade, shade)), 0.35 - 0.2 * k)
            x0, x1, y1 = max(0, int(x)), min(c.w, int(x + width)), int(c.horizon + c.u * 0.005)
            y0 = max(0, int(c.horizon - height))
            if x1 > x0 and y1 > y0:
                c.rgb[y0:y1, x0:x1] = color
                _windows(c, x0, y0, x1, y1, night)
            x += width * c.rng.uniform(0.85, 1.15)


def _windows(c: Canvas, x0: int, y0: int, x1: int, y1: int, night: bool) -> None:
    pitch = max(3, int(c.u * 0.012))
    rows, cols = (y1 - y0 - pitch) // pitch, (x1 - x0 - pitch) // pitch
    if rows < 1 or cols < 1:
        return
    lit = c.rng.random((rows, cols)) < (0.45 if night else 0.8)
    cell = np.zeros((pitch, pitch), np.float32)
    cell[: pitch // 2 + 1, : pitch // 2 + 1] = 1
    mask = np.kron(lit.astype(np.float32), cell)
    color: Color = (1.0, 0.84, 0.5) if night else c.lit((0.62, 0.74, 0.86))
    c.blend(mask * (0.95 if night else 0.5), color, y0 + pitch // 2, x0 + pitch // 2)


def _dunes(c: Canvas) -> None:
    base_color = c.scene.colors.get("desert", GROUND["desert"])
    depth = c.h - c.horizon
    for k in range(4):
        profile = c.ridge(cells=1 + k, octaves=3, smooth=True)
        tops = c.horizon + depth * 0.2 * k - c.u * (0.08 - 0.012 * k) * profile
        # Lit and shaded flanks near each crest, fading into flat sand further down.
        slope = np.gradient(tops).astype(np.float32)[None, :]
        below_crest = np.clip((c.ys - tops[None, :].astype(np.float32)) / (c.u * 0.08), 0, 1)
        light = (1 + 0.28 * np.tanh(slope * 4) * (1 - below_crest))[..., None]
        color = np.asarray(_haze(c, base_color, 0.35 - 0.1 * k), np.float32) * light
        c.blend(c.profile_mask(tops), np.clip(color * (0.92 + 0.12 * c.texture)[..., None], 0, 1))


def _tree_polygons(c: Canvas, x: float, base: float, height: float) -> list[npt.NDArray[np.float64]]:
    width = height * 0.42
    polys = [
        np.array(
            [
                [x - width * 0.06, base],
                [x + width * 0.06, base],
                [x + width * 0.06, base - height * 0.2],
                [x - width * 0.06, base - height * 0.2],
            ]
        )
    ]
    for tier in range(3):
        bottom = base - height * (0.15 + 0.25 * tier)
        half = width * (0.5 - 0.12 * tier)
        polys.append(np.array([[x - half, bottom], [x + half, bottom], [x, bottom - height * 0.45]]))
    return polys


def _forest(c: Canvas, rows: int) -> None:
    base_color = c.scene.colors.get("forest", c.scene.colors.get("trees", GROUND["forest"]))
    depth = c.h - c.horizon
    for k in range(rows):
        base = c.horizon + depth * 0.3 * k + c.u * 0.01
        height = c.u * (0.09 + 0.11 * k)
        polys: list[npt.NDArray[np.float64]] = []
        x = -c.rng.uniform(0, height * 0.3)
        while x < c.w + height * 0.3:
            size = height * c.rng.uniform(0.75, 1.25)
            polys += _tree_polygons(c, x, base + c.rng.uniform(0, c.u * 0.02), size)
            x += size * c.rng.uniform(0.22, 0.4)
        color = _haze(c, base_color, 0.45 - 0.2 * k)
        if "snow" in c.terrain:
            color = lerp(color, c.lit((0.9, 0.93, 0.98)), 0.3)
        c.blend(c.polygons(polys), np.asarray(color, np.float32) * (0.85 + 0.25 * c.texture)[..., None])


def _water(c: Canvas) -> None:
    top = int(c.horizon)
    rows = c.h - top
    if rows <= 0:
        return
    depth = (np.arange(rows, dtype=np.float32) / rows)[:, None]
    ripples = c.noise(rows, c.w, cells=10, octaves=3, stretch=6)
    map_x = c.xs + (ripples - 0.5) * c.u * 0.05 * (0.2 + depth)
    map_y = np.clip(2 * c.horizon - (top + np.arange(rows, dtype=np.float32))[:, None] - 1, 0, c.horizon - 1)
    map_y = np.broadcast_to(map_y, (rows, c.w)).astype(np.float32)
    mirror = cv2.remap(c.rgb, map_x.astype(np.float32), map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    water_color = np.asarray(c.lit(c.scene.colors.get("sea", GROUND["sea"])), np.float32)
    reflectivity = 0.75 - 0.4 * depth
    water = mirror * reflectivity[..., None] + water_color * (1 - reflectivity)[..., None] * 0.9
    crest = _smoothstep(0.6, 0.75, ripples)[..., None]
    water += crest * np.asarray(c.sky[2], np.float32) * 0.12
    if c.sun_at is not None:
        spread = c.u * (0.015 + 0.12 * depth)
        path = np.exp(-(((c.xs - c.sun_at[0]) / spread) ** 2))
        sparkle = _smoothstep(0.55, 0.7, ripples) * path
        tone = (1.0, 0.85, 0.6) if c.time == "sunset" else (1.0, 1.0, 0.95)
        water += sparkle[..., None] * np.asarray(tone, np.float32) * (0.35 if c.time == "night" else 0.8)
    c.rgb[top:] = water


def _beach(c: Canvas) -> None:
    depth = c.h - c.horizon
    shore = c.horizon + depth * c.rng.uniform(0.4, 0.6)
    edge = shore + c.u * 0.03 * (c.ridge(cells=3, octaves=3, smooth=True) - 0.5)
    sand = c.scene.colors.get("beach", GROUND["beach"])
    shading = c.column([(shore, (0.95, 0.95, 0.95)), (c.h, (1.05, 1.05, 1.05))])
    c.blend(c.profile_mask(edge), np.asarray(c.lit(sand), np.float32) * shading * (0.93 + 0.1 * c.texture)[..., None])
    foam = np.clip(1 - np.abs(c.ys - edge[None, :].astype(np.float32) + c.u * 0.004) / (c.u * 0.005), 0, 1)
    c.blend(foam * 0.8, c.lit((0.96, 0.97, 0.98)))


# ---------------------------------------------------------------------- weather and finish
def _weather(c: Canvas) -> None:
    weather = c.scene.weather
    if "fog" in weather:
        band = np.exp(-(((c.ys - c.horizon) / (c.h * 0.3)) ** 2))
        c.blend(band * (0.45 + 0.3 * c.texture), c.sky[2])
    if "rain" in weather:
        _streaks(c, count=int(c.w * c.h / c.u**2 * 700), length=c.u * 0.035, color=(0.75, 0.78, 0.85), opacity=0.35)
    if "snowfall" in weather or ("snow" in c.terrain and c.rng.random() < 0.5):
        mask = np.zeros((c.h, c.w), np.uint8)
        for _ in range(int(c.w * c.h / c.u**2 * 500)):
            center = (int(c.rng.random() * c.w), int(c.rng.random() * c.h))
            cv2.circle(mask, center, max(1, int(c.u * c.rng.uniform(0.001, 0.004))), 255, -1, cv2.LINE_AA)
        c.blend(mask.astype(np.float32) / 255 * 0.85, (0.97, 0.97, 1.0))


def _streaks(c: Canvas, count: int, length: float, color: Color, opacity: float) -> None:
    mask = np.zeros((c.h, c.w), np.uint8)
    starts = c.rng.random((count, 2)) * (c.w, c.h)
    for x, y in starts:
        cv2.line(mask, (int(x), int(y)), (int(x - length * 0.2), int(y + length)), 255, 1, cv2.LINE_AA)
    c.blend(mask.astype(np.float32) / 255 * opacity, color)


def _finish(c: Canvas) -> None:
    dx = (c.xs - c.w / 2) / (c.w / 2)
    dy = (c.ys - c.h / 2) / (c.h / 2)
    c.rgb *= (1 - 0.18 * (dx * dx + dy * dy) / 2)[..., None]
    c.rgb += c.rng.standard_normal((c.h, c.w, 1), dtype=np.float32) * 0.01


MODELS: dict[str, LocalModel] = {"local-image": local_image}
