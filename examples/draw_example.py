"""Draws the bundled example meme, examples/monday-cat.png, from scratch (no outside images).

Run it again with `python examples/draw_example.py`; the output is deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

WIDTH, HEIGHT = 640, 560
HERE = Path(__file__).resolve().parent
FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A bold font: DejaVu Sans Bold where installed, Pillow's own scalable font otherwise."""
    for path in FONT_PATHS:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def scene() -> Image.Image:
    """An office at dusk: a window, a desk, a coffee mug and a very tired cat."""
    y = np.linspace(0, 1, HEIGHT)[:, None, None]
    wall = (1 - y) * np.array([92, 112, 168]) + y * np.array([48, 56, 98])
    noise = np.random.default_rng(7).normal(0, 3, (HEIGHT, WIDTH, 1))
    image = Image.fromarray(np.clip(wall + noise, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    # window with a sunset and a city skyline
    draw.rectangle((400, 110, 600, 300), fill=(250, 170, 90), outline=(40, 30, 30), width=8)
    draw.ellipse((470, 190, 540, 260), fill=(255, 225, 120))
    for i, h in enumerate((60, 95, 45, 120, 70, 85)):
        draw.rectangle((408 + i * 32, 292 - h, 436 + i * 32, 292), fill=(70, 50, 80))
    draw.line((500, 110, 500, 300), fill=(40, 30, 30), width=6)
    # desk
    draw.rectangle((0, 400, WIDTH, HEIGHT), fill=(122, 78, 44))
    draw.rectangle((0, 392, WIDTH, 408), fill=(150, 98, 58))
    # mug
    draw.rounded_rectangle((470, 330, 530, 398), radius=8, fill=(230, 230, 235), outline=(30, 30, 30), width=3)
    draw.arc((515, 345, 550, 380), 270, 90, fill=(30, 30, 30), width=6)
    for x in (485, 500, 515):
        draw.arc((x - 8, 295, x + 8, 325), 90, 270, fill=(220, 220, 230), width=3)
    # the cat: body, head, ears, half-closed eyes, whiskers
    orange, dark = (236, 146, 58), (40, 26, 20)
    draw.ellipse((120, 250, 340, 430), fill=orange, outline=dark, width=4)
    draw.polygon([(150, 150), (175, 60), (225, 130)], fill=orange, outline=dark)
    draw.polygon([(290, 130), (335, 60), (355, 155)], fill=orange, outline=dark)
    draw.ellipse((135, 100, 375, 320), fill=orange, outline=dark, width=4)
    for x in (195, 300):
        draw.ellipse((x - 30, 185, x + 30, 225), fill=(250, 250, 240), outline=dark, width=3)
        draw.ellipse((x - 10, 200, x + 10, 222), fill=dark)
        draw.rectangle((x - 32, 180, x + 32, 204), fill=(216, 126, 44))  # heavy eyelids
        draw.line((x - 32, 204, x + 32, 204), fill=dark, width=3)
    draw.polygon([(240, 240), (260, 240), (250, 252)], fill=(230, 110, 130))
    draw.arc((225, 245, 275, 285), 200, 340, fill=dark, width=3)
    for dy in (-8, 4):
        draw.line((150, 255 + dy, 210, 250 + dy // 2), fill=dark, width=2)
        draw.line((290, 250 + dy // 2, 350, 255 + dy), fill=dark, width=2)
    # paws on the desk
    draw.ellipse((150, 385, 210, 415), fill=orange, outline=dark, width=3)
    draw.ellipse((260, 385, 320, 415), fill=orange, outline=dark, width=3)
    return image.filter(ImageFilter.SMOOTH)


def caption(image: Image.Image, top: str, bottom: str) -> Image.Image:
    """Classic meme captions: white, bold, black outline, centred at the top and bottom."""
    draw = ImageDraw.Draw(image)
    for text, y in ((top, 18), (bottom, HEIGHT - 78)):
        size = 56
        while draw.textlength(text, font=font(size)) > WIDTH - 40:
            size -= 2
        face = font(size)
        x = (WIDTH - draw.textlength(text, font=face)) / 2
        draw.text((x, y), text, font=face, fill="white", stroke_width=4, stroke_fill="black")
    return image


if __name__ == "__main__":
    out = HERE / "monday-cat.png"
    caption(scene(), "ME AT 9 AM ON MONDAY", "PRETENDING TO WORK").save(out, optimize=True)
    print(f"wrote {out}")
