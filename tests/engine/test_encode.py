"""Stage 8: encode real frames, decode the bytes back and check what a player would see."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence
from skimage.metrics import structural_similarity

from engine.backends import gif
from engine.config import EncodeSettings
from engine.errors import UserError
from engine.stages.encode import Encode
from engine.types import Frames


def moving_scene(count: int = 12, height: int = 72, width: int = 96, *, still: bool = False) -> np.ndarray:
    """A diagonal colour gradient with a bright square moving across it; `still` keeps the gradient fixed."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        shift = 0.0 if still else 9.0 * i
        frames[i, ..., 0] = (x + shift) * 255 / (width + 9 * count)
        frames[i, ..., 1] = y * 255 / height
        frames[i, ..., 2] = 128 + 100 * np.sin((x + y + shift) / 17)
        top, left = (5 + 3 * i) % (height - 12), (7 + 5 * i) % (width - 12)
        frames[i, top : top + 12, left : left + 12] = (250, 240, 20)
    return frames


def encoder(colors: int = 256) -> Encode:
    return Encode(EncodeSettings(format="gif", size=480, max_bytes=10 << 20, colors=colors))


def decode(data: bytes) -> tuple[Image.Image, np.ndarray]:
    """Pillow's view of a GIF or WebP: the file and every composited frame as RGB."""
    im = Image.open(io.BytesIO(data))
    return im, np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])


def decode_mp4(data: bytes) -> tuple[av.container.InputContainer, np.ndarray]:
    container = av.open(io.BytesIO(data))
    frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return container, frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def mean_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([structural_similarity(x, y, channel_axis=2) for x, y in zip(a, b)]))


