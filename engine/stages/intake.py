"""Stage 1: turn untrusted bytes into a validated RGB image at working size."""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps

from engine.config import IntakeSettings
from engine.errors import ConfigError, UserError
from engine.types import DecodedImage
from engine.units import human_bytes

log = logging.getLogger(__name__)

WHITE = (255, 255, 255)
DAMAGED = "That image file is damaged or incomplete."
UNREADABLE = "That file isn't an image I can read."

# What Pillow and its decoders raise on hostile or broken input; anything else is a bug of ours.
_DECODE_ERRORS = (
    OSError, ValueError, SyntaxError, struct.error, EOFError, IndexError, KeyError,
    zlib.error, OverflowError, ZeroDivisionError,
)  # fmt: skip

_FRIENDLY = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP"}
_ANIMATED_FORMATS = ("GIF", "WEBP", "PNG")

# (offset, magic, what it is): images Pillow reads under that format name.
_IMAGES = (
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
)
# Image formats we recognise but do not accept (unless the allowlist names them).
_OTHER_IMAGES = (
    (0, b"II*\x00", "TIFF", "a TIFF"),
    (0, b"MM\x00*", "TIFF", "a TIFF"),
    (0, b"8BPS", "PSD", "a Photoshop file (PSD)"),
    (0, b"\x00\x00\x01\x00", "ICO", "an icon (ICO)"),
    (0, b"\x00\x00\x02\x00", "CUR", "a cursor (CUR)"),
    (0, b"icns", "ICNS", "an icon (ICNS)"),
    (0, b"qoif", "QOI", "a QOI image"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000", "a JPEG 2000"),
    (0, b"\xffO\xffQ", "JPEG2000", "a JPEG 2000"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JXL", "a JPEG XL"),
    (0, b"\xff\x0a", "JXL", "a JPEG XL"),
    (0, b"%!PS", "EPS", "a PostScript file"),
    (0, b"\xc5\xd0\xd3\xc6", "EPS", "a PostScript file"),
)
# Common files that are not images at all, named in the refusal.
_NON_IMAGES = (
    (0, b"%PDF-", "a PDF"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"PK\x05\x06", "a ZIP archive"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"Rar!\x1a\x07", "a RAR archive"),
    (0, b"\xfd7zXZ\x00", "an XZ archive"),
    (0, b"BZh", "a bzip2 archive"),
    (0, b"\x1a\x45\xdf\xa3", "a video (WebM/MKV)"),
    (4, b"moov", "a video (MOV)"),
    (4, b"mdat", "a video (MOV)"),
    (0, b"OggS", "an audio or video file (Ogg)"),
    (0, b"fLaC", "an audio file (FLAC)"),
    (0, b"ID3", "an audio file (MP3)"),
    (0, b"\x7fELF", "a program"),
    (0, b"MZ", "a program"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Office document"),
    (0, b"{\\rtf", "a document (RTF)"),
    (0, b"SQLite format 3\x00", "a database"),
)
_BMP_HEADER_SIZES = (12, 16, 40, 52, 56, 64, 108, 124)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")


class Intake:
    """Decode untrusted image bytes safely into a validated RGB DecodedImage."""

    def __init__(self, settings: IntakeSettings) -> None:
        known = set(Image.registered_extensions().values())
        formats = tuple(f.upper() for f in settings.formats)
        unknown = [f for f in formats if f not in known]
        if unknown:
            raise ConfigError(f"config key 'intake.formats' names a format Pillow cannot read: {unknown[0]!r}")
        self.settings = settings
        self.formats = formats

    def __call__(self, data: bytes) -> DecodedImage:
        """Validate and decode `data`; every problem with the input is a UserError."""
        s = self.settings
        # 1. cheap refusals before anything parses the content
        if not data:
            raise UserError("That file is empty.", code="empty")
        if len(data) > s.max_bytes:
            raise UserError(
                f"That file is too large ({human_bytes(len(data), up=True)}; the limit is {human_bytes(s.max_bytes)}).",
                code="too_large",
            )
        digest = hashlib.sha256(data).hexdigest()

        # 2. what the content is, whatever the file was called
        fmt = self._identify(data)

        with _decoder_guard(data, fmt, s.max_pixels):
            # 3. header only: the size is known before any pixel is decoded
            im = self._open(data, fmt)
            source_format = "JPEG" if im.format == "MPO" else str(im.format)
            source_size = im.size
            self._check_size(*source_size)

            # 4. decode the first frame, then check the size again (a GIF frame may widen the canvas)
            animated = source_format in _ANIMATED_FORMATS and bool(getattr(im, "is_animated", False))
            if animated:
                im.seek(0)
            im.load()
            if im.size != source_size:
                self._check_size(*im.size)

            # 5. orientation, colour, working size
            ImageOps.exif_transpose(im, in_place=True)
            rgb = _fit(_to_rgb(im), s.working_side)

        pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
        pixels.flags.writeable = False  # later stages share this array; they copy before drawing on it
        log.debug("decoded %s %dx%d -> %dx%d animated=%s", source_format, *source_size, rgb.width, rgb.height, animated)
        return DecodedImage(
            pixels=pixels, sha256=digest, source_format=source_format, source_size=source_size, animated=animated
        )

    def _identify(self, data: bytes) -> str | None:
        """The allowlisted format the content shows, None if unknown, or a UserError naming what it is."""
        found = _sniff(data)
        if found is None:
            return None
        kind, fmt, name = found
        if kind == "file":
            raise UserError(f"That file is {name}, not an image.", code="not_an_image")
        if fmt not in self.formats:
            accepted = [_FRIENDLY.get(f, f) for f in self.formats]
            listed = accepted[0] if len(accepted) == 1 else f"{', '.join(accepted[:-1])} or {accepted[-1]}"
            raise UserError(
                f"That image is {name}, which I can't read; please send a {listed}.", code="unsupported_format"
            )
        return fmt

    def _open(self, data: bytes, fmt: str | None) -> Image.Image:
        """Parse the header (PNG: every chunk's checksum too) without decoding pixels."""
        formats = (fmt,) if fmt else self.formats
        try:
            im = Image.open(io.BytesIO(data), formats=formats)
        except Image.UnidentifiedImageError as exc:
            if fmt is None:
                raise UserError(UNREADABLE, code="not_an_image") from exc
            raise UserError(DAMAGED, code="damaged") from exc
        if im.format == "PNG":
            # verify() walks every chunk and checks its CRC; it leaves the image unusable, so reopen
            im.verify()
            im = Image.open(io.BytesIO(data), formats=("PNG",))
        opened = "JPEG" if im.format == "MPO" else im.format
        if opened not in self.formats:
            raise UserError(UNREADABLE, code="not_an_image")
        return im

    def _check_size(self, width: int, height: int) -> None:
        """Refuse sizes outside the configured caps, naming the size."""
        s = self.settings
        size = f"{width}×{height} pixels"
        if width * height > s.max_pixels:
            raise UserError(
                f"That image is too large to process ({size}; the limit is {_megapixels(s.max_pixels)} megapixels).",
                code="too_many_pixels",
            )
        longer, shorter = max(width, height), min(width, height)
        if shorter > 0 and longer / shorter > s.max_aspect:
            raise UserError(
                f"That image is too long and thin ({size}; the longer side may be at most "
                f"{s.max_aspect:g} times the shorter).",
                code="bad_aspect",
            )
        if shorter < s.min_side:
            raise UserError(
                f"That image is too small ({size}; it needs at least {s.min_side} pixels on each side).",
                code="too_small",
            )


@contextmanager
def _decoder_guard(data: bytes, fmt: str | None, max_pixels: int) -> Iterator[None]:
    """Turn Pillow's bomb warning into an error, and decoder failures into UserErrors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            declared = _header_size(data, fmt)
            size = f"{declared[0]}×{declared[1]} pixels" if declared else "far too many pixels"
            raise UserError(
                f"That image is too large to process ({size}; the limit is {_megapixels(max_pixels)} megapixels).",
                code="too_many_pixels",
            ) from exc
        except MemoryError as exc:
            log.warning("ran out of memory decoding a %s", fmt or "file")
            raise UserError("That image is too large to process.", code="too_many_pixels") from exc
        except _DECODE_ERRORS as exc:
            log.debug("refused a damaged %s: %s: %s", fmt or "file", type(exc).__name__, exc)
            raise UserError(DAMAGED, code="damaged") from exc


def _sniff(data: bytes) -> tuple[str, str, str] | None:
    """(kind, format, name) from magic bytes: kind is "image", "other" (an image we refuse) or "file"."""
    for offset, magic, fmt in _IMAGES:
        if data.startswith(magic, offset):
            return "image", fmt, f"a {fmt}"
    if data.startswith(b"BM") and len(data) >= 18 and struct.unpack("<I", data[14:18])[0] in _BMP_HEADER_SIZES:
        return "image", "BMP", "a BMP"
    if data.startswith(b"RIFF") and len(data) >= 12:
        kind = data[8:12]
        if kind == b"WEBP":
            return "image", "WEBP", "a WebP"
        if kind.startswith(b"AVI"):
            return "file", "", "a video (AVI)"
        if kind == b"WAVE":
            return "file", "", "an audio file (WAV)"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _AVIF_BRANDS:
            return "other", "AVIF", "an AVIF"
        if brand in _HEIF_BRANDS:
            return "other", "HEIF", "a HEIC photo"
        if brand.startswith(b"M4A"):
            return "file", "", "an audio file (M4A)"
        return "file", "", "a video (MP4/MOV)"
    for offset, magic, fmt, name in _OTHER_IMAGES:
        if data.startswith(magic, offset):
            return "other", fmt, name
    for offset, magic, name in _NON_IMAGES:
        if data.startswith(magic, offset):
            return "file", "", name
    text = _as_text(data[:4096])
    if text is None:
        return None
    head = text.lstrip().lower()
    if head.startswith("<!doctype html") or "<html" in head[:2048]:
        return "file", "", "a web page (HTML)"
    if "<svg" in head:
        return "other", "SVG", "an SVG drawing"
    if head.startswith("<"):
        return "file", "", "an XML document"
    if head.startswith(("{", "[")):
        return "file", "", "a text file (JSON)"
    return "file", "", "a text file"


def _as_text(head: bytes) -> str | None:
    """The decoded start of a text file, or None when the bytes look binary."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if head.startswith(bom):
            return head[len(bom) :].decode(codec, errors="ignore")
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # only a character cut at the end of the sample is allowed
            return None
        text = head[: exc.start].decode("utf-8")
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f")
    return text if text and controls == 0 else None


def _header_size(data: bytes, fmt: str | None) -> tuple[int, int] | None:
    """The size a header declares, for the message when Pillow refused to go past the header."""
    try:
        if fmt == "PNG":
            width, height = struct.unpack(">II", data[16:24])
        elif fmt == "GIF":
            width, height = struct.unpack("<HH", data[6:10])
        elif fmt == "BMP" and struct.unpack("<I", data[14:18])[0] == 12:
            width, height = struct.unpack("<HH", data[18:22])
        elif fmt == "BMP":
            width, height = struct.unpack("<ii", data[18:26])
        elif fmt == "WEBP" and data[12:16] == b"VP8X":
            width, height = int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        elif fmt == "JPEG":
            return _jpeg_size(data)
        else:
            return None
    except struct.error:
        return None
    return abs(int(width)), abs(int(height))


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The size in a JPEG's first start-of-frame marker."""
    i = 2
    while i + 9 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB with transparent areas on white; 16-bit samples scaled, not clipped."""
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        wide = np.asarray(im).astype(np.int64)
        gray = Image.fromarray(((np.clip(wide, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8))
        transparency = im.info.get("transparency")
        if isinstance(transparency, int):
            gray.putalpha(Image.fromarray(np.where(wide == transparency, 0, 255).astype(np.uint8)))
        im = gray
    if "transparency" in im.info and im.mode in ("1", "L", "P", "RGB"):
        im = im.convert("RGBA")
    if im.mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        return Image.alpha_composite(Image.new("RGBA", im.size, (*WHITE, 255)), im).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def _fit(im: Image.Image, working_side: int) -> Image.Image:
    """Scale down so the longer side is at most `working_side`, keeping the aspect."""
    longer = max(im.size)
    if longer <= working_side:
        return im
    scale = working_side / longer
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _megapixels(pixels: int) -> str:
    """40000000 -> "40"; 2500000 -> "2.5"."""
    return f"{round(pixels / 1e6, 1):g}"
