"""Small previews of generated outputs, made once when an output is stored.

An image gets a thumbnail and a video a poster frame: a WebP at most `EDGE` pixels on its
long side, stored next to the output (`previewKey` in the job's output record), so that a
gallery of thousands of jobs loads small files and never decodes a video to show it.

Pillow and PyAV come with the `local` extra; without them, or for an output they cannot
read, there is no preview and the console shows the output itself. A preview never fails
the job it belongs to.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

EDGE = 480
QUALITY = 80


@dataclass(frozen=True, slots=True)
class Preview:
    data: bytes
    content_type: str = "image/webp"
    extension: str = "webp"


def _thumbnail(image: Any) -> bytes:
    from PIL import Image

    image = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    image.thumbnail((EDGE, EDGE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "WEBP", quality=QUALITY, method=4)
    return out.getvalue()


def image_preview(data: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        return _thumbnail(image)


def video_preview(data: bytes) -> bytes | None:
    """The first decodable frame of the video, as a thumbnail; None for a video without one."""
    import av
    from PIL import Image

    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.video:
            return None
        for frame in container.decode(video=0):
            return _thumbnail(Image.fromarray(frame.to_ndarray(format="rgb24")))
    return None


def make(data: bytes, content_type: str) -> Preview | None:
    family = content_type.split("/", 1)[0]
    try:
        if family == "image":
            return Preview(image_preview(data))
        if family == "video":
            poster = video_preview(data)
            return Preview(poster) if poster is not None else None
    except ImportError:
        return None
    except Exception:
        log.warning("no preview for a %s output", content_type, exc_info=True)
    return None


async def make_soon(data: bytes, content_type: str) -> Preview | None:
    """`make` off the event loop."""
    if content_type.split("/", 1)[0] not in ("image", "video"):
        return None
    return await asyncio.to_thread(make, data, content_type)
