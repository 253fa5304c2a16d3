"""Benchmark: how the animations look on the real memes, per generate backend, all in one run.

Usage: python bench/quality.py [--backends procedural,acting] [--limit N] [--memes id1,id2] [--out DIR] [--seed N]
Runs the whole pipeline (48 frames, 480 px GIF, the defaults) on each meme with each backend and measures
the decoded GIF (definitions in bench/motion_metrics.py):
- subject motion: the subject's box (the largest Haar frontal face on the clean picture, else the scene's
  subject) is aligned frame by frame to the first frame on its own features (or the whole frame's, when
  those explain it better), so a camera move drops out; the 95th percentile of the Farneback flow left
  inside it, caption excluded, max over frames, px at 480 px;
- caption change between consecutive frames (textmask pixels), and OCR word recall on the middle frame,
  against RapidOCR's recall on the still input at the same size (the baseline);
- loop seam: last → first frame difference over the median step (held frames left out); tearing: the share
  of a frame's edges the first frame, moved by the whole frame's camera transform, can't explain (worst
  frame), and the same once the dense flow has moved it too (what is left: holes, seams, smears), also away
  from the subject's head (the subject's box grown to twice its size is left out: an acting face draws new
  edges there by design, an open mouth's inside, a shut eye's lashes);
- white patches: frames with a new near-white region over 0.5 % of the frame; seconds per stage.
Writes one contact sheet per backend (6 frames per meme) and the per-meme figures as JSON to --out.
Prints figures only; nothing here fails. Target (photo memes with a face, proxied by a Haar face on the
clean picture): the face moves on its own (≥ 1.5 px) in ≥ 90 %.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageSequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.figures import percentile  # noqa: E402
from bench.motion_metrics import (  # noqa: E402
    Box,
    align,
    box_mask,
    box_through,
    caption_change,
    compose,
    invert,
    new_white_area,
    residual_motion,
    seam_ratio,
    tear_shares,
    tearing,
    widened,
    word_recall,
)
from engine.config import load_settings, replace  # noqa: E402
from engine.errors import ConfigError, UserError  # noqa: E402
from engine.pipeline import STAGES, Pipeline  # noqa: E402
from engine.runtime.model_files import FILELESS_BACKENDS  # noqa: E402
from engine.stages.generate import BACKENDS  # noqa: E402
from engine.types import AnimationOptions  # noqa: E402

MOVES_PX = 1.5  # the subject "moves on its own" from this residual flow on
WHITE_SHARE = 0.005  # a new near-white region this large (share of the frame) is a white patch
SHEET_FRAMES = 6
SHEET_ROW = 150  # px: a contact sheet row's height, before shrinking to fit SHEET_BYTES
SHEET_BYTES = 8_000_000
CAPTION_PAD = 3  # px at output size: the caption's soft edge, left out of every picture measure
FEATURE_PAD = 8  # px: corners this close to the caption sit on the (still) caption, not the picture
HALO_PAD = 12  # px: how far from the caption a still halo of the input's own pixels may reach


def decode_gif(data: bytes) -> np.ndarray:
    """Every frame of a GIF, composited, as (N, H, W, 3) uint8 RGB."""
    with Image.open(io.BytesIO(data)) as gif:
        return np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)])


@functools.cache
def face_cascade() -> cv2.CascadeClassifier:
    """OpenCV's bundled Haar frontal face cascade, loaded once."""
    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")  # type: ignore[attr-defined]


def largest_face(rgb: np.ndarray) -> Box | None:
    """The largest frontal face OpenCV's bundled Haar cascade finds, or None."""
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    side = max(24, round(0.08 * min(gray.shape)))
    faces = face_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
    return int(x), int(y), int(x + w), int(y + h)


def scaled_box(box: Box, factor: float) -> Box:
    """`box` times `factor`."""
    return tuple(round(v * factor) for v in box)  # type: ignore[return-value]


