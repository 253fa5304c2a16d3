"""Stage 1: safe decoding of untrusted bytes, against a bad-input corpus built here."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import struct
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from engine.config import IntakeSettings
from engine.errors import ConfigError, UserError
from engine.stages.intake import Intake
from tests.support.memes import encode

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """A random RGB picture, incompressible enough that truncation cuts real pixel data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def halves(width: int, height: int, left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    """A picture whose left half is one colour and right half another."""
    im = Image.new("RGB", (width, height), right)
    im.paste(left, (0, 0, width // 2, height))
    return im


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bilevel_png(width: int, height: int, *, full: bool) -> bytes:
    """A 1-bit PNG of the given size; `full` streams every row of zeros (a real bomb), else a token IDAT."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)
    if full:
        block = row * max(1, (1 << 20) // len(row))
        rows_per_block = len(block) // len(row)
        parts = [compressor.compress(block) for _ in range(height // rows_per_block)]
        parts.append(compressor.compress(row * (height % rows_per_block)))
    else:
        parts = [compressor.compress(row)]
    idat = b"".join(parts) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def refused(intake: Intake, data: bytes, code: str) -> str:
    """Assert `data` is refused with `code` and a chat-ready sentence; return the sentence."""
    with pytest.raises(UserError) as caught:
        intake(data)
    message = caught.value.message
    assert caught.value.code == code, message
    assert message == str(caught.value)
    assert message.startswith("That ") and message.endswith(".")
    assert "\n" not in message and len(message) < 160
    for leak in ("Traceback", "Error", "Exception", "b'", "\\x", "<", "PIL", "None"):
        assert leak not in message, message
    return message


# --- refusals ------------------------------------------------------------------------------------


def test_empty_input_is_refused(intake: Intake) -> None:
    assert refused(intake, b"", "empty") == "That file is empty."


def test_byte_cap_is_checked_before_the_content(settings: IntakeSettings) -> None:
    small = Intake(dataclasses.replace(settings, max_bytes=1000))
    message = refused(small, b"%PDF-1.7\n" + bytes(2000), "too_large")
    assert message == "That file is too large (2 KB; the limit is 1000 bytes)."
    assert refused(Intake(settings), bytes(settings.max_bytes + 1), "too_large") == (
        "That file is too large (20.1 MB; the limit is 20 MB)."
    )


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_refused(intake: Intake, fmt: str) -> None:
    data = encode(noise(200, 150), fmt)
    for cut in (len(data) // 2, len(data) - 40):
        assert refused(intake, data[:cut], "damaged") == "That image file is damaged or incomplete."
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_png_with_a_bad_checksum_is_refused(intake: Intake) -> None:
    data = bytearray(encode(noise(64, 64), "PNG"))
    data[-20] ^= 0xFF  # inside the last IDAT, so only its CRC betrays it
    refused(intake, bytes(data), "damaged")


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("meme.png", b"not really")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", "That file is a PDF, not an image."),
        (
            b"<!DOCTYPE html>\n<html><head><title>meme</title></head><body><img src=x></body></html>\n",
            "That file is a web page (HTML), not an image.",
        ),
        (b'<?xml version="1.0"?>\n<feed><entry>meme</entry></feed>\n', "That file is an XML document, not an image."),
        (_zip(), "That file is a ZIP archive, not an image."),
        (
            b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64),
            "That file is a video (MP4/MOV), not an image.",
        ),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  " + bytes(64), "That file is a video (MP4/MOV), not an image."),
        ("when the meme is just text 😂\n".encode(), "That file is a text file, not an image."),
        (bytes(random.Random(7).randrange(256) for _ in range(500)), "That file isn't an image I can read."),
    ],
    ids=["pdf", "html", "xml", "zip", "mp4", "mov", "text", "random"],
)
def test_non_images_are_named(intake: Intake, data: bytes, expected: str) -> None:
    assert refused(intake, data, "not_an_image") == expected


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (encode(noise(64, 64), "TIFF"), "a TIFF"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect/></svg>', "an SVG drawing"),
        (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "a HEIC photo"),
    ],
    ids=["tiff", "svg", "heic"],
)
def test_other_image_formats_are_refused_by_name(intake: Intake, data: bytes, name: str) -> None:
    message = refused(intake, data, "unsupported_format")
    assert message == f"That image is {name}, which I can't read; please send a PNG, JPEG, WebP, GIF or BMP."


def test_format_allowlist_comes_from_settings(settings: IntakeSettings) -> None:
    narrow = Intake(dataclasses.replace(settings, formats=("PNG", "JPEG")))
    message = refused(narrow, encode(noise(64, 64), "GIF"), "unsupported_format")
    assert message == "That image is a GIF, which I can't read; please send a PNG or JPEG."
    with pytest.raises(ConfigError, match="intake.formats"):
        Intake(dataclasses.replace(settings, formats=("PNG", "JPG")))


def test_decompression_bomb_is_refused_from_its_header(intake: Intake) -> None:
    bomb = bilevel_png(30000, 30000, full=True)
    assert len(bomb) < 200_000  # 900 megapixels in a small upload: the point of a bomb
    limits = (Image.MAX_IMAGE_PIXELS, list(warnings.filters))
    message = refused(intake, bomb, "too_many_pixels")
    assert message == "That image is too large to process (30000×30000 pixels; the limit is 40 megapixels)."
    assert (Image.MAX_IMAGE_PIXELS, list(warnings.filters)) == limits


@pytest.mark.parametrize(
    "size",
    [(8000, 6000), (10000, 10000)],  # over our cap only; over Pillow's warning threshold too
    ids=["over-our-cap", "pillow-warning"],
)
def test_pixel_cap_is_checked_before_decoding(intake: Intake, size: tuple[int, int]) -> None:
    message = refused(intake, bilevel_png(*size, full=False), "too_many_pixels")
    assert f"({size[0]}×{size[1]} pixels;" in message


def test_forged_headers_of_other_formats_are_too_many_pixels(intake: Intake) -> None:
    gif = bytearray(encode(noise(40, 40), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)
    assert "(65535×65535 pixels;" in refused(intake, bytes(gif), "too_many_pixels")
    jpeg = bytearray(encode(noise(40, 40), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    assert "(30000×30000 pixels;" in refused(intake, bytes(jpeg), "too_many_pixels")


def test_tiny_image_is_refused(intake: Intake) -> None:
    message = refused(intake, encode(Image.new("RGB", (1, 1)), "PNG"), "too_small")
    assert message == "That image is too small (1×1 pixels; it needs at least 32 pixels on each side)."
    refused(intake, encode(Image.new("RGB", (40, 31)), "PNG"), "too_small")


def test_long_thin_image_is_refused(intake: Intake) -> None:
    message = refused(intake, encode(Image.new("L", (20000, 5)), "PNG"), "bad_aspect")
    assert message == (
        "That image is too long and thin (20000×5 pixels; the longer side may be at most 6 times the shorter)."
    )
    refused(intake, encode(Image.new("L", (40, 250)), "PNG"), "bad_aspect")


# --- conversions ---------------------------------------------------------------------------------


def test_plain_png_is_decoded_as_is(intake: Intake) -> None:
    im = noise(120, 80)
    data = encode(im, "PNG")
    out = intake(data)
    assert out.pixels.shape == (80, 120, 3) and out.pixels.dtype == np.uint8 and out.pixels.flags.c_contiguous
    assert not out.pixels.flags.writeable
    np.testing.assert_array_equal(out.pixels, np.asarray(im))
    assert (out.source_format, out.source_size, out.animated) == ("PNG", (120, 80), False)
    assert out.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "WEBP"])
def test_other_allowed_formats_decode(intake: Intake, fmt: str) -> None:
    out = intake(encode(halves(64, 48, RED, BLUE), fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    assert (out.source_format, out.pixels.shape, out.animated) == (fmt, (48, 64, 3), False)
    assert tuple(out.pixels[0, 0]) == RED and tuple(out.pixels[-1, -1]) == BLUE


def test_large_image_is_scaled_to_working_size(intake: Intake) -> None:
    out = intake(encode(halves(3000, 1500, RED, BLUE), "PNG"))
    assert out.pixels.shape == (512, 1024, 3) and out.source_size == (3000, 1500)
    assert tuple(out.pixels[256, 100]) == RED and tuple(out.pixels[256, 900]) == BLUE


def test_exif_orientation_is_applied(intake: Intake) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned 90° clockwise
    out = intake(encode(halves(64, 32, RED, BLUE), "JPEG", quality=95, exif=exif))
    assert out.source_size == (64, 32) and out.pixels.shape == (64, 32, 3)
    top, bottom = out.pixels[:28].reshape(-1, 3).mean(0), out.pixels[36:].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(top, RED, atol=8)
    np.testing.assert_allclose(bottom, BLUE, atol=8)


def test_cmyk_jpeg_becomes_rgb(intake: Intake) -> None:
    out = intake(encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", quality=95))
    assert out.pixels.shape == (64, 64, 3) and out.source_format == "JPEG"
    np.testing.assert_allclose(out.pixels.reshape(-1, 3).mean(0), RED, atol=6)


def test_16_bit_png_is_scaled_not_clipped(intake: Intake) -> None:
    samples = np.array([0, 257 * 100, 65535], dtype=np.uint16)
    im = Image.fromarray(np.tile(np.repeat(samples, 16), (48, 1)))
    assert im.mode == "I;16"
    out = intake(encode(im, "PNG"))
    assert out.pixels.shape == (48, 48, 3)
    np.testing.assert_array_equal(out.pixels[0, ::16], [[0] * 3, [100] * 3, [255] * 3])


def test_palette_transparency_is_composited_on_white(intake: Intake) -> None:
    im = Image.new("P", (64, 32), 1)
    im.putpalette([*RED, *BLUE] + [0] * 762)
    im.paste(0, (0, 0, 32, 32))
    out = intake(encode(im, "PNG", transparency=0))  # index 0 (red) is fully transparent
    assert tuple(out.pixels[5, 5]) == WHITE and tuple(out.pixels[5, 60]) == BLUE


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(intake: Intake, mode: str) -> None:
    rgba = np.zeros((32, 64, 4), dtype=np.uint8)
    rgba[:, 32:, 3] = 255  # right half opaque black, left half transparent black
    rgba[:, :4, 3] = 128
    out = intake(encode(Image.fromarray(rgba).convert(mode), "PNG"))
    assert tuple(out.pixels[0, 10]) == WHITE and tuple(out.pixels[0, 40]) == (0, 0, 0)
    assert abs(int(out.pixels[0, 0, 0]) - 127) <= 1


def test_animated_gif_uses_the_first_frame(intake: Intake) -> None:
    frames = [Image.new("RGB", (64, 64), (i % 256, 255 - i % 256, (i // 256) * 100)) for i in range(300)]
    frames[0] = Image.new("RGB", (64, 64), RED)
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40)
    assert Image.open(io.BytesIO(data)).n_frames == 300
    out = intake(data)
    assert (out.animated, out.source_format, out.pixels.shape) == (True, "GIF", (64, 64, 3))
    assert (out.pixels == RED).all()


@pytest.mark.parametrize(("fmt", "params"), [("WEBP", {"lossless": True}), ("PNG", {})], ids=["webp", "apng"])
def test_animated_webp_and_apng_use_the_first_frame(intake: Intake, fmt: str, params: dict) -> None:
    frames = [Image.new("RGB", (48, 48), colour) for colour in (RED, BLUE, WHITE)]
    out = intake(encode(frames[0], fmt, save_all=True, append_images=frames[1:], **params))
    assert (out.animated, out.source_format, out.pixels.shape) == (True, fmt, (48, 48, 3))
    assert (out.pixels == RED).all()


# --- robustness ----------------------------------------------------------------------------------


def test_mutated_files_raise_nothing_but_user_errors(intake: Intake) -> None:
    seeds = [encode(noise(48, 40, seed=1), "PNG"), encode(noise(48, 40, seed=2), "JPEG", quality=80)]
    rng = random.Random(1234)
    outcomes: set[str] = set()
    for case in range(200):
        data = bytearray(seeds[case % 2])
        kind = rng.randrange(4)
        if kind == 0:  # flip bytes, mostly in the headers where parsers are most fragile
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(min(len(data), 160) if rng.random() < 0.7 else len(data))] = rng.randrange(256)
        elif kind == 1:
            del data[rng.randrange(1, len(data)) :]
        elif kind == 2:
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randint(1, 24))
        else:
            at = rng.randrange(len(data))
            del data[at : at + rng.randint(1, 48)]
        try:
            out = intake(bytes(data))
        except UserError as exc:
            outcomes.add(exc.code)
            assert exc.message.endswith(".") and "\n" not in exc.message
        else:
            outcomes.add("ok")
            assert out.pixels.dtype == np.uint8 and out.pixels.ndim == 3 and out.pixels.shape[2] == 3
    assert {"ok", "damaged"} <= outcomes  # the mutations really exercise both paths
