"""Stage 1 before and while decoding: Intake.inspect, every frame's size, and the memory a decode takes."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin, WebPImagePlugin

from engine.config import IntakeSettings
from engine.errors import UserError
from engine.stages.intake import Intake
from engine.types import ImageHeader
from tests.support.memes import encode

REPO = Path(__file__).resolve().parents[2]
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def animation(fmt: str, size: tuple[int, int] = (64, 64)) -> bytes:
    """Three whole frames, red, blue and white, as an animated GIF, PNG (APNG) or WebP."""
    frames = [Image.new("RGB", size, colour) for colour in (RED, BLUE, WHITE)]
    params = {"lossless": True} if fmt == "WEBP" else {}
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=40, **params)


def refusal(call: Callable[[bytes], object], data: bytes) -> tuple[str, str]:
    """(code, message) of the UserError `call` raises for `data`."""
    with pytest.raises(UserError) as caught:
        call(data)
    return caught.value.code, caught.value.message


# --- every frame's size ----------------------------------------------------------------------------


def with_last_frame(fmt: str, width: int, height: int, x: int = 0, y: int = 0) -> bytes:
    """A 64×64 animation whose last frame's header is rewritten to say `width`×`height` at (x, y)."""
    data = bytearray(animation(fmt))
    if fmt == "GIF":  # the image descriptor: ",", x, y, width, height (16-bit little-endian)
        at = data.rindex(b",\x00\x00\x00\x00@\x00@\x00")
        data[at + 1 : at + 9] = struct.pack("<HHHH", x, y, width, height)
    elif fmt == "PNG":  # fcTL: sequence, width, height, x, y (32-bit big-endian), then the chunk's CRC
        at = data.rindex(b"fcTL")
        data[at + 8 : at + 24] = struct.pack(">IIII", width, height, x, y)
        data[at + 30 : at + 34] = struct.pack(">I", zlib.crc32(data[at : at + 30]))
    else:  # ANMF: x/2, y/2, width-1, height-1 (24-bit little-endian)
        at = data.rindex(b"ANMF") + 8
        for offset, value in ((0, x // 2), (3, y // 2), (6, width - 1), (9, height - 1)):
            data[at + offset : at + offset + 3] = value.to_bytes(3, "little")
    return bytes(data)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_a_frame_larger_than_the_canvas_is_refused_by_its_own_size(intake: Intake, fmt: str) -> None:
    data = with_last_frame(fmt, 65535 if fmt == "GIF" else 10000, 65535 if fmt == "GIF" else 10000)
    size = "65535×65535" if fmt == "GIF" else "10000×10000"
    for call in (intake.inspect, intake):  # the canvas is 64×64, and the first frame is fine
        assert refusal(call, data) == (
            "too_many_pixels",
            f"That image is too large to process ({size} pixels; the limit is 40 megapixels).",
        )


def test_a_gif_frame_placed_off_the_screen_counts_the_canvas_it_needs(intake: Intake) -> None:
    header = intake.inspect(with_last_frame("GIF", 64, 64, x=3000, y=1000))
    assert (header.width, header.height, header.frames) == (3064, 1064, 3)  # Pillow widens the canvas to it
    assert intake(with_last_frame("GIF", 64, 64, x=3000, y=1000)).pixels.shape == (64, 64, 3)  # frame 0 only
    message = refusal(intake.inspect, with_last_frame("GIF", 64, 64, x=60000, y=60000))[1]
    assert "(60064×60064 pixels;" in message


# --- inspect ---------------------------------------------------------------------------------------


@pytest.fixture
def nothing_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to decode pixels fails the test."""

    def refuse(*_: object) -> None:
        raise AssertionError("inspect decoded pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", refuse)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: encode(Image.new("RGB", (120, 80)), "PNG"), ("PNG", 120, 80, 1)),
        (lambda: encode(Image.new("RGB", (200, 90)), "JPEG"), ("JPEG", 200, 90, 1)),
        (lambda: encode(Image.new("RGB", (70, 50)), "BMP"), ("BMP", 70, 50, 1)),
        (lambda: encode(Image.new("RGBA", (90, 60)), "WEBP"), ("WEBP", 90, 60, 1)),
        (lambda: animation("GIF", (100, 60)), ("GIF", 100, 60, 3)),
        (lambda: animation("PNG", (100, 60)), ("PNG", 100, 60, 3)),
        (lambda: animation("WEBP", (100, 60)), ("WEBP", 100, 60, 3)),
        (lambda: encode(Image.new("I;16", (64, 48)), "PNG"), ("PNG", 64, 48, 1)),
    ],
    ids=["png", "jpeg", "bmp", "webp", "gif", "apng", "animated-webp", "png16"],
)
def test_inspect_reads_the_header_only(
    intake: Intake, nothing_decodes: None, make: Callable[[], bytes], expected: tuple
) -> None:
    header = intake.inspect(make())
    assert isinstance(header, ImageHeader)
    assert (header.format, header.width, header.height, header.frames) == expected
    assert header.width * header.height < header.decode_bytes < 64 << 20


def test_inspect_refuses_exactly_what_the_decode_refuses(intake: Intake, settings: IntakeSettings) -> None:
    gif = bytearray(encode(Image.new("RGB", (40, 40)), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)
    png = bytearray(encode(Image.new("RGB", (64, 64)), "PNG"))
    png[-20] ^= 0xFF
    cases = {
        "empty": b"",
        "pdf": b"%PDF-1.7\n1 0 obj << >> endobj\n",
        "tiff": encode(Image.new("RGB", (64, 64)), "TIFF"),
        "forged gif": bytes(gif),
        "bad checksum": bytes(png),
        "cut png": encode(Image.new("RGB", (64, 64)), "PNG")[:-12],
        "thin": encode(Image.new("L", (2000, 5)), "PNG"),
        "tiny": encode(Image.new("RGB", (20, 20)), "JPEG"),
        "frame": with_last_frame("GIF", 65535, 65535),
    }
    codes = set()
    for name, data in cases.items():
        inspected, decoded = refusal(intake.inspect, data), refusal(intake, data)
        assert inspected == decoded, name
        codes.add(inspected[0])
    assert codes == {"empty", "not_an_image", "unsupported_format", "too_many_pixels", "damaged", "bad_aspect",
                     "too_small"}  # fmt: skip
    small = Intake(dataclasses.replace(settings, max_bytes=100))
    assert refusal(small.inspect, bytes(101)) == refusal(small, bytes(101))


def test_damage_past_the_header_is_the_decodes_to_find(intake: Intake) -> None:
    jpeg = encode(Image.effect_noise((200, 150), 60).convert("RGB"), "JPEG")
    cut = jpeg[: len(jpeg) // 2]
    assert intake.inspect(cut).format == "JPEG"
    assert refusal(intake, cut)[0] == "damaged"


# --- what decoding costs ---------------------------------------------------------------------------


def gray16(width: int, height: int) -> np.ndarray:
    """A 16-bit grey ramp that uses the whole range."""
    ramp = np.arange(width, dtype=np.uint32)[None, :] * 65535 // (width - 1)
    return np.broadcast_to(ramp, (height, width)).astype(np.uint16)


def test_a_16_bit_png_decodes_without_wide_copies(intake: Intake) -> None:
    width, height = 4000, 3000
    data = encode(Image.fromarray(gray16(width, height)), "PNG", compress_level=1)
    tracemalloc.start()
    try:
        out = intake(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # numpy's allocations are traced; the int64 conversion took 17 bytes a pixel, strips take a few MB in all
    assert peak < width * height, f"{peak / (width * height):.2f} bytes a pixel"
    assert out.pixels.shape == (768, 1024, 3)
    np.testing.assert_allclose(out.pixels[:, [0, 512, -1], 0].mean(0), [0, 128, 255], atol=2)


def converted_whole(im: Image.Image, working_side: int) -> np.ndarray:
    """The straightforward conversion: the whole picture to RGB on white, then one resize."""
    if im.mode == "I;16":
        wide = np.asarray(im).astype(np.int64)
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        gray[wide == im.info.get("transparency", -1)] = 255
        im = Image.fromarray(gray)
    rgba = im.convert("RGBA")
    rgb = Image.alpha_composite(Image.new("RGBA", im.size, (*WHITE, 255)), rgba).convert("RGB")
    scale = working_side / max(im.size)
    size = (round(im.width * scale), round(im.height * scale))
    return np.asarray(rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "L"])
@pytest.mark.parametrize("working_side", [512, 256], ids=["no-reduce", "reduce-by-2"])
def test_strips_give_the_pixels_of_converting_the_whole_picture(
    settings: IntakeSettings, mode: str, working_side: int
) -> None:
    rng = np.random.default_rng(3)
    if mode == "I;16":  # sixteen greys across the whole range, one of them transparent
        im = Image.fromarray((rng.integers(0, 16, (700, 1100)) * 4369).astype(np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 256, (700, 1100, 4), dtype=np.uint8)).convert(mode)
    params = {"transparency": 7 * 4369 if mode == "I;16" else 7} if mode in ("P", "I;16") else {}
    data = encode(im, "PNG", compress_level=1, **params)
    out = Intake(dataclasses.replace(settings, working_side=working_side))(data)
    np.testing.assert_array_equal(out.pixels, converted_whole(Image.open(io.BytesIO(data)), working_side))


def test_a_large_jpeg_is_decoded_small_and_still_turned_upright(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    drafted: list[tuple[int, int]] = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> object:
        result = draft(self, mode, size)
        drafted.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned 90° clockwise
    im = Image.new("RGB", (4400, 2200), BLUE)
    im.paste(RED, (0, 0, 2200, 2200))
    out = intake(encode(im, "JPEG", quality=90, exif=exif))
    assert drafted == [(2200, 1100)]  # libjpeg decoded at half size: still twice the working size
    assert out.source_size == (4400, 2200) and out.pixels.shape == (1024, 512, 3)
    np.testing.assert_allclose(out.pixels[:480].reshape(-1, 3).mean(0), RED, atol=8)
    np.testing.assert_allclose(out.pixels[544:].reshape(-1, 3).mean(0), BLUE, atol=8)


# Decodes one file in a fresh process and prints the peak RSS growth of the decode (VmHWM after clear_refs).
MEASURE = """
import io, json, sys
from PIL import Image
from engine.config import load_settings
from engine.stages.intake import Intake
intake = Intake(load_settings().intake)
for fmt in ("PNG", "JPEG", "WEBP"):  # load every codec first
    buf = io.BytesIO(); Image.new("RGB", (64, 64)).save(buf, fmt); intake(buf.getvalue())
data = open(sys.argv[1], "rb").read()
header = intake.inspect(data)
def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS:")
intake(data)
print(json.dumps({"estimate": header.decode_bytes, "peak": status("VmHWM:") - before}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("kind", ["png16", "rgba", "jpeg-progressive", "webp"])
def test_decode_bytes_bounds_the_measured_peak(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (1500, 2500, 4), dtype=np.uint8)
    if kind == "png16":
        data = encode(Image.fromarray(gray16(3000, 2000)), "PNG", compress_level=1)
    elif kind == "rgba":
        data = encode(Image.fromarray(noise), "PNG", compress_level=1)
    elif kind == "jpeg-progressive":
        data = encode(Image.fromarray(noise[:, :, :3]), "JPEG", quality=90, progressive=True)
    else:
        data = encode(Image.fromarray(noise[:, :, :3]), "WEBP", quality=80, method=0)
    path = tmp_path / "image"
    path.write_bytes(data)
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=300,
                          cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)
    # an honest estimate: not below what the decode took (a little slack for the allocator), nor far above
    assert measured["peak"] <= 1.1 * measured["estimate"], measured
    assert measured["estimate"] <= 3 * measured["peak"] + (16 << 20), measured
