"""Clip decoding under the intake's caps, and the frame arithmetic of training (engine/training/clips.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.config import IntakeSettings, load_settings
from engine.errors import UserError
from engine.training.clips import (
    FAMILIES,
    bucket_frames,
    bucket_size,
    choose_keyframe,
    fit_frames,
    keyframe_scores,
    read_clip,
    resize_clip,
    retime,
)  # fmt: skip


@pytest.fixture(scope="module")
def intake() -> IntakeSettings:
    return load_settings().intake


def gif_bytes(frames: list[np.ndarray], durations: int | list[int] = 100) -> bytes:
    """An animated GIF of (H, W, 3) frames."""
    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return buffer.getvalue()


def mp4_bytes(folder: Path, frames: list[np.ndarray], fps: float) -> bytes:
    """An MP4 (MPEG-4 part 2, the codec every OpenCV build writes) of (H, W, 3) RGB frames."""
    path = folder / "clip.mp4"
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


def grey_frames(count: int, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """Frames of one grey each, 20 levels apart: which frame was read shows in any pixel."""
    return [np.full((*size, 3), (i * 20) % 256, np.uint8) for i in range(count)]


def test_a_gif_reads_every_frame_with_the_delays_a_browser_shows(intake: IntakeSettings) -> None:
    data = gif_bytes(grey_frames(4), durations=[0, 10, 20, 250])
    clip = read_clip(data, intake, max_frames=100)
    assert clip.frames.shape == (4, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert list(clip.frames[:, 0, 0, 0]) == [0, 20, 40, 60]
    assert clip.durations == (0.1, 0.1, 0.02, 0.25)  # 0 and 10 ms show for 100 ms, as in browsers
    assert clip.fps == pytest.approx(4 / 0.47)
    assert clip.sha256 == hashlib.sha256(data).hexdigest() and not clip.cut


def test_a_long_gif_is_read_up_to_max_frames_and_marked_cut(intake: IntakeSettings) -> None:
    clip = read_clip(gif_bytes(grey_frames(30)), intake, max_frames=12)
    assert len(clip.frames) == 12 and clip.cut
    assert not read_clip(gif_bytes(grey_frames(12)), intake, max_frames=12).cut


def test_only_the_seconds_asked_for_are_decoded(intake: IntakeSettings, tmp_path: Path) -> None:
    clip = read_clip(gif_bytes(grey_frames(30)), intake, max_frames=100, max_seconds=1.0)
    assert len(clip.frames) == 10 and clip.cut
    video = read_clip(mp4_bytes(tmp_path, grey_frames(20), fps=12), intake, max_frames=100, max_seconds=0.5)
    assert len(video.frames) == 6 and video.cut
    whole = read_clip(gif_bytes(grey_frames(5)), intake, max_frames=100, max_seconds=0.5)
    assert len(whole.frames) == 5 and not whole.cut


def test_frames_are_scaled_to_the_side_asked_for(intake: IntakeSettings) -> None:
    clip = read_clip(gif_bytes(grey_frames(2, (100, 200))), intake, max_frames=5, side=50)
    assert clip.frames.shape == (2, 25, 50, 3)


def test_webp_and_apng_animations_read_through_pillow(intake: IntakeSettings) -> None:
    images = [Image.fromarray(f) for f in grey_frames(3)]
    for fmt in ("WEBP", "PNG"):
        buffer = io.BytesIO()
        images[0].save(buffer, format=fmt, save_all=True, append_images=images[1:], duration=125, lossless=True)
        clip = read_clip(buffer.getvalue(), intake, max_frames=10)
        assert clip.frames.shape == (3, 48, 64, 3), fmt
        assert list(clip.frames[:, 0, 0, 0]) == [0, 20, 40] and clip.durations == (0.125,) * 3, fmt


def test_an_mp4_reads_through_opencv_up_to_max_frames(intake: IntakeSettings, tmp_path: Path) -> None:
    data = mp4_bytes(tmp_path, grey_frames(20, (96, 128)), fps=12)
    clip = read_clip(data, intake, max_frames=50)
    assert clip.frames.shape == (20, 96, 128, 3) and clip.fps == pytest.approx(12) and not clip.cut
    assert np.abs(clip.frames[:, 48, 64, 0].astype(int) - [(i * 20) % 256 for i in range(20)]).max() <= 6
    cut = read_clip(data, intake, max_frames=8)
    assert len(cut.frames) == 8 and cut.cut


def test_a_webm_reads_through_opencv(intake: IntakeSettings) -> None:
    import av  # a base dependency (the MP4 encoder): never skipped

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in grey_frames(6):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    clip = read_clip(buffer.getvalue(), intake, max_frames=50)
    assert clip.frames.shape == (6, 48, 64, 3) and clip.fps == pytest.approx(10)


def test_bad_input_is_a_sentence_for_the_user(intake: IntakeSettings, tmp_path: Path) -> None:
    gif = gif_bytes(grey_frames(6))
    mp4 = mp4_bytes(tmp_path, grey_frames(6), fps=8)
    cases = {
        "truncated gif": (gif[: len(gif) // 2], "bad_clip", "damaged or incomplete"),
        "truncated mp4": (mp4[: len(mp4) // 2], "bad_clip", "damaged or incomplete"),
        "a pdf": (b"%PDF-1.7\n" + bytes(100), "bad_clip", "a PDF, not a GIF or a video"),
        "empty": (b"", "empty", "empty"),
    }
    for what, (data, code, words) in cases.items():
        with pytest.raises(UserError) as caught:
            read_clip(data, intake, max_frames=10)
        assert caught.value.code == code and words in caught.value.message, what


def test_the_intake_caps_hold_before_decoding(intake: IntakeSettings, tmp_path: Path) -> None:
    small = dataclasses.replace(intake, max_pixels=64 * 48 - 1)
    for data in (gif_bytes(grey_frames(2)), mp4_bytes(tmp_path, grey_frames(2), fps=8)):
        with pytest.raises(UserError) as caught:
            read_clip(data, small, max_frames=10)
        assert caught.value.code == "too_many_pixels" and "64×48 pixels" in caught.value.message
    with pytest.raises(UserError) as caught:
        read_clip(gif_bytes(grey_frames(2)), dataclasses.replace(intake, max_bytes=100), max_frames=10)
    assert caught.value.code == "too_large"
    with pytest.raises(UserError) as caught:
        read_clip(mp4_bytes(tmp_path, grey_frames(2, (16, 64)), fps=8), intake, max_frames=10)
    assert caught.value.code == "too_small"


def test_retime_shows_what_a_player_shows_at_each_tick() -> None:
    frames = np.arange(4, dtype=np.uint8).reshape(4, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    assert list(retime(frames, [0.1, 0.3, 0.1, 0.1], 10)[:, 0, 0, 0]) == [0, 1, 1, 1, 2, 3]
    assert list(retime(frames, 24.0, 8)[:, 0, 0, 0]) == [0]  # 4 frames at 24 fps: a sixth of a second
    assert list(retime(frames, 2.0, 4)[:, 0, 0, 0]) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert list(retime(frames, 2.0, 4, limit=3)[:, 0, 0, 0]) == [0, 0, 1]
    with pytest.raises(ValueError, match="positive durations"):
        retime(frames, [0.1, 0.0, 0.1, 0.1], 8)


def test_frame_buckets_are_the_counts_each_model_accepts() -> None:
    assert [bucket_frames("t2v", n) for n in (1, 16, 17)] == [1, 16, 17]
    assert [bucket_frames("ltx", n) for n in (1, 9, 16, 20, 21, 33)] == [9, 9, 17, 17, 25, 33]
    assert [bucket_frames("wan", n) for n in (1, 5, 7, 16, 81)] == [5, 5, 9, 17, 81]
    assert all((bucket_frames("ltx", n) - 1) % 8 == 0 and (bucket_frames("wan", n) - 1) % 4 == 0 for n in range(1, 90))
    with pytest.raises(ValueError, match="family"):
        bucket_frames("cogvideo", 16)


def test_fit_frames_loops_a_short_clip_and_cuts_a_long_one() -> None:
    frames = np.arange(3, dtype=np.uint8).reshape(3, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    assert list(fit_frames(frames, 7)[:, 0, 0, 0]) == [0, 1, 2, 0, 1, 2, 0]
    assert list(fit_frames(frames, 2)[:, 0, 0, 0]) == [0, 1]
    assert list(fit_frames(frames[:1], 4)[:, 0, 0, 0]) == [0, 0, 0, 0]


def test_bucket_sizes_keep_the_aspect_in_the_family_multiples() -> None:
    assert bucket_size("t2v", 640, 480, 256) == (256, 192)
    assert bucket_size("ltx", 640, 480, 256) == (256, 192)
    assert bucket_size("wan", 480, 640, 256) == (192, 256)
    for family, multiple in (("t2v", 8), ("ltx", 32), ("wan", 32)):
        for width, height in ((500, 281), (123, 456), (1000, 100)):
            w, h = bucket_size(family, width, height, 320)
            assert w % multiple == 0 and h % multiple == 0 and w >= multiple and h >= multiple
            assert abs(max(w, h) - 320) <= multiple / 2
            assert abs(w / h - width / height) / (width / height) < 0.45  # as near as the multiples allow


def test_resize_clip_covers_and_centres_without_stretching() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, 90:110] = 255  # a centred bar 20 px wide
    out = resize_clip(np.stack([frame, frame]), 64, 64)
    assert out.shape == (2, 64, 64, 3)
    bar = np.flatnonzero(out[0, 32, :, 0] > 127)
    assert 12 <= len(bar) <= 14 and abs(bar.mean() - 31.5) < 1  # scaled by 0.64, not squeezed sideways


def test_the_keyframe_is_the_sharp_frame_with_a_subject() -> None:
    rng = np.random.default_rng(3)
    scene = np.full((96, 96, 3), 200, np.uint8)
    cv2.circle(scene, (48, 48), 20, (30, 60, 160), -1)  # the subject
    scene[::8] = rng.integers(150, 250, scene[::8].shape, dtype=np.uint8)  # a little texture
    frames = np.stack([cv2.GaussianBlur(scene, (0, 0), sigma) for sigma in (4, 3, 2.5, 3.5)] + [scene])
    frames = frames[[0, 1, 4, 2, 3]]  # the sharp one third
    assert choose_keyframe(frames) == 2
    scores = keyframe_scores(np.concatenate([frames, np.full((1, 96, 96, 3), 128, np.uint8)]))
    assert scores[-1] == 0  # a flat frame has nothing to show


def test_the_keyframe_is_chosen_the_same_without_opencv_contrib(monkeypatch: pytest.MonkeyPatch) -> None:
    scene = np.full((96, 96, 3), 200, np.uint8)
    cv2.circle(scene, (40, 50), 18, (20, 20, 20), -1)
    frames = np.stack([cv2.GaussianBlur(scene, (0, 0), 3), scene, cv2.GaussianBlur(scene, (0, 0), 2)])
    if hasattr(cv2, "saliency"):
        monkeypatch.delattr(cv2, "saliency")
    assert choose_keyframe(frames) == 1


def test_families_match_the_command_line_choices() -> None:
    from engine.cli.dataset import FAMILY_CHOICES

    assert FAMILY_CHOICES == FAMILIES