def measure(frames: np.ndarray, source: np.ndarray, caption: np.ndarray, subject: Box) -> dict[str, Any]:
    """The per-meme figures of one animation; `source` is the input at the frames' size, `subject` in its pixels."""
    first = frames[0]
    height, width = first.shape[:2]
    ignore, off_caption = widened(caption, CAPTION_PAD), ~widened(caption, FEATURE_PAD)
    # Pixels next to the caption that never change are the caption's halo, restored as still as the caption:
    # against a moving picture they'd read as the subject moving.
    unchanging = (frames.max(axis=0).astype(np.int16) - frames.min(axis=0)).max(axis=2) <= 2
    still = caption | (unchanging & widened(caption, HALO_PAD))
    # the first frame may already be zoomed or shifted: carry the subject's box onto it
    to_source = align(first, source, off_caption)
    box = box_through(subject, invert(to_source), width, height)
    inside = box_mask(first.shape, box)
    limit = WHITE_SHARE * width * height
    motion, tears, torn, torn_elsewhere = [0.0], [0.0], [0.0], [0.0]
    # the subject's head, hair and neck: where an acting face's own new edges (an open mouth, a shut eye) belong
    x0, y0, x1, y1 = box
    cx, cy, half_w, half_h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0), (y1 - y0)
    around = box_mask(first.shape, (round(cx - half_w), round(cy - half_h), round(cx + half_w), round(cy + half_h)))
    white = [new_white_area(first, source, to_source, ignore) > limit]
    on_subject = on_frame = None
    for frame in frames[1:]:
        on_frame = align(frame, first, off_caption, on_frame)
        on_subject = align(frame, first, inside & off_caption, on_frame if on_subject is None else on_subject)
        # A small or repetitive box can mislead its own fit (stripes lock onto the wrong period): the camera
        # is whichever of the two fits explains the box better, and the next frame starts from it.
        left = {residual_motion(frame, first, m, inside & ~ignore, still): m for m in (on_subject, on_frame)}
        motion.append(min(left))
        on_subject = left[min(left)]
        tears.append(tearing(frame, first, on_frame, ignore))
        flowed = tear_shares(frame, first, on_frame, [ignore, ignore | around], follow_flow=True)
        torn.append(flowed[0])
        torn_elsewhere.append(flowed[1])
        white.append(new_white_area(frame, source, compose(to_source, on_frame), ignore) > limit)
    return {
        "box": box,
        "motion_px": max(motion),
        "moving_frames": sum(m >= MOVES_PX for m in motion),
        "caption_change": caption_change(list(frames), caption),
        "seam": seam_ratio(list(frames)),
        "tearing": max(tears),
        "tearing_flow": max(torn),
        "tearing_elsewhere": max(torn_elsewhere),
        "white_frames": int(sum(white)),
    }


class Reader:
    """RapidOCR as the engine runs it (its bundled default models), reading an RGB picture's words."""

    def __init__(self) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError:
            sys.exit("RapidOCR is missing: pip install rapidocr==3.10.0 onnxruntime (or pip install -e .)")
        self.engine = RapidOCR(params={"Global.log_level": "warning"})
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)  # "no text found" on a frame is a figure, not news

    def __call__(self, rgb: np.ndarray) -> str:
        """Every line read, joined with spaces."""
        out = self.engine(np.ascontiguousarray(rgb[:, :, ::-1]))
        return " ".join(out.txts or ())


