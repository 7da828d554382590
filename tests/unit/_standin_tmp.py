"""Temporary stand-ins for imagecodec/imagegen while they are being written (not committed)."""
import io
import sys
import types

import numpy as np
from PIL import Image

from hypereal.errors import BadRequest

try:
    import hypereal.providers.local.imagecodec  # noqa: F401
except ImportError:
    m = types.ModuleType("hypereal.providers.local.imagecodec")

    def decode_image(data, mode="RGB"):
        try:
            im = Image.open(io.BytesIO(data))
            im.load()
        except Exception as e:
            raise BadRequest("bad image") from e
        return im.convert(mode)

    m.decode_image = decode_image
    sys.modules[m.__name__] = m

try:
    import hypereal.providers.local.imagegen  # noqa: F401
except ImportError:
    g = types.ModuleType("hypereal.providers.local.imagegen")

    def render_image(prompt, width, height, seed=None):
        rng = np.random.default_rng(seed if seed is not None else len(prompt))
        a = (rng.random((height // 8, width // 8, 3)) * 255).astype(np.uint8)
        return Image.fromarray(a).resize((width, height), Image.Resampling.BICUBIC)

    g.render_image = render_image
    sys.modules[g.__name__] = g
