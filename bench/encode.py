"""Benchmark stage 8's GIF writer against ffmpeg palettegen/paletteuse and Pillow's default GIF save.

Run: python bench/encode.py [--image PATH] [--frames 48] [--side 512] [--runs 3]
Prints bytes, mean SSIM against the source frames and the median encode time, with ratios to
ffmpeg measured in the same run. Not a test: nothing here asserts on wall-clock time.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image, ImageSequence
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import EncodeSettings  # noqa: E402
from engine.stages.encode import Encode  # noqa: E402
from engine.types import Frames  # noqa: E402

MEMES = Path(__file__).resolve().parents[2] / "shared" / "memes" / "rendered"
FPS = 16.0
NO_BUDGET = 1 << 40


def zoom_pan(picture: np.ndarray, count: int, side: int) -> np.ndarray:
    """A slow zoom-in with a sideways drift, the kind of move the procedural generator makes."""
    h, w = picture.shape[:2]
    frames = np.empty((count, side, side, 3), np.uint8)
    for i in range(count):
        t = i / max(1, count - 1)
        scale = side / min(h, w) * (1.0 + 0.25 * t)
        cx, cy = w / 2 + (t - 0.5) * 0.08 * w, h / 2
        m = np.array([[scale, 0, side / 2 - scale * cx], [0, scale, side / 2 - scale * cy]])
        frames[i] = cv2.warpAffine(picture, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return frames


def synthetic(count: int, side: int) -> np.ndarray:
    """A textured picture to move when the meme set is absent."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    picture = np.stack([x * 255 / side, y * 255 / side, 128 + 100 * np.sin((x + y) / 23)], axis=-1)
    cv2.putText(picture, "WHEN THE BENCH RUNS", (20, 60), cv2.FONT_HERSHEY_DUPLEX, 1.2, (255, 255, 255), 3)
    return zoom_pan(picture.astype(np.uint8), count, side)


def ours(frames: np.ndarray) -> bytes:
    encode = Encode(EncodeSettings(format="gif", size=max(frames.shape[1:3]), max_bytes=NO_BUDGET, colors=256))
    return encode(Frames(frames, FPS), format="gif", max_bytes=NO_BUDGET).data


def ffmpeg(frames: np.ndarray) -> bytes:
    n, h, w, _ = frames.shape
    cmd = [
        "ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(FPS),
        "-i", "-", "-filter_complex", "[0:v]split[a][b];[a]palettegen[p];[b][p]paletteuse",
        "-loop", "0", "-f", "gif", "-",
    ]  # fmt: skip
    return subprocess.run(cmd, input=frames.tobytes(), capture_output=True, check=True).stdout


def pillow_default(frames: np.ndarray) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=int(1000 / FPS), loop=0)
    return buf.getvalue()


def ours_format(format: str) -> Callable[[np.ndarray], bytes]:
    def run(frames: np.ndarray) -> bytes:
        encode = Encode(EncodeSettings(format=format, size=max(frames.shape[1:3]), max_bytes=NO_BUDGET, colors=256))
        return encode(Frames(frames, FPS), format=format, max_bytes=NO_BUDGET).data

    return run


def decode(data: bytes) -> np.ndarray:
    if data[4:8] == b"ftyp":
        with av.open(io.BytesIO(data)) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(io.BytesIO(data)))])


def measure(encoder: Callable[[np.ndarray], bytes], frames: np.ndarray, runs: int) -> tuple[int, float, float, int]:
    times, data = [], b""
    for _ in range(runs):
        started = time.perf_counter()
        data = encoder(frames)
        times.append(time.perf_counter() - started)
    decoded = decode(data)
    ssim = float(np.mean([structural_similarity(a, b, channel_axis=2) for a, b in zip(frames, decoded)]))
    return len(data), ssim, statistics.median(times), len(decoded)


def main() -> None:
    """Build the frames, run every encoder, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, help="a meme picture (default: the first of the shared set)")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    image = args.image or next(iter(sorted(MEMES.glob("*.jpg"))), None)
    if image is not None and image.is_file():
        picture = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
        frames, source = zoom_pan(picture, args.frames, args.side), image.name
    else:
        print(f"no meme pictures at {MEMES}: using synthetic frames")
        frames, source = synthetic(args.frames, args.side), "synthetic"
    print(
        f"{args.frames} frames, {args.side}x{args.side}, {FPS:g} fps, zoom/pan of {source}; "
        f"median of {args.runs} runs, encode time only\n"
    )

    rows = {
        "ffmpeg palettegen/paletteuse": measure(ffmpeg, frames, args.runs),
        "makeitmove GIF": measure(ours, frames, args.runs),
        "Pillow save(save_all=True)": measure(pillow_default, frames, args.runs),
    }
    base_bytes, base_ssim, base_time, _ = rows["ffmpeg palettegen/paletteuse"]
    print(
        f"{'encoder':30} {'frames':>6} {'bytes':>10} {'SSIM':>7} {'seconds':>8}   "
        f"{'bytes/ff':>8} {'ΔSSIM':>7} {'time/ff':>8}"
    )
    for name, (size, ssim, seconds, count) in rows.items():
        print(
            f"{name:30} {count:6d} {size:10d} {ssim:7.4f} {seconds:8.3f}   "
            f"{size / base_bytes:8.2f} {ssim - base_ssim:+7.4f} {seconds / base_time:8.2f}"
        )

    print("\nother formats from the same stage (no baseline):")
    for format in ("mp4", "webp"):
        size, ssim, seconds, count = measure(ours_format(format), frames, args.runs)
        print(f"{'makeitmove ' + format.upper():30} {count:6d} {size:10d} {ssim:7.4f} {seconds:8.3f}")


if __name__ == "__main__":
    main()
