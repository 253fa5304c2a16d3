"""Animated GIF grids of videos (rows of inputs, columns of methods) for research/README.md."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GAP = 2
HEADER = 14


def grid_gif(path: Path, columns: Sequence[str], rows: Sequence[Sequence[np.ndarray]], *, scale: int = 2,
             fps: int = 6) -> Path:  # fmt: skip
    """Write rows × columns of videos (each (T, 3, H, W) in [0, 1]) as one looping GIF with column titles."""
    length = max(video.shape[0] for row in rows for video in row)
    height, width = rows[0][0].shape[2:]
    cell_w, cell_h = width * scale, height * scale
    canvas_w = len(columns) * (cell_w + GAP) + GAP
    canvas_h = HEADER + len(rows) * (cell_h + GAP) + GAP
    font = ImageFont.load_default(size=11)
    frames = []
    for t in range(length):
        canvas = Image.new("RGB", (canvas_w, canvas_h), (24, 24, 28))
        draw = ImageDraw.Draw(canvas)
        for c, title in enumerate(columns):
            draw.text((GAP + c * (cell_w + GAP) + 2, 1), title[: cell_w // 6], fill=(230, 230, 230), font=font)
        for r, row in enumerate(rows):
            for c, video in enumerate(row):
                frame = video[min(t, video.shape[0] - 1)]
                picture = Image.fromarray((np.clip(frame, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8))
                canvas.paste(picture.resize((cell_w, cell_h), Image.NEAREST),
                             (GAP + c * (cell_w + GAP), HEADER + GAP + r * (cell_h + GAP)))  # fmt: skip
        frames.append(canvas)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0, optimize=True)
    return path


def contact_sheet(path: Path, columns: Sequence[str], rows: Sequence[Sequence[np.ndarray]], *, frames: int = 6) -> Path:
    """A still PNG: for each row and column, `frames` frames spread over the video, side by side."""
    strips = []
    for row in rows:
        cells = []
        for video in row:
            picks = np.linspace(0, video.shape[0] - 1, frames).round().astype(int)
            cells.append(np.concatenate([video[i].transpose(1, 2, 0) for i in picks], axis=1))
        strips.append(np.concatenate([np.pad(c, ((GAP, GAP), (GAP, GAP), (0, 0))) for c in cells], axis=1))
    sheet = (np.clip(np.concatenate(strips, axis=0), 0, 1) * 255).round().astype(np.uint8)
    image = Image.new("RGB", (sheet.shape[1], sheet.shape[0] + HEADER), (24, 24, 28))
    image.paste(Image.fromarray(sheet), (0, HEADER))
    draw, cell = ImageDraw.Draw(image), sheet.shape[1] // max(1, len(columns))
    for c, title in enumerate(columns):
        draw.text((c * cell + 4, 1), title, fill=(230, 230, 230), font=ImageFont.load_default(size=11))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
