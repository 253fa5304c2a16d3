"""The one small meme the tests draw: a sky, a ground and a round subject, optionally under a caption."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def meme(width: int = 160, height: int = 120, seed: int = 0, caption: str | None = None) -> bytes:
    """A PNG drawn here; another seed gives another sky, so another image and another hash."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(60, 200, 3)))
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, height * 2 // 3, width, height), fill=(70, 120, 60))
    draw.ellipse((width // 3, height // 4, width * 2 // 3, height * 3 // 4), fill=(230, 180, 40))
    if caption:
        draw.text((8, 6), caption, fill=(0, 0, 0))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    """The bytes of `im` saved as `fmt`."""
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()
