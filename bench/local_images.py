"""Time the local image and image-edit models on this machine and print a table.

    python bench/local_images.py [--repeat N]

Inputs are rendered here by `local-image` itself (no files, no network). Each row is the
median of N runs of the pure function, encoding included where a model encodes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from hypereal.providers.local.imagecodec import encode_image
from hypereal.providers.local.imageedit import box_mask, inpaint, outpaint, remove_background, stylize, upscale
from hypereal.providers.local.imagegen import generate_image, render_image


def subject_picture(size: int) -> Image.Image:
    """A studio shot: something to cut out of a plain backdrop."""
    return render_image("three red circles and a blue square", width=size, height=size, seed=1)


def timed(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    scene = "a city by the sea at sunset with boats and clouds"
    photo_512 = render_image(scene, width=512, height=512, seed=0)
    photo_1k = render_image(scene, width=1024, height=1024, seed=0)
    subject_1k = subject_picture(1024)
    blot = np.zeros((1024, 1024), np.uint8)
    blot[450:550, 400:520] = 255

    cases: list[tuple[str, str, Callable[[], object]]] = [
        ("local-image", "1024x1024 png", lambda: generate_image(scene, resolution="1K")),
        ("local-image", "1024x576 jpeg", lambda: generate_image(scene, aspect_ratio="16:9", output_format="jpeg")),
        ("local-image", "2048x2048 png", lambda: generate_image(scene, resolution="2K")),
        ("local-image", "render only 1024x1024", lambda: render_image(scene, width=1024, height=1024)),
        ("(encode)", "1024x1024 png", lambda: encode_image(photo_1k, "png")),
        ("(encode)", "1024x1024 webp", lambda: encode_image(photo_1k, "webp")),
        ("local-upscale", "512 -> 1024 (2x)", lambda: upscale(photo_512, 2)),
        ("local-upscale", "512 -> 2048 (4x)", lambda: upscale(photo_512, 4)),
        ("local-upscale", "1024 -> 2048 (2x)", lambda: upscale(photo_1k, 2)),
        ("local-remove-background", "1024x1024", lambda: remove_background(subject_1k)),
        ("local-inpaint", "1024x1024, 120x100 blot, telea", lambda: inpaint(photo_1k, blot, "telea")),
        ("local-inpaint", "1024x1024, 120x100 blot, ns", lambda: inpaint(photo_1k, blot, "ns")),
        (
            "local-inpaint",
            "1024x1024, 400x300 box, telea",
            lambda: inpaint(photo_1k, box_mask(1024, 1024, [300, 300, 400, 300])),
        ),
        ("local-outpaint", "1024x1024 -> 16:9", lambda: outpaint(photo_1k, "16:9")),
        ("local-outpaint", "1024x1024 -> 9:16", lambda: outpaint(photo_1k, "9:16")),
    ]
    for style in ("stylize", "pencil-sketch", "color-pencil", "edge-preserving", "detail-enhance", "cartoon", "sepia"):
        cases.append(("local-stylize", f"1024x1024 {style}", lambda style=style: stylize(photo_1k, style)))

    print(f"{os.cpu_count()} CPUs; median (min) of {args.repeat} runs\n")
    print(f"{'model':<26}{'case':<34}{'median s':>10}{'min s':>9}")
    print("-" * 79)
    for model, case, run in cases:
        median, fastest = timed(run, args.repeat)
        print(f"{model:<26}{case:<34}{median:>10.3f}{fastest:>9.3f}")


if __name__ == "__main__":
    main()
