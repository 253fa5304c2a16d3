"""Short clips (GIF, WebP, APNG, MP4, WebM) decoded safely, and the frame arithmetic training needs.

Every cap of the intake applies: the file's size, each frame's pixels, its shape, all checked from the
header before a frame is decoded; the frame count is capped by the caller. The helpers after `read_clip`
(re-timing, frame buckets, sizes) are pure functions on (N, H, W, 3) uint8 RGB arrays, shared by the
dataset builder, one-shot tuning and /remix.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from engine.config import IntakeSettings
from engine.errors import UserError
from engine.sniff import sniff
from engine.stages.intake import Intake, decoder_guard, fit_side
from engine.units import human_bytes

log = logging.getLogger(__name__)

FAMILIES = ("t2v", "ltx", "wan")
# Frame counts a family's model accepts: `step`k+1 frames, at least `least` (t2v: any count).
FRAME_BUCKETS = {"t2v": (1, 1), "ltx": (8, 9), "wan": (4, 5)}
# A side must be a multiple of the VAE's spatial scale times the transformer's patch size: ModelScope's VAE
# scales by 8; LTX-Video by 32 (patch 1); Wan 2.1's VAE by 8 and Wan 2.2 TI2V-5B's by 16, with patch 2: 32
# covers both.
SIDE_MULTIPLES = {"t2v": 8, "ltx": 32, "wan": 32}
# Browsers show a GIF frame whose delay is 10 ms or less (0 included) for 100 ms; so do we.
_SHORTEST_DELAY_MS = 10
_DEFAULT_DELAY_MS = 100
_TOP_SALIENT_PERCENT = 5  # keyframe_scores: the salient subject is the map's top 5 %
_MAX_FPS = 240.0  # a container's frame rate above this (or none) is not believed
DAMAGED = "That clip is damaged or incomplete."
_EBML = b"\x1a\x45\xdf\xa3"  # WebM and Matroska


@dataclass(frozen=True)
class Clip:
    """A decoded clip: its frames, how long each is shown, and the hash of the bytes it came from."""

    frames: np.ndarray  # (N, H, W, 3) uint8 RGB, N >= 1
    fps: float  # N over the clip's duration
    sha256: str  # of the input bytes
    cut: bool  # the source had more frames than were read
    durations: tuple[float, ...]  # seconds each frame is shown


def read_clip(
    data: bytes, intake: IntakeSettings, *, max_frames: int, name: str = "", side: int | None = None,
    max_seconds: float | None = None,
) -> Clip:  # fmt: skip
    """Decode a GIF, WebP, APNG, MP4 or WebM, its frames scaled to `side` (default: the intake's working side);
    every problem with the input is a UserError a chat user can read.

    At most `max_frames` frames are read, and no more than cover `max_seconds` when given (a caller that needs
    the start of a long clip decodes only that). `name` (the file's name) only goes into the log.
    """
    if max_frames < 1 or (max_seconds is not None and max_seconds <= 0):
        raise ValueError(f"max_frames and max_seconds must be positive, got {max_frames} and {max_seconds}")
    side = side or intake.working_side
    if not data:
        raise UserError("That file is empty.", code="empty")
    if len(data) > intake.max_bytes:
        raise UserError(
            f"That file is too large ({human_bytes(len(data), up=True)}; the limit is "
            f"{human_bytes(intake.max_bytes)}).",
            code="too_large",
        )
    found = sniff(data)
    if found is not None and found[0] == "file":
        if not found[2].startswith("a video"):
            raise UserError(f"That file is {found[2]}, not a GIF or a video.", code="bad_clip")
        frames, durations, cut = _read_video(data, intake, max_frames, max_seconds, side)
    else:
        frames, durations, cut = _read_animation(data, intake, max_frames, max_seconds, side)
    digest = hashlib.sha256(data).hexdigest()
    height, width = frames.shape[1:3]
    log.debug("read %s: %d frames %dx%d, cut=%s", name or digest[:12], len(frames), width, height, cut)
    return Clip(frames=frames, fps=len(durations) / sum(durations), sha256=digest, cut=cut, durations=durations)


def _read_animation(
    data: bytes, intake: IntakeSettings, max_frames: int, max_seconds: float | None, side: int
) -> tuple[np.ndarray, tuple[float, ...], bool]:
    """GIF, WebP or APNG through Pillow, after the intake has checked every frame's size in the header."""
    header = Intake(intake).inspect(data)  # the intake's refusals: format, bytes, pixels, shape
    total = header.frames or 1
    count = min(total, max_frames)
    frames: list[np.ndarray] = []
    delays: list[float] = []
    index, elapsed = 0, 0.0
    try:
        with decoder_guard(header.format, (header.width, header.height), intake.max_pixels):
            im = Image.open(io.BytesIO(data), formats=(header.format,))
            for index in range(count):
                im.seek(index)
                rgb = np.asarray(fit_side(im, side), dtype=np.uint8)  # loads the frame: its duration is known now
                if frames and rgb.shape != frames[0].shape:  # a frame that widened the canvas
                    rgb = cv2.resize(rgb, frames[0].shape[1::-1], interpolation=cv2.INTER_AREA)
                frames.append(rgb)
                delay = float(im.info.get("duration") or 0)
                delays.append((_DEFAULT_DELAY_MS if delay <= _SHORTEST_DELAY_MS else delay) / 1000)
                elapsed += delays[-1]
                if max_seconds is not None and elapsed >= max_seconds - 1e-9:  # 0.1 * 10 < 1.0
                    break
    except UserError as exc:
        if exc.code != "damaged":
            raise
        raise UserError(
            f"That clip is damaged or incomplete: frame {index + 1} of {total} could not be decoded.", code="bad_clip"
        ) from exc
    return np.stack(frames), tuple(delays), total > len(frames)


def _read_video(
    data: bytes, intake: IntakeSettings, max_frames: int, max_seconds: float | None, side: int
) -> tuple[np.ndarray, tuple[float, ...], bool]:
    """MP4 or WebM through OpenCV's FFmpeg, from a private temporary file; the size is checked before decoding."""
    suffix = ".webm" if data.startswith(_EBML) else ".mp4"
    with tempfile.TemporaryDirectory(prefix="makeitmove-clip-") as folder:
        path = os.path.join(folder, "clip" + suffix)
        with open(path, "wb") as file:
            file.write(data)
        capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        try:
            if not capture.isOpened():
                raise UserError(DAMAGED, code="bad_clip")
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if width <= 0 or height <= 0:
                raise UserError(DAMAGED, code="bad_clip")
            _check_video_size(width, height, intake)
            fps = float(capture.get(cv2.CAP_PROP_FPS))
            fps = fps if 0 < fps <= _MAX_FPS else 1000 / _DEFAULT_DELAY_MS
            if max_seconds is not None:
                max_frames = min(max_frames, max(1, math.ceil(max_seconds * fps - 1e-9)))
            frames = _video_frames(capture, width * height, max_frames, side)
            cut = len(frames) == max_frames and bool(capture.grab())
        except cv2.error as exc:
            log.debug("refused a video: %s", exc)
            raise UserError(DAMAGED, code="bad_clip") from exc
        finally:
            capture.release()
    if not frames:
        raise UserError("That video has no frame I can read.", code="bad_clip")
    return np.stack(frames), (1 / fps,) * len(frames), cut


def _video_frames(capture: cv2.VideoCapture, pixels: int, max_frames: int, side: int) -> list[np.ndarray]:
    """Up to `max_frames` RGB frames scaled to `side`, each as big as the header said (rotated, perhaps)."""
    frames: list[np.ndarray] = []
    while len(frames) < max_frames:
        ok, bgr = capture.read()
        if not ok or bgr is None:
            break
        if bgr.ndim != 3 or bgr.shape[0] * bgr.shape[1] != pixels:  # never bigger than its header said
            raise UserError(DAMAGED, code="bad_clip")
        height, width = bgr.shape[:2]
        scale = min(1.0, side / max(width, height))
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames


def _check_video_size(width: int, height: int, intake: IntakeSettings) -> None:
    """The intake's caps on a video's frame: pixels, aspect and smallest side, in its words."""
    size = f"{width}×{height} pixels"
    if width * height > intake.max_pixels:
        limit = round(intake.max_pixels / 1e6, 1)
        raise UserError(
            f"That video is too large to process ({size}; the limit is {limit:g} megapixels).",
            code="too_many_pixels",
        )
    longer, shorter = max(width, height), min(width, height)
    if longer / shorter > intake.max_aspect:
        raise UserError(
            f"That video is too long and thin ({size}; the longer side may be at most "
            f"{intake.max_aspect:g} times the shorter).",
            code="bad_aspect",
        )
    if shorter < intake.min_side:
        raise UserError(
            f"That video is too small ({size}; it needs at least {intake.min_side} pixels on each side).",
            code="too_small",
        )


def retime(frames: np.ndarray, timing: float | Sequence[float], fps: float, *, limit: int | None = None) -> np.ndarray:
    """The frames a player shows at each tick of `fps`, from the source's fps or per-frame durations (seconds).

    The clip's length is kept (at least one frame); `limit` stops after that many frames.
    """
    count = len(frames)
    if count == 0:
        raise ValueError("retime needs at least one frame")
    if isinstance(timing, (int, float)):
        if timing <= 0:
            raise ValueError(f"the source fps must be positive, got {timing}")
        durations = np.full(count, 1 / timing)
    else:
        durations = np.asarray(timing, dtype=np.float64)
        if durations.shape != (count,) or not (durations > 0).all():
            raise ValueError(f"need {count} positive durations, got {durations.shape[0]}")
    if fps <= 0:
        raise ValueError(f"the target fps must be positive, got {fps}")
    ends = np.cumsum(durations)
    ticks = max(1, round(float(ends[-1]) * fps))
    if limit is not None:
        ticks = min(ticks, limit)
    # the frame on screen at tick k is the first whose end is past k/fps (the nudge keeps exact ends exact)
    shown = np.searchsorted(ends, np.arange(ticks) / fps + 1e-9, side="right")
    return frames[np.minimum(shown, count - 1)]


MODEL_FPS = {"t2v": 8, "ltx": 24, "wan": 24}  # the frame rates the models were trained and sample at


def training_fps(configured: int, family: str) -> int:
    """[training] fps, or the family's own when it is 0."""
    return configured or MODEL_FPS[_family(family)]


def bucket_frames(family: str, count: int) -> int:
    """The frame count nearest `count` that the family's model accepts (t2v: any; ltx: 8k+1 >= 9; wan: 4k+1 >= 5)."""
    step, least = FRAME_BUCKETS[_family(family)]
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if step == 1:
        return count
    return max(least, step * int((count - 1) / step + 0.5) + 1)


def fit_frames(frames: np.ndarray, count: int) -> np.ndarray:
    """Exactly `count` frames: a short clip loops from its start, a long one is cut."""
    if len(frames) == 0 or count < 1:
        raise ValueError(f"need frames and a count of at least 1, got {len(frames)} frames and count {count}")
    return frames[np.arange(count) % len(frames)] if len(frames) < count else frames[:count]


def bucket_size(family: str, width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) with the longer side about `side` and the aspect kept, each a multiple the family needs."""
    multiple = SIDE_MULTIPLES[_family(family)]
    if width < 1 or height < 1 or side < 1:
        raise ValueError(f"width, height and side must be positive, got {width}, {height}, {side}")
    scale = side / max(width, height)
    return (
        max(multiple, round(width * scale / multiple) * multiple),
        max(multiple, round(height * scale / multiple) * multiple),
    )


def resize_clip(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Every frame scaled to cover width × height, centred and cropped to it (a bucket's rounding, no stretch)."""
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
    source_h, source_w = frames.shape[1:3]
    scale = max(width / source_w, height / source_h)
    size = (max(width, round(source_w * scale)), max(height, round(source_h * scale)))
    x0, y0 = (size[0] - width) // 2, (size[1] - height) // 2
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    out = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame, size, interpolation=interpolation)[y0 : y0 + height, x0 : x0 + width]
    return out


def _family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    return family


def keyframe_scores(frames: np.ndarray) -> np.ndarray:
    """Each frame's sharpness (variance of its Laplacian) times its salient subject's strength.

    The strength is how far the frame's most salient 5 % stands out: the mean of the top 5 % of its spectral
    residual saliency map (Hou & Zhang, 2007; OpenCV contrib's StaticSaliencySpectralResidual) over the mean of
    the whole map. A crisp frame with a clear subject wins; blur (motion, fades) and flat or noisy frames lose.
    """
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
    contrib = getattr(cv2, "saliency", None)  # opencv-contrib-python is only installed below Python 3.13
    detector = contrib.StaticSaliencySpectralResidual_create() if contrib is not None else None
    scores = np.zeros(len(frames), dtype=np.float64)
    for i, frame in enumerate(frames):
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        sharpness = float(cv2.Laplacian(gray, cv2.CV_64F).var())
        if detector is not None:
            _, saliency = detector.computeSaliency(gray)
        else:
            saliency = _spectral_residual(gray)
        values = np.sort(np.asarray(saliency, dtype=np.float64).ravel())
        top = values[-max(1, len(values) * _TOP_SALIENT_PERCENT // 100) :]
        scores[i] = sharpness * float(top.mean()) / max(float(values.mean()), 1e-12)
    return scores


def choose_keyframe(frames: np.ndarray) -> int:
    """The index of the frame with the best keyframe_scores (the earliest of equals)."""
    return int(np.argmax(keyframe_scores(frames)))


def _spectral_residual(gray: np.ndarray) -> np.ndarray:
    """The spectral residual saliency map, as OpenCV contrib computes it (on 64×64, blurred, scaled to 0..1)."""
    small = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float64) / 255
    spectrum = np.fft.fft2(small)
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3))
    saliency = cv2.GaussianBlur(np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2, (11, 11), 3)
    saliency = cv2.resize(saliency, gray.shape[::-1], interpolation=cv2.INTER_LINEAR)
    return cv2.normalize(saliency, None, 0, 1, cv2.NORM_MINMAX)
