"""Stage 8: frames → GIF / MP4 / WebP bytes that fit the platform's byte limit."""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from engine.backends import gif
from engine.config import EncodeSettings
from engine.errors import UserError
from engine.types import Encoded, Frames
from engine.units import human_bytes
from engine.vocabulary import FORMATS, Format

log = logging.getLogger(__name__)

# Budget ladders, mildest concession first. The first entry of each is the unconceded default.
GIF_LOSSY = (0, 30, 80, 200)  # gifsicle --lossy; 0 means gifsicle is not run
GIF_COLORS = (128, 64, 32)  # below 32 colours a meme photo turns to posterised blotches
MP4_CRF = (23, 28, 33, 38, 44, 51)  # libx264's default first; 51 is its coarsest
WEBP_QUALITY = (80, 60, 40, 20, 5)
FPS_FACTORS = (0.75, 0.5, 0.375, 0.25)  # of the input fps
MIN_FPS = 2.0
MIN_SIDE = 32  # px, the longer side below which nothing readable is left
WEBP_METHOD = 4  # libwebp's default speed/size trade-off
X264_PRESET = "medium"
# Fixed, not "auto": x264's output depends on its thread count, which auto takes from the
# machine's cores. (PyAV's codec_context.thread_count did not reach x264: its SEI said threads=1.)
X264_PARAMS = "threads=1"
AVCOL_SPC_SMPTE170M = 6  # OpenCV's RGB→I420 is BT.601 limited range; tag it so players agree
AVCOL_RANGE_MPEG = 1


@dataclass(frozen=True)
class _Attempt:
    """One point on the budget ladder."""

    lossy: int  # gifsicle --lossy, libx264 CRF or WebP quality, depending on the format
    colors: int
    fps: float
    width: int
    height: int


class Encode:
    """Encodes frames as GIF, MP4 or WebP, giving up quality step by step until `max_bytes` is met."""

    def __init__(self, settings: EncodeSettings) -> None:
        if not 2 <= settings.colors <= 256:
            raise ValueError(f"settings.colors must be between 2 and 256, got {settings.colors!r}")
        self.settings = settings

    def __call__(self, frames: Frames, *, format: Format, max_bytes: int) -> Encoded:
        """Encode `frames` as `format` ("gif", "mp4" or "webp") in at most `max_bytes` bytes."""
        started = time.perf_counter()
        # 1. check the inputs
        _check_inputs(frames, format, max_bytes)
        pixels, fps = frames.frames, float(frames.fps)
        h, w = pixels.shape[1:3]

        # 2. format limits that are not budget concessions
        if format == "gif" and fps > gif.MAX_FPS:
            log.info("GIF cannot play %.1f fps; dropping frames evenly to %.0f fps", fps, gif.MAX_FPS)
            pixels, fps = _drop_frames(pixels, fps, gif.MAX_FPS)
        if format == "mp4" and (w % 2 or h % 2):
            # yuv420p needs even sizes; cropping one edge pixel loses less than a padded bar shows.
            log.info(
                "MP4 needs an even size: cropping %dx%d to %dx%d (right column / bottom row)",
                w,
                h,
                w - w % 2,
                h - h % 2,
            )
            pixels = pixels[:, : h - h % 2, : w - w % 2]
            h, w = h - h % 2, w - w % 2

        # 3. encode at full quality, then walk down the ladder until it fits
        encoder = {"gif": _gif, "mp4": _mp4, "webp": _webp}[format]
        first = _first_rung(format, self.settings.colors, fps, w, h)

        def attempt(at: _Attempt) -> bytes:
            data = encoder(_resample(pixels, fps, at), at)
            log.debug("%s attempt %s: %d bytes (budget %d)", format, at, len(data), max_bytes)
            return data

        data, used = _fit(attempt, first, format, len(pixels), max_bytes)

        # 4. report what was given up
        fitted = _concessions(format, first, used)
        # Frames on the timeline (count / fps is the duration); libwebp may store a run of
        # identical frames as one longer frame, which a decoder then reports as fewer frames.
        count = len(_frame_indices(len(pixels), fps, used.fps))
        real_fps = _real_fps(format, count, used.fps)
        log.info(
            "encoded %s: %d bytes, %dx%d, %d frames at %.2f fps, fitted=%s, %.2f s",
            format,
            len(data),
            used.width,
            used.height,
            count,
            real_fps,
            ",".join(fitted) or "-",
            time.perf_counter() - started,
        )
        return Encoded(data, format, used.width, used.height, count, real_fps, fitted)


