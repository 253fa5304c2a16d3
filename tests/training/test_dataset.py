"""The dataset builder and `makeitmove dataset build` on GIFs and MP4s made here (engine/training/dataset.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from engine.cli import ArgumentParser
from engine.cli import dataset as dataset_cli
from engine.config import Settings, load_settings
from engine.errors import UserError
from engine.training.clips import fit_frames, resize_clip, retime
from engine.training.dataset import DatasetReport, build_dataset, dataset_digest, default_family

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
REAL_MEME = Path(__file__).resolve().parents[2].parent / "shared" / "memes" / "rendered" / "mg_02_ants.jpg"
CAPTION = "HELLO WORLD"
CAPTION_BOX = (20, 4, 220, 44)  # where the caption is drawn on caption.gif (240 x 180)
CONFIG = """\
[training]
fps = 8
frames = 12
side = 128
max_clip_frames = 500
"""
# frames = 12: t2v keeps 12, LTX's nearest 8k+1 is 9 and Wan's 4k+1 is 13


def gif(frames: list[np.ndarray], duration: int = 100) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buffer.getvalue()


def captioned_frames() -> list[np.ndarray]:
    """A ball rolling over a blue-green gradient under a white caption with a black outline, as memes have it."""
    font = ImageFont.truetype(str(FONT), 30) if FONT.is_file() else ImageFont.load_default(size=30)
    ramp = np.linspace(40, 160, 180, dtype=np.float32)[:, None]
    frames = []
    for i in range(8):
        scene = np.zeros((180, 240, 3), np.uint8)
        scene[..., 1], scene[..., 2] = ramp, 200 - ramp
        cv2.circle(scene, (60 + 15 * i, 120), 28, (200, 40, 40), -1)
        image = Image.fromarray(scene)
        ImageDraw.Draw(image).text((120, 24), CAPTION, font=font, fill="white", stroke_width=3, stroke_fill="black",
                                   anchor="mm")  # fmt: skip
        frames.append(np.asarray(image))
    return frames


def mp4(path: Path, count: int, fps: float, size: tuple[int, int] = (96, 128)) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size[::-1])
    for i in range(count):
        frame = np.full((*size, 3), 90, np.uint8)
        cv2.rectangle(frame, (10 + 3 * i, 30), (40 + 3 * i, 60), (250, 250, 0), -1)
        writer.write(frame)
    writer.release()
    return path.read_bytes()


def make_folder(folder: Path) -> None:
    """Every kind of clip the builder meets, good and bad."""
    folder.mkdir()
    (folder / "caption.gif").write_bytes(gif(captioned_frames()))
    single = np.zeros((64, 64, 3), np.uint8)
    cv2.circle(single, (32, 32), 20, (255, 200, 0), -1)
    (folder / "single.gif").write_bytes(gif([single]))
    (folder / "twin.gif").write_bytes((folder / "single.gif").read_bytes())
    (folder / "long.gif").write_bytes(gif([np.full((32, 32, 3), (i * 7) % 256, np.uint8) for i in range(2000)], 20))
    full = gif(captioned_frames())
    (folder / "broken.gif").write_bytes(full[: len(full) // 2])
    video = mp4(folder / "video.mp4", 24, 12)
    (folder / "broken.mp4").write_bytes(video[: len(video) // 2])
    (folder / "notes.txt").write_text("not a clip")
    (folder / ".hidden.gif").write_bytes(b"not even a gif")
    if REAL_MEME.is_file():  # a real meme, slowly zoomed
        meme = Image.open(REAL_MEME).convert("RGB")
        meme.thumbnail((240, 240))
        w, h = meme.size
        zoomed = [np.asarray(meme.resize((w, h), box=(i, i, w - i, h - i))) for i in range(0, 12, 2)]
        (folder / "meme.gif").write_bytes(gif(zoomed, 120))


def hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_cli(*argv: str) -> int:
    """`makeitmove ARGV` through the dataset command's own registration."""
    parser = ArgumentParser(prog="makeitmove")
    dataset_cli.register(parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser))
    args = parser.parse_args(argv)
    return int(args.handler(args))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Settings, DatasetReport]:
    """(the clips' folder, the config file, its settings, the report of the set built into folder/../set)."""
    root = tmp_path_factory.mktemp("dataset")
    make_folder(root / "clips")
    config = root / "config.toml"
    config.write_text(CONFIG)
    settings = load_settings(config)
    seen: list[float] = []
    report = build_dataset(
        root / "clips", root / "set", settings, family="ltx", trigger="memez", progress=lambda f, _: seen.append(f)
    )
    assert seen[0] == 0 and seen[-1] == 1 and seen == sorted(seen)
    return root / "clips", config, settings, report


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text("utf-8").splitlines()]


