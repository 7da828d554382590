"""Time the local video and 3D models on this machine and print a table.

    python bench/local_video_3d.py [--repeat N]

Inputs are synthesised here (no files, no network): a busy 1280x853 still for the videos,
a 1024x1024 object-on-backdrop picture for the relief, and four silhouettes of a
capsule-like object for the visual hull.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from hypereal.providers.local import video
from hypereal.providers.local.relief3d import relief_glb
from hypereal.providers.local.visualhull import hull_glb


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def busy_still(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    canvas = np.dstack([np.tile(np.linspace(30, 220, width, dtype=np.float32), (height, 1))] * 3).astype(np.uint8)
    for _ in range(300):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(canvas, centre, int(rng.integers(4, 60)), colour, -1, lineType=cv2.LINE_AA)
    return png(canvas)


def object_picture(size: int) -> bytes:
    image = np.full((size, size, 3), 240, np.uint8)
    centre = (size // 2, size // 2)
    cv2.ellipse(image, centre, (size // 3, size // 4), 20, 0, 360, (180, 70, 40), -1, lineType=cv2.LINE_AA)
    cv2.circle(image, (size // 2 - size // 10, size // 2 - size // 12), size // 14, (250, 230, 150), -1)
    return png(image)


def capsule_views(size: int = 512) -> tuple[bytes, bytes, bytes, bytes]:
    def view(width: int, colour: tuple[int, int, int]) -> bytes:
        image = np.full((size, size, 3), 255, np.uint8)
        radius = width // 2
        top, bottom = size // 2 - size // 4, size // 2 + size // 4
        cv2.rectangle(image, (size // 2 - radius, top), (size // 2 + radius, bottom), colour, -1)
        cv2.circle(image, (size // 2, top), radius, colour, -1)
        cv2.circle(image, (size // 2, bottom), radius, colour, -1)
        return png(image)

    return (
        view(200, (200, 40, 40)),
        view(200, (40, 160, 40)),
        view(140, (40, 40, 200)),
        view(140, (200, 200, 40)),
    )


def measure(run: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    timings = []
    result: object = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), min(timings), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    still = busy_still(1280, 853)
    picture = object_picture(1024)
    views = capsule_views()
    five_seconds = video.VideoSpec(duration=5, fps=24, short_edge=720)

    cases: list[tuple[str, Callable[[], object], Callable[[object], str]]] = [
        (
            "i2v 5 s 720p 24 fps, push-in",
            lambda: video.video_from_image_bytes(still, "", five_seconds),
            lambda out: f"{len(out) / 1e6:.2f} MB, 120 frames" if isinstance(out, bytes) else "",
        ),
        (
            "i2v 5 s 720p 24 fps, pan+zoom",
            lambda: video.video_from_image_bytes(still, "pan left while zooming in", five_seconds),
            lambda out: f"{len(out) / 1e6:.2f} MB" if isinstance(out, bytes) else "",
        ),
        (
            "t2v 5 s 720p 24 fps 16:9",
            lambda: video.video_from_prompt("a city at night, pan right", five_seconds),
            lambda out: f"{len(out) / 1e6:.2f} MB" if isinstance(out, bytes) else "",
        ),
        (
            "relief 1024² image, grid 128",
            lambda: relief_glb(picture, depth=0.2, resolution=128),
            describe_mesh,
        ),
        (
            "relief 1024² image, grid 256",
            lambda: relief_glb(picture, depth=0.2, resolution=256),
            describe_mesh,
        ),
        ("visual hull 96³ (default)", lambda: hull_glb(*views, resolution=96), describe_mesh),
        ("visual hull 128³", lambda: hull_glb(*views, resolution=128), describe_mesh),
        ("visual hull 192³ (max)", lambda: hull_glb(*views, resolution=192), describe_mesh),
    ]

    print(f"CPU cores: {os.cpu_count()}, repeats: {args.repeat} (median and best)\n")
    print(f"{'case':34} {'median s':>9} {'best s':>8}  output")
    print("-" * 80)
    for name, run, describe in cases:
        median, best, result = measure(run, args.repeat)
        print(f"{name:34} {median:9.2f} {best:8.2f}  {describe(result)}")


def describe_mesh(result: object) -> str:
    if not isinstance(result, tuple):
        return ""
    data, stats = result
    return f"{len(data) / 1e6:.2f} MB, {stats['vertices']} vertices, {stats['faces']} faces"


if __name__ == "__main__":
    main()
