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
from PIL import Image

from engine.config import IntakeSettings
from engine.errors import ConfigError, UserError
from engine.sniff import Size, frame_sizes, sniff
from engine.types import DecodedImage, ImageHeader
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

_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}  # Pillow's; 4 for the rest
_WIDE_MODES = ("LA", "La", "PA", "RGBA", "RGBa", "I", "I;16", "I;16L", "I;16B", "I;16N")  # alpha or 16-bit samples
_OVERHEAD = 4 << 20  # decoder state, Python objects, the allocator's slack
_REDUCING_GAP = 2.0  # LANCZOS works on at least twice the working size (thumbnail()'s default)
_STRIP_PIXELS = 1 << 18  # converted to RGB a strip at a time: a few MB of temporaries, whatever the image size
_LUT16 = ((np.arange(65536, dtype=np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # 16-bit to 8, rounded
_UPRIGHT = {  # EXIF orientation -> the transpose that shows the picture upright, as ImageOps.exif_transpose does
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # fmt: skip


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

    def inspect(self, data: bytes) -> ImageHeader:
        """The header's facts, or the UserError __call__ would raise for the format or size; decodes no pixel."""
        return self._inspect(data)[0]

    def __call__(self, data: bytes) -> DecodedImage:
        """Validate and decode `data`; every problem with the input is a UserError."""
        s = self.settings
        header, im = self._inspect(data)
        digest = hashlib.sha256(data).hexdigest()
        source_size = im.size
        animated = header.format in _ANIMATED_FORMATS and (header.frames or 1) > 1
        with decoder_guard(header.format, (header.width, header.height), s.max_pixels):
            # 4. decode the first frame, JPEG straight at a fraction of its size when it is scaled down anyway
            if animated:
                im.seek(0)
            scale = _draft_scale(header.format, source_size, s.working_side)
            if scale > 1:
                im.draft(None, (max(1, source_size[0] // scale), max(1, source_size[1] // scale)))
            im.load()
            if im.width * im.height > header.width * header.height:  # never bigger than its header said
                self._check_pixels(*im.size)
            # 5. colour and working size a strip at a time, then orientation on the small result
            upright = _UPRIGHT.get(im.getexif().get(0x0112, 1))
            rgb = fit_side(im, s.working_side)
            if upright is not None:
                rgb = rgb.transpose(upright)

        pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
        pixels.flags.writeable = False  # later stages share this array; they copy before drawing on it
        log.debug("decoded %s %dx%d -> %dx%d animated=%s", header.format, *source_size, rgb.width, rgb.height, animated)
        return DecodedImage(
            pixels=pixels, sha256=digest, source_format=header.format, source_size=source_size, animated=animated
        )

    def _inspect(self, data: bytes) -> tuple[ImageHeader, Image.Image]:
        """The header's facts and the opened, undecoded image; every refusal the header alone can justify."""
        s = self.settings
        # 1. cheap refusals before anything parses the content
        if not data:
            raise UserError("That file is empty.", code="empty")
        if len(data) > s.max_bytes:
            raise UserError(
                f"That file is too large ({human_bytes(len(data), up=True)}; the limit is {human_bytes(s.max_bytes)}).",
                code="too_large",
            )
        # 2. what the content is, whatever the file was called, and every frame's size from our own reading of
        #    the header, before Pillow allocates anything for it (its WebP decoder allocates the canvas on open)
        fmt = self._identify(data)
        try:
            sizes = frame_sizes(data, fmt)
        except ValueError as exc:
            raise UserError(DAMAGED, code="damaged") from exc
        declared = max(sizes, key=_area, default=None)
        if declared is not None:
            self._check_pixels(*declared)
        with decoder_guard(fmt, declared, s.max_pixels):
            # 3. Pillow's header parse agrees, or the file is damaged; still no pixel decoded
            im = self._open(data, fmt)
            source_format = "JPEG" if im.format == "MPO" else str(im.format)
            width, height = max([*sizes, im.size], key=_area)
            self._check_pixels(width, height)
            self._check_shape(*im.size)
            # a GIF's frames are counted by our walk (Pillow's n_frames walks them in Python, frame by frame); the
            # others' come from the header Pillow read (PNG's acTL, WebP's demuxer, MPO's index)
            frames: int | None = None
            if fmt == "GIF":
                frames = max(1, len(sizes) - 1)
            elif fmt in _FRIENDLY:
                frames = int(getattr(im, "n_frames", 1))
            cost = _decode_cost(im, source_format, len(data), s.working_side)
        return ImageHeader(source_format, width, height, frames, cost), im

    def _identify(self, data: bytes) -> str | None:
        """The allowlisted format the content shows, None if unknown, or a UserError naming what it is."""
        found = sniff(data)
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
        """Parse the header without decoding pixels (_png_sizes checked every PNG chunk's checksum already)."""
        formats = (fmt,) if fmt else self.formats
        try:
            im = Image.open(io.BytesIO(data), formats=formats)
        except Image.UnidentifiedImageError as exc:
            if fmt is None:
                raise UserError(UNREADABLE, code="not_an_image") from exc
            raise UserError(DAMAGED, code="damaged") from exc
        opened = "JPEG" if im.format == "MPO" else im.format
        if opened not in self.formats:
            raise UserError(UNREADABLE, code="not_an_image")
        return im

    def _check_pixels(self, width: int, height: int) -> None:
        """Refuse a frame over the pixel cap, naming its size."""
        if width * height > self.settings.max_pixels:
            raise UserError(
                f"That image is too large to process ({width}×{height} pixels; "
                f"the limit is {_megapixels(self.settings.max_pixels)} megapixels).",
                code="too_many_pixels",
            )

    def _check_shape(self, width: int, height: int) -> None:
        """Refuse a picture too thin or too small to animate, naming its size."""
        s = self.settings
        size = f"{width}×{height} pixels"
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
def decoder_guard(fmt: str | None, declared: Size | None, max_pixels: int) -> Iterator[None]:
    """Turn Pillow's bomb warning into an error, and decoder failures into UserErrors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
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


def _draft_scale(fmt: str, size: Size, working_side: int) -> int:
    """How much libjpeg may shrink a JPEG as it decodes: to no less than twice the working size, like thumbnail()."""
    return next((f for f in (8, 4, 2) if max(size) // f >= 2 * working_side), 1) if fmt == "JPEG" else 1


def _decode_cost(im: Image.Image, fmt: str, nbytes: int, working_side: int) -> int:
    """Estimated peak memory of Intake.__call__ on this opened image, beyond the input bytes themselves.

    Each term is what measuring showed: the peak RSS growth (VmHWM after /proc/self/clear_refs) of one __call__
    in a fresh process, for PNG (8- and 16-bit grey, RGB, RGBA, palette), JPEG (baseline, progressive, grey,
    CMYK), GIF, WebP and BMP of 0.6 to 36 megapixels, was always below this and mostly above two thirds of it.
    """
    scale = _draft_scale(fmt, im.size, working_side)
    width, height = -(-im.width // scale), -(-im.height // scale)  # as decoded
    cost = width * height * _MODE_BYTES.get(im.mode, 4)  # Pillow's picture: 4 bytes a pixel for RGB too
    if fmt == "WEBP":  # libwebp's canvas and previous canvas (RGBA), the frame handed over as bytes, the file twice
        cost += 12 * width * height + 2 * nbytes
    layers = getattr(im, "layer", None)
    if fmt == "JPEG" and im.info.get("progressive") and layers:  # every DCT coefficient, 2 bytes, at full size
        most = max(h * v for _, h, v, _ in layers)
        cost += 2 * im.width * im.height * sum(h * v for _, h, v, _ in layers) // most
    # bytes a pixel that _to_rgb's temporaries take: none for plain RGB, RGBA onto white three copies
    plain = im.mode == "RGB" and "transparency" not in im.info
    converting = 0 if plain else 12 if im.mode in _WIDE_MODES or "transparency" in im.info else 4
    (out_w, out_h), (fx, fy) = _plan((width, height), working_side)
    if max(width, height) <= working_side:  # converted whole, then copied into numpy
        return cost + (converting + 6) * width * height + _OVERHEAD
    reduced = -(-width // fx) * -(-height // fy)
    cost += 0 if plain and fx * fy == 1 else 4 * reduced  # the reduced RGB picture, unless it is the decoded one
    # a strip's temporaries, LANCZOS's two passes, the numpy copies
    cost += converting * _STRIP_PIXELS + 4 * out_w * -(-height // fy) + 7 * out_w * out_h
    return cost + _OVERHEAD


def _plan(size: Size, working_side: int) -> tuple[Size, Size]:
    """The working size, and the whole factors to box-reduce by before LANCZOS (as resize(reducing_gap=2))."""
    width, height = size
    scale = min(1.0, working_side / max(width, height))
    out = (max(1, round(width * scale)), max(1, round(height * scale)))
    return out, (max(1, int(width / out[0] / _REDUCING_GAP)), max(1, int(height / out[1] / _REDUCING_GAP)))


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB with transparent areas on white; 16-bit samples scaled, not clipped."""
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        wide = np.asarray(im)
        gray = _LUT16[np.clip(wide, 0, 65535)]  # a table lookup: no wide temporaries
        transparency = im.info.get("transparency")
        if isinstance(transparency, int):
            gray[wide == transparency] = 255  # that grey is transparent, and transparent is white here
        im = Image.fromarray(gray)
    if "transparency" in im.info and im.mode in ("1", "L", "P", "RGB"):
        im = im.convert("RGBA")
    if im.mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        return Image.alpha_composite(Image.new("RGBA", im.size, (*WHITE, 255)), im).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def fit_side(im: Image.Image, working_side: int) -> Image.Image:
    """RGB, scaled down so the longer side is at most `working_side`, keeping the aspect."""
    if max(im.size) <= working_side:
        return _to_rgb(im)
    size, (fx, fy) = _plan(im.size, working_side)
    width, height = im.size
    if im.mode == "RGB" and "transparency" not in im.info:  # nothing to convert
        reduced = im.reduce((fx, fy)) if fx * fy > 1 else im
    else:  # converted and reduced a strip of whole reduction blocks at a time: no full-size copy
        rows = max(1, _STRIP_PIXELS // (width * fy)) * fy
        reduced = Image.new("RGB", (-(-width // fx), -(-height // fy)))
        for top in range(0, height, rows):
            strip = _to_rgb(im.crop((0, top, width, min(height, top + rows))))
            reduced.paste(strip.reduce((fx, fy)) if fx * fy > 1 else strip, (0, top // fy))
    return reduced.resize(size, Image.Resampling.LANCZOS, box=(0, 0, width / fx, height / fy))


def _area(size: Size) -> int:
    """Width times height."""
    return size[0] * size[1]


def _megapixels(pixels: int) -> str:
    """40000000 -> "40"; 2500000 -> "2.5"."""
    return f"{round(pixels / 1e6, 1):g}"