def test_good_clips_are_kept_and_bad_ones_skipped_with_a_reason(built) -> None:
    _, _, _, report = built
    kept = {e.source for e in report.entries}
    real = {"meme.gif"} if REAL_MEME.is_file() else set()
    assert kept == {"caption.gif", "single.gif", "long.gif", "video.mp4"} | real
    skipped = {s.source: s.reason for s in report.skipped}
    assert list(skipped) == ["broken.gif", "broken.mp4", "twin.gif"]
    assert "damaged or incomplete" in skipped["broken.gif"] and "damaged or incomplete" in skipped["broken.mp4"]
    assert skipped["twin.gif"] == "It is the same file as single.gif."
    manifest = json.loads((report.out / "manifest.json").read_text("utf-8"))
    assert manifest["skipped"] == [{"source": s.source, "reason": s.reason} for s in report.skipped]
    assert not kept & {"notes.txt", ".hidden.gif"} and not set(skipped) & {"notes.txt", ".hidden.gif"}


def test_every_clip_is_retimed_bucketed_and_its_keyframe_is_one_of_its_frames(built) -> None:
    _, _, _, report = built
    rows = records(report.out)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows) == [e.id for e in report.entries]
    for row in rows:
        assert set(row) == {
            "id", "clip", "keyframe", "caption", "meme_text", "source", "source_sha256", "frames", "fps", "width",
            "height", "family", "keyframe_index",
        }  # fmt: skip
        clip = np.load(report.out / row["clip"])
        assert clip.shape == (9, row["height"], row["width"], 3) and clip.dtype == np.uint8  # LTX: 8k+1 frames
        assert row["width"] % 32 == 0 and row["height"] % 32 == 0 and max(row["width"], row["height"]) == 128
        assert (row["frames"], row["fps"], row["family"]) == (9, 8, "ltx")
        keyframe = np.asarray(Image.open(report.out / row["keyframe"]))
        assert np.array_equal(keyframe, clip[row["keyframe_index"]])
        assert row["id"] == row["source_sha256"][:12]


def test_a_one_frame_gif_is_looped_and_a_2000_frame_gif_cut(built) -> None:
    _, _, _, report = built
    by_source = {e.source: e for e in report.entries}
    single = by_source["single.gif"]
    clip = np.load(report.out / f"clips/{single.id}.npy")
    assert single.fitted == "looped" and (clip == clip[0]).all()
    long = by_source["long.gif"]
    clip = np.load(report.out / f"clips/{long.id}.npy")
    assert long.fitted == "cut"
    # 20 ms frames shown at 8 fps: tick k shows frame floor(6.25 k), whose grey is 7 times its index
    assert [int(v) for v in clip[:, 0, 0, 0]] == [(int(6.25 * k) * 7) % 256 for k in range(9)]


def test_the_caption_is_read_and_taken_off_every_frame(built) -> None:
    folder, _, _, report = built
    entry = next(e for e in report.entries if e.source == "caption.gif")
    assert "HELLO" in entry.meme_text.upper() and "WORLD" in entry.meme_text.upper()
    clip = np.load(report.out / f"clips/{entry.id}.npy")
    shown = fit_frames(retime(np.stack(captioned_frames()), 10.0, 8), len(clip))  # 100 ms frames at 8 fps, looped
    source = resize_clip(shown, clip.shape[2], clip.shape[1])
    scale = clip.shape[2] / 240
    x0, y0, x1, y1 = (round(v * scale) for v in CAPTION_BOX)

    def ink(frames: np.ndarray) -> np.ndarray:  # the caption's white letters: nothing else is that light
        return (frames[:, y0:y1, x0:x1] > 215).all(axis=3).sum(axis=(1, 2))

    before, after = ink(source), ink(clip)
    assert (before > 30).all()
    assert (after <= 0.1 * before).all(), (before, after)
    # and the ball rolling beneath it is still there
    assert (clip[:, round(120 * scale), :, 0] > 150).any(axis=1).all()


def test_the_training_caption_is_the_synthesized_one_with_the_trigger_first(built) -> None:
    _, _, _, report = built
    for entry in report.entries:
        assert entry.caption.startswith("memez ") and len(entry.caption.split()) > 8
        assert entry.caption != entry.meme_text
        # the text was taken off the frames: the caption doesn't describe words the clip no longer shows
        assert "caption reads" not in entry.caption.lower()
        assert not entry.meme_text or entry.meme_text.lower()[:20] not in entry.caption.lower()
    real = next((e for e in report.entries if e.source == "meme.gif"), None)
    if real is not None:
        assert "ANTS" in real.meme_text