def meme_inputs(root: Path, meme: dict[str, Any], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The input, the clean picture (RGB, at their own size) and the caption mask at the output size."""
    rendered = np.asarray(Image.open(root / meme["image"]).convert("RGB"))
    clean = np.asarray(Image.open(root / meme["clean"]).convert("RGB"))
    mask = np.asarray(Image.open(root / meme["textmask"]).convert("L"))
    caption = cv2.resize(mask, size, interpolation=cv2.INTER_AREA) >= 128
    return rendered, clean, caption


def run_backend(
    name: str, memes: list[dict[str, Any]], root: Path, read: Reader, baseline: dict[str, float], seed: int
) -> list[dict[str, Any]]:
    """The figures of every meme animated with one generate backend; the sheet's frames under "sheet"."""
    pipeline = Pipeline(replace(load_settings(), generate={"backend": name}))
    options = AnimationOptions(seed=seed)
    pipeline.run((root / memes[0]["image"]).read_bytes(), options)  # load the OCR models, as a running engine has
    rows = []
    for meme in memes:
        try:
            result = pipeline.run((root / meme["image"]).read_bytes(), options)
        except UserError as exc:
            print(f"  {meme['id']}: the pipeline refused it ({exc}); left out")
            continue
        frames = decode_gif(result.encoded.data)
        height, width = frames.shape[1:3]
        rendered, clean, caption = meme_inputs(root, meme, (width, height))
        source = cv2.resize(rendered, (width, height), interpolation=cv2.INTER_AREA)
        factor = width / rendered.shape[1]
        # the scene's boxes are in the input's pixels: the set's pictures are under intake's working size
        face, subject = largest_face(clean), result.scene.subject
        if face is not None:
            kind, box = "face", scaled_box(face, factor)
        elif subject is not None:
            kind, box = f"scene {subject.kind}", scaled_box(subject.box, factor)
        else:
            kind, box = "whole frame", (0, 0, width, height)
        row = {"id": meme["id"], "subject": kind, "frames": len(frames), **measure(frames, source, caption, box)}
        middle = read(frames[len(frames) // 2])
        recall = word_recall(meme["text"], middle)
        row.update(recall=recall, baseline_recall=baseline[meme["id"]], recall_lost=baseline[meme["id"]] - recall)
        row["read"] = middle
        row.update(timings=result.timings, motion=result.script.camera, bytes=len(result.encoded.data))
        row["sheet"] = frames[np.linspace(0, len(frames) - 1, SHEET_FRAMES).round().astype(int)]
        rows.append(row)
        print(
            f"  {meme['id']:<24} {kind:<14} motion {row['motion_px']:5.2f} px caption {row['caption_change']:5.2f}"
            f" recall {row['recall']:.2f}  seam {row['seam']:5.2f}  tear {row['tearing']:.3f}/{row['tearing_flow']:.3f}"
            f"  white {row['white_frames']:2d}  {result.timings['total']:.2f} s",
            flush=True,
        )
    return rows


def contact_sheet(rows: list[dict[str, Any]], path: Path) -> tuple[int, int]:
    """One row of frames per meme (the measured subject box drawn in green), shrunk until the PNG fits SHEET_BYTES."""
    row_height = SHEET_ROW
    while True:
        strips = []
        for row in rows:
            scale = row_height / row["sheet"].shape[1]
            box = scaled_box(row["box"], scale)
            tiles = []
            for frame in row["sheet"]:
                tile = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                cv2.rectangle(tile, box[:2], (box[2] - 1, box[3] - 1), (0, 255, 0), 1)
                tiles.append(np.pad(tile, ((0, 0), (0, 2), (0, 0))))
            label = np.full((row_height, 150, 3), 24, np.uint8)
            for i, text in enumerate((row["id"], row["subject"], f"{row['motion_px']:.2f} px")):
                cv2.putText(label, text[:22], (4, 16 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (235, 235, 235), 1)
            strips.append(np.hstack([label, *tiles]))
        wide = max(strip.shape[1] for strip in strips)
        sheet = np.vstack([np.pad(s, ((0, 2), (0, wide - s.shape[1]), (0, 0)), constant_values=64) for s in strips])
        Image.fromarray(sheet).save(path, compress_level=9)
        if path.stat().st_size <= SHEET_BYTES or row_height < 40:
            return sheet.shape[1], sheet.shape[0]
        row_height = int(row_height * 0.85 * (SHEET_BYTES / path.stat().st_size) ** 0.5)


# name, key, better ("low" or "high"), target (None: no target), format. The face target is the product's;
# the others are yardsticks of what a viewer notices, chosen here: move them if they prove too strict or lax.
METRICS = (
    ("subject motion, Haar faces (px)", "face_motion", "high", MOVES_PX, "{:.2f}"),
    ("subject motion, all memes (px)", "motion_px", "high", MOVES_PX, "{:.2f}"),
    ("caption change / frame (levels)", "caption_change", "low", 1.0, "{:.2f}"),
    ("OCR word recall, middle frame", "recall", "high", None, "{:.2f}"),
    ("OCR word recall, still input (base)", "baseline_recall", "high", None, "{:.2f}"),
    ("recall lost vs the still input", "recall_lost", "low", 0.0, "{:.2f}"),
    ("loop seam (x median step)", "seam", "low", 2.0, "{:.2f}"),
    ("tearing vs camera, worst frame", "tearing", "low", 0.05, "{:.3f}"),
    ("tearing vs camera+flow, worst frame", "tearing_flow", "low", 0.05, "{:.3f}"),
    ("  same, away from the subject's head", "tearing_elsewhere", "low", 0.05, "{:.3f}"),
    ("white-patch frames per meme", "white_frames", "low", 0, "{:.0f}"),
    ("seconds, whole pipeline", "seconds", "low", None, "{:.2f}"),
)


def values(rows: list[dict[str, Any]], key: str) -> list[float]:
    """One metric's per-meme values (only memes with a Haar face for "face_motion")."""
    if key == "face_motion":
        return [r["motion_px"] for r in rows if r["subject"] == "face"]
    if key == "seconds":
        return [r["timings"]["total"] for r in rows]
    return [float(r[key]) for r in rows]


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per metric: n, median, p5, p95 and the share meeting its target."""
    figures = {}
    for _, key, better, target, _ in METRICS:
        got = values(rows, key)
        if not got:
            continue
        meets = [v >= target if better == "high" else v <= target for v in got] if target is not None else []
        figures[key] = {
            "n": len(got), "median": statistics.median(got), "p5": percentile(got, 5), "p95": percentile(got, 95),
            "meeting": sum(meets) / len(meets) if meets else float("nan"),
        }  # fmt: skip
    return figures


def print_table(name: str, rows: list[dict[str, Any]], figures: dict[str, dict[str, float]]) -> None:
    """The backend's figures, then its median seconds per stage."""
    print(f"\n{name}: {len(rows)} memes, {rows[0]['frames']} frames, {max(rows[0]['sheet'].shape[1:3])} px GIF")
    print(f"{'metric':<36} {'n':>3} {'median':>8} {'p5':>8} {'p95':>8}  {'target':<9} {'meeting':>7}")
    for label, key, better, target, fmt in METRICS:
        if key not in figures:
            continue
        f = figures[key]
        aim = "" if target is None else f"{'≥' if better == 'high' else '≤'} {target:g}"
        share = "" if target is None else f"{100 * f['meeting']:6.0f} %"
        cells = " ".join(f"{fmt.format(f[c]):>8}" for c in ("median", "p5", "p95"))
        print(f"{label:<36} {f['n']:>3} {cells}  {aim:<9} {share:>7}")
    print(f"memes with any white-patch frame: {sum(r['white_frames'] > 0 for r in rows)}")
    stages = "  ".join(f"{s} {statistics.median(r['timings'][s] for r in rows):.3f}" for s in (*STAGES, "total"))
    print(f"median seconds per stage: {stages}")


def print_ratios(names: list[str], summaries: dict[str, dict[str, dict[str, float]]]) -> None:
    """The second backend's medians and shares against the first's, measured in this run."""
    base, other = names[0], names[1]
    print(f"\n{other} / {base} (same run)")
    print(f"{'metric':<36} {'median ratio':>12} {'meeting ' + base:>16} {'meeting ' + other:>16}")
    for label, key, _, target, _ in METRICS:
        a, b = summaries[base].get(key), summaries[other].get(key)
        if not a or not b:
            continue
        ratio = f"{b['median'] / a['median']:.2f}" if a["median"] else "n/a (0 base)"
        shares = ("", "") if target is None else (f"{100 * a['meeting']:.0f} %", f"{100 * b['meeting']:.0f} %")
        print(f"{label:<36} {ratio:>12} {shares[0]:>16} {shares[1]:>16}")


def chosen_backends(asked: str | None) -> list[str]:
    """The backends to run: the ones named that exist, or every one that needs no downloaded weights."""
    if not asked:
        return [name for name in BACKENDS if name in FILELESS_BACKENDS]
    names = []
    for name in (n.strip() for n in asked.split(",") if n.strip()):
        if name in BACKENDS:
            names += [] if name in names else [name]
        else:
            print(f"no generate backend named {name!r} (known: {', '.join(BACKENDS)}); skipped")
    return names


def main() -> None:
    """Run every chosen backend over the chosen memes and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", help="comma-separated generate backends (default: the CPU ones without weights)")
    parser.add_argument("--memes", help="comma-separated meme ids (default: all)")
    parser.add_argument("--limit", type=int, help="only the first N memes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/makeitmove-quality"))
    parser.add_argument("--set", type=Path, default=REPO.parent / "shared" / "memes", help="the real meme set")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    truth = args.set / "ground_truth.json"
    if not truth.is_file():
        sys.exit(f"The real meme set is not at {args.set} (it lives beside the repository); pass --set DIR.")
    memes = json.loads(truth.read_text("utf-8"))["memes"]
    if args.memes:
        wanted = {m.strip() for m in args.memes.split(",")}
        memes = [m for m in memes if m["id"] in wanted]
        for missing in sorted(wanted - {m["id"] for m in memes}):
            print(f"no meme {missing!r} in the set; skipped")
    memes = memes[: args.limit]
    names = chosen_backends(args.backends)
    if not memes or not names:
        sys.exit("Nothing to run: no memes or no backends left.")
    args.out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    size = load_settings().encode.size
    read = Reader()
    baseline = {}
    for meme in memes:  # the caption as RapidOCR reads the still input at the output's size
        rendered = np.asarray(Image.open(args.set / meme["image"]).convert("RGB"))
        scale = size / max(rendered.shape[:2])
        still = cv2.resize(rendered, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        baseline[meme["id"]] = word_recall(meme["text"], read(still))
    summaries, ran = {}, []
    for name in names:
        print(f"\n{name}: animating {len(memes)} memes", flush=True)
        t0 = time.perf_counter()
        try:
            rows = run_backend(name, memes, args.set, read, baseline, args.seed)
        except ImportError as exc:
            print(f"{name} needs {exc.name or exc}, which is not installed; pip install it to run {name}. Skipped.")
            continue
        except ConfigError as exc:  # e.g. its model files aren't here; the message says how to fetch them
            print(f"{name} can't run here: {exc}. Skipped.")
            continue
        if not rows:
            continue
        sheet = args.out / f"contact-{name}.png"
        w, h = contact_sheet(rows, sheet)
        per_meme = [{k: v for k, v in r.items() if k != "sheet"} for r in rows]
        (args.out / f"quality-{name}.json").write_text(json.dumps(per_meme, indent=1), "utf-8")
        summaries[name] = summary(rows)
        ran.append(name)
        print_table(name, rows, summaries[name])
        print(f"{name}: {time.perf_counter() - t0:.0f} s; contact sheet {sheet} ({w}x{h} px)")
    if len(ran) >= 2:
        print_ratios(ran, summaries)
    print(f"\nwall time {time.perf_counter() - started:.0f} s; per-meme figures in {args.out}")


if __name__ == "__main__":
    main()
