"""Short clips for the /remix and /lora tune tests: a GIF and an MP4 of a square sliding across a dark floor."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from engine.config import Settings, load_settings, replace

FRAMES = 8


def frames(side: int = 64) -> list[np.ndarray]:
    """The clip's RGB frames: a yellow square moving right, one step a frame."""
    out = []
    for i in range(FRAMES):
        frame = np.full((side, side, 3), (30, 30, 60), np.uint8)
        left = 4 + i * (side // 12)
        frame[side // 3 : side // 3 + side // 4, left : left + side // 4] = (250, 200, 0)
        out.append(frame)
    return out


def gif_clip() -> bytes:
    """An animated GIF of the clip, 10 frames a second."""
    images = [Image.fromarray(f) for f in frames()]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return out.getvalue()


def mp4_clip() -> bytes:
    """An H.264 MP4 of the clip, as Telegram serves a GIF."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream: Any = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for frame in frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return out.getvalue()


def make_tiny_dir(root: Path) -> Path:
    """The tiny models and configs in `root` (once per test module: they take a few seconds); one CPU thread."""
    import torch

    from engine.runtime.tiny import make_tiny

    torch.set_num_threads(1)
    torch.manual_seed(0)
    make_tiny(root)
    return root / "tiny.toml"


def tiny_settings(config: Path) -> Settings:
    """The tiny config's settings with the pipeline the bot tests share (OCR off: the clips carry no caption)."""
    return replace(load_settings(config), ocr={"backend": "none"})