def _check_inputs(frames: Frames, format: Format, max_bytes: int) -> None:
    """Raise ValueError naming the argument, what was expected and what came."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    if not isinstance(frames, Frames):
        raise ValueError(f"frames must be a Frames, got {type(frames).__name__}")
    px = frames.frames
    if not isinstance(px, np.ndarray) or px.ndim != 4 or px.shape[-1] != 3 or px.dtype != np.uint8:
        got = f"{px.dtype} array of shape {px.shape}" if isinstance(px, np.ndarray) else type(px).__name__
        raise ValueError(f"frames.frames must be a (N, H, W, 3) uint8 RGB array, got {got}")
    if min(px.shape[:3]) == 0:
        raise ValueError(f"frames.frames must hold at least one non-empty frame, got shape {px.shape}")
    if format == "mp4" and min(px.shape[1:3]) < 2:
        raise ValueError(f"frames for mp4 must be at least 2x2 pixels (yuv420p), got {px.shape[2]}x{px.shape[1]}")
    if not (isinstance(frames.fps, (int, float)) and math.isfinite(frames.fps) and frames.fps > 0):
        raise ValueError(f"frames.fps must be a positive finite number, got {frames.fps!r}")


def _first_rung(format: Format, colors: int, fps: float, width: int, height: int) -> _Attempt:
    lossy = {"gif": GIF_LOSSY[0], "mp4": MP4_CRF[0], "webp": WEBP_QUALITY[0]}[format]
    return _Attempt(lossy, colors if format == "gif" else 0, fps, width, height)


def _fit(
    encode: Callable[[_Attempt], bytes], first: _Attempt, format: Format, count: int, budget: int
) -> tuple[bytes, _Attempt]:
    """The mildest attempt that fits, conceding lossy level, colours (GIF), fps, then size, in order."""
    at, data = first, encode(first)
    if len(data) <= budget:
        return data, at
    for rungs in (_lossy_rungs, _color_rungs, _fps_rungs):
        ladder = rungs(format, at, count)
        if not ladder:
            continue
        # The knob's hardest rung first: when even that misses, the milder ones would too,
        # so the search moves on to the next knob after one encode instead of one per rung.
        hardest = encode(ladder[-1])
        at, data = ladder[-1], hardest
        if len(data) <= budget:
            lo, hi = 0, len(ladder) - 1  # ladder[hi] fits; bisect for the mildest that does
            while lo < hi:
                mid = (lo + hi) // 2
                candidate = encode(ladder[mid])
                if len(candidate) <= budget:
                    hi, at, data = mid, ladder[mid], candidate
                else:
                    lo = mid + 1
            return data, at
    while True:
        # Bytes scale roughly with the pixel count, so aim straight at the budget.
        scale = min(0.9, max(0.5, 0.95 * math.sqrt(budget / len(data))))
        width, height = _even(at.width * scale, format), _even(at.height * scale, format)
        if max(width, height) < MIN_SIDE:
            raise UserError(
                f"I couldn't make that animation small enough to fit in {human_bytes(budget)}, even tiny "
                "and choppy. Try a shorter clip or a larger size limit.",
                code="too_large",
            )
        at = dataclasses.replace(at, width=width, height=height)
        data = encode(at)
        if len(data) <= budget:
            return data, at


def _lossy_rungs(format: Format, at: _Attempt, count: int) -> list[_Attempt]:
    values: tuple[int, ...]
    if format == "gif":
        values = GIF_LOSSY[1:] if gif.has_gifsicle() else ()
    else:
        values = MP4_CRF[1:] if format == "mp4" else WEBP_QUALITY[1:]
    return [dataclasses.replace(at, lossy=v) for v in values]


def _color_rungs(format: Format, at: _Attempt, count: int) -> list[_Attempt]:
    if format != "gif":
        return []
    return [dataclasses.replace(at, colors=c) for c in GIF_COLORS if c < at.colors]


def _fps_rungs(format: Format, at: _Attempt, count: int) -> list[_Attempt]:
    rungs, kept = [], count
    for factor in FPS_FACTORS:
        fps = max(MIN_FPS, at.fps * factor)
        now = len(_frame_indices(count, at.fps, fps))
        if 2 <= now < kept:  # a rung must drop frames, and a loop needs two
            rungs.append(dataclasses.replace(at, fps=fps))
            kept = now
    return rungs


def _even(size: float, format: Format) -> int:
    if format == "mp4":
        return max(2, 2 * round(size / 2))
    return max(1, round(size))


def _concessions(format: Format, first: _Attempt, used: _Attempt) -> tuple[str, ...]:
    fitted = []
    if used.lossy != first.lossy:
        fitted.append({"gif": "lossy", "mp4": "crf", "webp": "quality"}[format] + f"={used.lossy}")
    if used.colors != first.colors:
        fitted.append(f"colors={used.colors}")
    if used.fps != first.fps:
        fitted.append(f"fps={used.fps:.3g}")
    if (used.width, used.height) != (first.width, first.height):
        fitted.append(f"size={used.width}x{used.height}")
    return tuple(fitted)


def _frame_indices(count: int, fps: float, target_fps: float) -> np.ndarray:
    """Evenly spread frames to keep so the clip lasts as long at `target_fps`."""
    kept = max(1, min(count, round(count * target_fps / fps)))
    return np.floor(np.arange(kept) * count / kept).astype(int)


def _drop_frames(pixels: np.ndarray, fps: float, target_fps: float) -> tuple[np.ndarray, float]:
    keep = _frame_indices(len(pixels), fps, target_fps)
    return pixels[keep], fps * len(keep) / len(pixels)


def _resample(pixels: np.ndarray, fps: float, attempt: _Attempt) -> np.ndarray:
    """The frames an attempt encodes: evenly dropped to its fps, area-downscaled to its size."""
    if attempt.fps != fps:
        pixels, _ = _drop_frames(pixels, fps, attempt.fps)
    h, w = pixels.shape[1:3]
    if (attempt.width, attempt.height) != (w, h):
        size = (attempt.width, attempt.height)
        pixels = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in pixels])
    return pixels


def _real_fps(format: Format, count: int, fps: float) -> float:
    """The rate a player shows: GIF and WebP delays are whole centi- and milliseconds."""
    if format == "mp4":
        return float(_rate(fps))
    unit = 100.0 if format == "gif" else 1000.0
    return count * unit / sum(gif.frame_delays(count, fps, unit))


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _gif(pixels: np.ndarray, attempt: _Attempt) -> bytes:
    """One-palette differenced GIF; gifsicle's lossy LZW only once the ladder asks for it."""
    data = gif.write_gif(pixels, attempt.fps, attempt.colors)
    return gif.squeeze_gif(data, attempt.lossy) if attempt.lossy else data