def test_gif_decodes_to_the_intended_palette_frames() -> None:
    frames = moving_scene()
    out = encoder()(Frames(frames, fps=10.0), format="gif", max_bytes=10 << 20)

    im, decoded = decode(out.data)
    assert (out.format, out.width, out.height, out.frames, out.fitted) == ("gif", 96, 72, 12, ())
    assert im.n_frames == 12 and im.size == (96, 72) and im.info["loop"] == 0
    # Differencing and cropping must rebuild exactly the frames we mapped to the one palette.
    palette = gif.build_palette(frames, 255)
    rgb = np.array(palette.getpalette(), np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(decoded, rgb[gif.map_to_palette(frames, palette)])
    # This gradient spans the whole RGB cube, so 255 octree colours band visibly (about 29 dB);
    # a broken palette or offset patch falls far below.
    assert psnr(decoded, frames) > 26
    assert mean_ssim(decoded, frames) > 0.75  # banding again: 0.80 measured, garbage is below 0.3


def test_gif_sends_only_what_changed() -> None:
    moving = encoder()(Frames(moving_scene(16), 10.0), format="gif", max_bytes=10 << 20)
    still = encoder()(Frames(moving_scene(16, still=True), 10.0), format="gif", max_bytes=10 << 20)
    assert len(still.data) < 0.3 * len(moving.data)
    # A clip with no change at all keeps every frame (and so its duration) as a 1x1 transparent patch.
    frozen = np.repeat(moving_scene(1), 8, axis=0)
    out = encoder()(Frames(frozen, 8.0), format="gif", max_bytes=10 << 20)
    im, decoded = decode(out.data)
    assert im.n_frames == 8 and (decoded == decoded[0]).all()
    assert len(out.data) < len(encoder()(Frames(frozen[:1], 8.0), format="gif", max_bytes=10 << 20).data) + 8 * 40


def test_gif_delays_keep_the_duration_and_report_the_real_fps() -> None:
    out = encoder()(Frames(moving_scene(16), fps=16.0), format="gif", max_bytes=10 << 20)
    im = Image.open(io.BytesIO(out.data))
    delays = [frame.info["duration"] for frame in ImageSequence.Iterator(im)]
    assert sorted(set(delays)) == [60, 70] and sum(delays) == 1000
    assert out.fps == pytest.approx(16.0)

    fast = encoder()(Frames(moving_scene(24), fps=60.0), format="gif", max_bytes=10 << 20)
    assert fast.frames == 20 and fast.fps == pytest.approx(50.0)
    assert Image.open(io.BytesIO(fast.data)).n_frames == 20


def test_fewer_colors_setting_is_honoured() -> None:
    out = encoder(colors=16)(Frames(moving_scene(), 10.0), format="gif", max_bytes=10 << 20)
    _, decoded = decode(out.data)
    assert len(np.unique(decoded.reshape(-1, 3), axis=0)) <= 15


@pytest.mark.parametrize("format", ["gif", "mp4", "webp"])
def test_same_frames_give_the_same_bytes(format: str) -> None:
    frames = Frames(moving_scene(8), 8.0)
    first = encoder()(frames, format=format, max_bytes=10 << 20)
    again = encoder()(Frames(frames.frames.copy(), 8.0), format=format, max_bytes=10 << 20)
    assert first.data == again.data


def test_mp4_is_h264_yuv420p_even_sized_without_audio() -> None:
    frames = moving_scene(12, height=73, width=97)
    out = encoder()(Frames(frames, 12.0), format="mp4", max_bytes=10 << 20)

    container, decoded = decode_mp4(out.data)
    stream = container.streams.video[0]
    assert stream.codec_context.name == "h264" and stream.codec_context.format.name == "yuv420p"
    assert len(container.streams.audio) == 0 and len(container.streams) == 1
    assert (out.width, out.height) == (96, 72) == (stream.width, stream.height)  # cropped right/bottom
    assert decoded.shape == (12, 72, 96, 3) and out.fps == 12.0 and stream.average_rate == 12
    assert out.data.index(b"moov") < out.data.index(b"mdat")  # +faststart
    assert psnr(decoded, frames[:, :72, :96]) > 28


def test_webp_is_animated_and_loops() -> None:
    frames = moving_scene(10)
    out = encoder()(Frames(frames, 10.0), format="webp", max_bytes=10 << 20)
    im, decoded = decode(out.data)
    assert im.is_animated and im.n_frames == 10 and im.info["loop"] == 0
    assert (out.width, out.height, out.frames) == (96, 72, 10)
    assert psnr(decoded, frames) > 28


NEEDS_GIFSICLE = pytest.mark.skipif(
    not gif.has_gifsicle(),
    reason="gifsicle is not installed (apt-get install gifsicle); the ladder without it is tested below",
)


@pytest.mark.parametrize(
    ("format", "budget", "first_concession"),
    [
        pytest.param("gif", 40_000, "lossy=", marks=NEEDS_GIFSICLE),
        pytest.param("gif", 12_000, "lossy=", marks=NEEDS_GIFSICLE),
        pytest.param("gif", 4_000, "lossy=", marks=NEEDS_GIFSICLE),
        ("mp4", 6_000, "crf="),
        ("mp4", 2_500, "crf="),
        ("webp", 12_000, "quality="),
        ("webp", 3_000, "quality="),
    ],
)
def test_the_budget_is_always_met(format: str, budget: int, first_concession: str) -> None:
    frames = moving_scene(24, height=96, width=128)
    full = encoder()(Frames(frames, 12.0), format=format, max_bytes=10 << 20)
    assert len(full.data) > budget  # otherwise this case proves nothing

    out = encoder()(Frames(frames, 12.0), format=format, max_bytes=budget)
    assert len(out.data) <= budget
    assert out.fitted and out.fitted[0].startswith(first_concession)
    if format == "mp4":
        container, decoded = decode_mp4(out.data)
        assert out.width % 2 == 0 and out.height % 2 == 0
    else:
        _, decoded = decode(out.data)
    assert decoded.shape == (out.frames, out.height, out.width, 3)
    if any(f.startswith("size=") for f in out.fitted):
        assert f"size={out.width}x{out.height}" in out.fitted and out.width < 128
    if any(f.startswith("fps=") for f in out.fitted):
        assert out.frames < 24 and out.frames / out.fps == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("budget", [40_000, 12_000, 4_000])
def test_gif_budget_without_gifsicle_skips_the_lossy_step(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    monkeypatch.setattr(gif.shutil, "which", lambda name: None)
    out = encoder()(Frames(moving_scene(24, 96, 128), 12.0), format="gif", max_bytes=budget)
    assert len(out.data) <= budget
    assert out.fitted[0].startswith("colors=") and not any(f.startswith("lossy=") for f in out.fitted)


def test_a_budget_nothing_fits_is_a_user_error() -> None:
    with pytest.raises(UserError, match="couldn't make that animation small enough"):
        encoder()(Frames(moving_scene(8), 8.0), format="gif", max_bytes=300)


@pytest.mark.parametrize(
    ("kwargs", "frames", "message"),
    [
        ({"format": "avi", "max_bytes": 1000}, moving_scene(2), "format must be one of gif, mp4, webp, got 'avi'"),
        ({"format": "gif", "max_bytes": 0}, moving_scene(2), "max_bytes must be a positive int, got 0"),
        ({"format": "gif", "max_bytes": 1000}, moving_scene(2).astype(np.float32), "uint8 RGB array, got float32"),
        ({"format": "gif", "max_bytes": 1000}, moving_scene(2)[..., :1], r"got uint8 array of shape \(2, 72, 96, 1\)"),
        ({"format": "gif", "max_bytes": 1000}, moving_scene(2)[:0], "at least one non-empty frame"),
        ({"format": "mp4", "max_bytes": 1000}, moving_scene(2)[:, :1], "at least 2x2 pixels"),
    ],
)
def test_bad_arguments_name_what_was_expected(kwargs: dict, frames: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encoder()(Frames(frames, 8.0), **kwargs)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="settings.colors must be between 2 and 256, got 300"):
        encoder(colors=300)