def test_the_manifest_lists_the_hash_of_every_file(built) -> None:
    _, _, settings, report = built
    manifest = json.loads((report.out / "manifest.json").read_text("utf-8"))
    files = hashes(report.out)
    del files["manifest.json"]
    assert manifest["files"] == files
    assert manifest["dataset_sha256"] == dataset_digest(files) == report.dataset_sha256
    assert (manifest["version"], manifest["family"], manifest["frames"], manifest["fps"]) == (1, "ltx", 9, 8)
    assert (manifest["side"], manifest["trigger"]) == (128, "memez")
    assert manifest["built_with"] == {"ocr": "rapidocr", "caption": "none", "synthesize": "template"}
    assert not [p for p in report.out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_the_command_rebuilds_the_same_bytes_and_says_what_it_did(built, tmp_path: Path, capsys) -> None:
    folder, config, _, report = built
    out = tmp_path / "again"
    code = run_cli("dataset", "build", str(folder), "-o", str(out), "--config", str(config), "--family", "ltx",
                   "--trigger", "memez")  # fmt: skip
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    assert hashes(out) == hashes(report.out)  # byte-identical, manifest included
    kept = [line for line in printed if line.startswith("kept ")]
    skipped = [line for line in printed if line.startswith("skipped ")]
    assert len(kept) == len(report.entries) and len(skipped) == len(report.skipped)
    assert any("long.gif" in line and "cut" in line for line in kept)
    assert any("broken.gif" in line and "damaged" in line for line in skipped)
    assert printed[-1].startswith(f"{len(report.entries)} kept, {len(report.skipped)} skipped: {out} (ltx, 9 frames")


def test_each_family_gets_its_own_buckets(built, tmp_path: Path) -> None:
    folder, _, settings, _ = built
    small = tmp_path / "small"
    small.mkdir()
    for name in ("single.gif", "video.mp4"):
        shutil.copy(folder / name, small / name)
    given = {"single.gif": "  a yellow ball\nspins "}  # one-shot tuning's prompt, in place of the written caption
    for family, frames, multiple in (("t2v", 12, 8), ("wan", 13, 32)):
        report = build_dataset(small, tmp_path / family, settings, family=family, trigger="zz", captions=given)
        assert len(report.entries) == 2
        for row in records(report.out):
            clip = np.load(report.out / row["clip"])
            assert clip.shape[0] == frames and clip.shape[1] % multiple == 0 and clip.shape[2] % multiple == 0
            assert row["caption"] == report.entries[[e.id for e in report.entries].index(row["id"])].caption
            if row["source"] == "single.gif":
                assert row["caption"] == "zz a yellow ball spins"
            else:
                assert row["caption"].startswith("zz ") and len(row["caption"].split()) > 8


def test_only_a_set_of_ours_is_replaced_and_a_cancel_leaves_nothing(built, tmp_path: Path) -> None:
    folder, _, settings, _ = built
    small = tmp_path / "small"
    small.mkdir()
    shutil.copy(folder / "single.gif", small / "single.gif")
    out = tmp_path / "set"
    first = build_dataset(small, out, settings, family="t2v")
    again = build_dataset(small, out, settings, family="t2v")  # over the set it built: replaced
    assert again.dataset_sha256 == first.dataset_sha256 and hashes(out)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(UserError, match="not a dataset built by"):
        build_dataset(small, foreign, settings, family="t2v")
    assert (foreign / "holiday.jpg").read_bytes() == b"mine"

    def cancel(fraction: float, detail: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dataset(small, tmp_path / "cancelled", settings, family="t2v", progress=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "set", "small"]


def test_the_command_fails_with_a_sentence_when_no_clip_can_be_used(built, tmp_path: Path, capsys) -> None:
    folder, config, _, _ = built
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(folder / "broken.gif", bad / "broken.gif")
    code = run_cli("dataset", "build", str(bad), "-o", str(tmp_path / "out"), "--config", str(config))
    captured = capsys.readouterr()
    assert code == 1 and not (tmp_path / "out").exists()
    assert captured.out.startswith("skipped  broken.gif: That clip is damaged")
    assert "error: no clip in" in captured.err
    (tmp_path / "empty").mkdir()
    for folder, words in ((tmp_path / "empty", "has no GIF, MP4, WebM or WebP files"), (bad / "x", "is not a folder")):
        with pytest.raises(UserError, match=words):
            run_cli("dataset", "build", str(folder), "-o", str(tmp_path / "x"))


def test_the_default_family_is_the_training_base_models(tmp_path: Path) -> None:
    settings = load_settings()
    assert default_family(settings) == "t2v"

    def i2v(model: str, family: str) -> Settings:
        return dataclasses.replace(
            settings,
            training=dataclasses.replace(settings.training, base="i2v"),
            generate=dataclasses.replace(settings.generate, i2v_model=model, i2v_family=family),
        )

    assert default_family(i2v("nowhere/missing-model", "auto")) == "ltx"  # not on this machine: LTX, the default
    assert default_family(i2v("nowhere/missing-model", "wan")) == "wan"
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanImageToVideoPipeline"}))
    assert default_family(i2v(str(tmp_path), "auto")) == "wan"