def _mp4(pixels: np.ndarray, attempt: _Attempt) -> bytes:
    """H.264 yuv420p MP4, no audio, moov first; CRF from `attempt.lossy`."""
    n, h, w, _ = pixels.shape
    # +faststart rewrites the file after the mdat is written, which needs a real, named file.
    with tempfile.TemporaryDirectory(prefix="makeitmove-") as tmp:
        path = Path(tmp) / "out.mp4"
        with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            options = {"crf": str(attempt.lossy), "preset": X264_PRESET, "x264-params": X264_PARAMS}
            if h % 16 or w % 16:
                # With a frame size that is not whole macroblocks, x264's macroblock-tree rate
                # control read memory it never wrote: the same frames gave different bytes in
                # about one run in five inside a busy process. Off costs 14-48 % more bytes at
                # the same CRF (measured), so only these sizes pay it.
                options["x264-params"] += ":mbtree=0"
            stream = out.add_stream("libx264", rate=_rate(attempt.fps), options=options)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.colorspace = AVCOL_SPC_SMPTE170M
            stream.codec_context.color_range = AVCOL_RANGE_MPEG
            for i in range(n):
                frame = _yuv420_frame(pixels[i])
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        return path.read_bytes()


def _yuv420_frame(rgb: np.ndarray) -> av.VideoFrame:
    """A yuv420p frame (BT.601, limited range), converted by OpenCV."""
    return av.VideoFrame.from_ndarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), format="yuv420p")


def _webp(pixels: np.ndarray, attempt: _Attempt) -> bytes:
    """Lossy animated WebP that loops forever; quality from `attempt.lossy`."""
    images = [Image.fromarray(f) for f in pixels]
    buf = io.BytesIO()
    images[0].save(
        buf, "WEBP", save_all=True, append_images=images[1:], loop=0, lossless=False,
        quality=attempt.lossy, method=WEBP_METHOD, duration=gif.frame_delays(len(images), attempt.fps, 1000.0),
    )  # fmt: skip
    return buf.getvalue()
