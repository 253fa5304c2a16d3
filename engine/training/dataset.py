"""A training set from a folder of meme GIFs and videos (`makeitmove dataset build`).

Each clip is decoded safely, re-timed to the training fps, looped or cut to the family's frame bucket and
scaled to its size bucket; the caption the OCR finds on three frames spread over the clip is taken off every
frame; one keyframe is chosen (`engine.training.clips.keyframe_scores`: the sharpest frame with the most
salient subject) and the product's own caption and synthesize stages write the training caption from it,
as the meme paper did (its synthesized descriptions beat the raw meme text). A clip that can't be used is
skipped with a sentence; the set is written beside DATASET and renamed into place when complete, and the same
folder and settings always give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
from PIL import Image

from engine.config import Settings
from engine.errors import UserError
from engine.runtime.models import ModelPool
from engine.stages.caption import Caption
from engine.stages.detext import Detext
from engine.stages.ocr import Ocr
from engine.stages.synthesize import Synthesize
from engine.training.clips import (
    FAMILIES,
    bucket_frames,
    bucket_size,
    choose_keyframe,
    fit_frames,
    read_clip,
    resize_clip,
    retime,
    training_fps,
)  # fmt: skip
from engine.types import DecodedImage, OcrResult, Script, TextBlock
from engine.units import human_bytes

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
"""Called with (fraction of the whole build done, 0..1, a short detail); it may raise to cancel."""

CLIP_SUFFIXES = (".gif", ".webp", ".apng", ".mp4", ".m4v", ".mov", ".webm", ".mkv")
MANIFEST = "manifest.json"
METADATA = "metadata.jsonl"
VERSION = 1
_OCR_FRAMES = 3  # the caption is looked for on this many frames spread over the clip
_SAME_PLACE_IOU = 0.8  # blocks read on two frames that overlap this much are one caption where it was
_SAME_TEXT = 0.6  # readings this alike (difflib's ratio) say the same thing, OCR slips aside
# OCR and text removal run on frames this many times the training side (at least _MIN_WORK_SIDE): small
# captions read better, and the inpainting's blur shrinks with the frame.
_WORK_SCALE = 2
_MIN_WORK_SIDE = 512


@dataclass(frozen=True)
class DatasetEntry:
    """One clip kept in the set, as the report shows it."""

    id: str  # 12 hex of the source's sha256
    source: str  # the file's name in the folder
    caption: str
    meme_text: str
    frames: int
    width: int
    height: int
    keyframe_index: int
    fitted: str  # "looped" (too short for the bucket), "cut" (too long) or ""


@dataclass(frozen=True)
class SkippedClip:
    """A file of the folder that is not in the set, and why."""

    source: str
    reason: str


@dataclass(frozen=True)
class DatasetReport:
    """What a build kept and skipped; nothing was written when `entries` is empty."""

    out: Path
    family: str
    entries: tuple[DatasetEntry, ...]
    skipped: tuple[SkippedClip, ...]
    dataset_sha256: str  # "" when nothing was written


def default_family(settings: Settings) -> str:
    """The family of the model `makeitmove train` uses by default: [training] base, and for i2v its model's."""
    if settings.training.base == "t2v":
        return "t2v"
    generate = settings.generate
    if generate.i2v_family != "auto":
        return generate.i2v_family
    from engine.backends.video.i2v import family_of
    from engine.runtime.model_files import locate

    found = locate("generate.i2v_model", generate.i2v_model, True)
    return family_of(found.path, "auto") if found.present and found.path else "ltx"


def build_dataset(
    folder: Path, out: Path, settings: Settings, *, family: str, trigger: str | None = None,
    captions: Mapping[str, str] | None = None, progress: Progress | None = None,
) -> DatasetReport:  # fmt: skip
    """Build the training set of every clip in `folder` into `out`; a clip that can't be used is skipped.

    `captions` gives some files' captions by file name (one-shot tuning's prompt), in place of the written
    ones; the trigger word still goes first. `out` may be missing, an empty folder or a set this function
    built (it is replaced); anything else is refused. Nothing is written when no clip can be used.
    """
    # 1. check the arguments and the places before any work
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    sources = clip_files(folder)
    _check_out(out, folder)
    words = " ".join((settings.training.trigger if trigger is None else trigger).split())
    builder = _ClipBuilder(settings, family, words)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    (staging / "clips").mkdir(parents=True)
    (staging / "keyframes").mkdir()
    entries: dict[str, tuple[DatasetEntry, dict[str, object]]] = {}
    skipped: list[SkippedClip] = []
    files: dict[str, str] = {}
    try:
        # 2. each clip, in file-name order, written as soon as it is made
        for done, path in enumerate(sources):
            if progress is not None:
                progress(done / len(sources), f"clip {done + 1} of {len(sources)}: {path.name}")
            try:
                made = builder.make(path, (captions or {}).get(path.name))
            except UserError as exc:
                log.info("skipped %s: %s", path.name, exc.message)
                skipped.append(SkippedClip(path.name, exc.message))
                continue
            entry, record, clip, keyframe = made
            if entry.id in entries:
                skipped.append(SkippedClip(path.name, f"It is the same file as {entries[entry.id][0].source}."))
                continue
            files[str(record["clip"])] = _write(staging, str(record["clip"]), _npy(clip))
            files[str(record["keyframe"])] = _write(staging, str(record["keyframe"]), _png(keyframe))
            entries[entry.id] = (entry, record)
            log.info("kept %s as %s: %r", path.name, entry.id, entry.caption)
        if progress is not None:
            progress(1.0, f"{len(entries)} clips kept, {len(skipped)} skipped")
        if not entries:
            return DatasetReport(out, family, (), tuple(skipped), "")
        # 3. the metadata and the manifest, then the finished set takes the place of `out`
        lines = [json.dumps(entries[key][1], sort_keys=True, ensure_ascii=False) + "\n" for key in sorted(entries)]
        files[METADATA] = _write(staging, METADATA, "".join(lines).encode("utf-8"))
        digest = dataset_digest(files)
        manifest = {
            "version": VERSION, "family": family, "fps": builder.fps, "frames": builder.frames,
            "side": settings.training.side, "trigger": words, "files": files, "dataset_sha256": digest,
            "skipped": [{"source": s.source, "reason": s.reason} for s in skipped],
            "built_with": {"ocr": settings.ocr.backend, "caption": settings.caption.backend,
                           "synthesize": settings.synthesize.backend},
        }  # fmt: skip
        text = json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        _write(staging, MANIFEST, text.encode("utf-8"))
        _install(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when installed
    return DatasetReport(out, family, tuple(entries[key][0] for key in sorted(entries)), tuple(skipped), digest)


def clip_files(folder: Path) -> list[Path]:
    """The folder's clip files (by extension, hidden files left out), sorted by name; a UserError if none."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder.", code="no_folder")
    found = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in CLIP_SUFFIXES and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    if not found:
        raise UserError(f"{folder} has no GIF, MP4, WebM or WebP files.", code="no_clips")
    return found


def dataset_digest(files: dict[str, str]) -> str:
    """The sha256 over the sorted "path sha256" lines of a set's files."""
    return hashlib.sha256("".join(f"{path} {files[path]}\n" for path in sorted(files)).encode("utf-8")).hexdigest()


def is_dataset(folder: Path) -> bool:
    """Whether `folder` holds a set `build_dataset` wrote (its manifest says so)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("version") == VERSION and "dataset_sha256" in manifest


def training_caption(script: Script, trigger: str) -> str:
    """The trigger word, then the script's motion prompt, then its description less any sentence quoting the meme text.

    The motion leads because the generate stage's prompt starts with it too, and CLIP reads 77 tokens only.
    The caption was taken off the clip's frames, so words describing it would teach the model text it never sees.
    """
    description = " ".join(
        sentence for sentence in _sentences(script.description) if not _quotes(sentence, script.meme_text)
    )
    return " ".join(" ".join(part.split()) for part in (trigger, script.motion_prompt, description) if part)


def _sentences(text: str) -> list[str]:
    return [part for part in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if part]


def _quotes(sentence: str, meme_text: str) -> bool:
    """The sentence quotes the meme's text (or names the caption)."""
    said = " ".join(meme_text.split()).lower()
    lowered = sentence.lower()
    return bool(said) and (said[:40] in lowered or lowered.startswith(("the caption reads", "the text reads")))


class _ClipBuilder:
    """The stages a dataset needs, built once, and what they make of one clip file."""

    def __init__(self, settings: Settings, family: str, trigger: str) -> None:
        training = settings.training
        self.settings = settings
        self.family = family
        self.trigger = trigger
        self.frames = bucket_frames(family, training.frames)
        self.fps = training_fps(training.fps, family)
        self.work_side = min(settings.intake.working_side, max(_WORK_SCALE * training.side, _MIN_WORK_SIDE))
        models = ModelPool(settings.runtime)
        self.ocr = Ocr(settings.ocr, models)
        self.detext = Detext(settings.detext)
        self.caption = Caption(settings.caption, models)
        self.synthesize = Synthesize(settings.synthesize)

    def make(self, path: Path, given: str | None) -> tuple[DatasetEntry, dict[str, object], np.ndarray, np.ndarray]:
        """The entry, its metadata record, the clip and its keyframe; a UserError when the file can't be used.

        The caption is `given` (after the trigger word) when there is one, else the stages write it.
        """
        training = self.settings.training
        # 1. decode, re-time, and keep no more frames than the bucket holds
        data = _read(path, self.settings.intake.max_bytes)
        clip = read_clip(
            data, self.settings.intake, max_frames=training.max_clip_frames, name=path.name, side=self.work_side,
            max_seconds=self.frames / self.fps,
        )  # fmt: skip
        timed = retime(clip.frames, clip.durations, self.fps, limit=self.frames)
        ticks = round(sum(clip.durations) * self.fps)  # the whole clip's length at the training fps
        fitted = "looped" if ticks < self.frames else "cut" if clip.cut or ticks > self.frames else ""
        # 2. read the caption on a few frames, take every line read off every frame
        picks = sorted({round(i * (len(timed) - 1) / max(1, _OCR_FRAMES - 1)) for i in range(_OCR_FRAMES)})
        places, said = _union([self.ocr(_decoded(timed[i], clip.sha256)) for i in picks])
        cleans = [self.detext(_decoded(frame, clip.sha256), places) for frame in timed]
        # 3. the size bucket, the keyframe, then the whole bucket (a short clip loops)
        height, width = timed.shape[1:3]
        size = bucket_size(self.family, width, height, training.side)
        frames = resize_clip(np.stack([c.pixels for c in cleans]), *size)
        key = choose_keyframe(frames)
        frames = fit_frames(frames, self.frames)
        # 4. the training caption, written by the product's own caption and synthesize stages
        meme_text = " ".join(said.text.split())
        if given is not None:
            caption = " ".join(f"{self.trigger} {given}".split())
        else:
            caption = training_caption(self.synthesize(self.caption(cleans[key], said)), self.trigger)
        ident = clip.sha256[:12]
        record: dict[str, object] = {
            "id": ident, "clip": f"clips/{ident}.npy", "keyframe": f"keyframes/{ident}.png", "caption": caption,
            "meme_text": meme_text, "source": path.name, "source_sha256": clip.sha256,
            "frames": self.frames, "fps": self.fps, "width": size[0], "height": size[1],
            "family": self.family, "keyframe_index": key,
        }  # fmt: skip
        entry = DatasetEntry(ident, path.name, caption, meme_text, self.frames, *size, key, fitted)
        return entry, record, frames, frames[key]


def _read(path: Path, max_bytes: int) -> bytes:
    """A clip file's bytes, refused unread when over the intake's byte cap."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UserError(
                f"That file is too large ({human_bytes(size, up=True)}; the limit is {human_bytes(max_bytes)}).",
                code="too_large",
            )
        with path.open("rb") as file:
            return file.read(max_bytes + 1)  # a file that grew meanwhile is still capped (read_clip refuses it)
    except OSError as exc:
        raise UserError(f"That file cannot be read ({exc.strerror or exc}).", code="no_file") from None


def _decoded(frame: np.ndarray, sha256: str) -> DecodedImage:
    """One frame as the stages take a picture."""
    height, width = frame.shape[:2]
    return DecodedImage(pixels=frame, sha256=sha256, source_format="CLIP", source_size=(width, height), animated=True)


def _union(results: list[OcrResult]) -> tuple[OcrResult, OcrResult]:
    """(every caption block read on any frame, for the text removal; each caption once, for its text).

    A moving caption is read at several places, and each is taken off; a block at the same place as one kept
    already is the same reading. The text is the frame read with the most, then any other frame's block
    that says something else (a caption that changes).
    """
    places: list[TextBlock] = []
    for block in (block for result in results for block in result.blocks):
        if all(_iou(block.box, other.box) < _SAME_PLACE_IOU for other in places):
            places.append(block)
    said = list(max(results, key=lambda result: len(result.text)).blocks)
    for block in (block for result in results for block in result.blocks):
        if all(_similarity(block.text, other.text) < _SAME_TEXT for other in said):
            said.append(block)
    return OcrResult(blocks=tuple(places)), OcrResult(blocks=tuple(said))


def _similarity(a: str, b: str) -> float:
    """How alike two readings are, 0..1, case and spacing aside."""
    return SequenceMatcher(None, " ".join(a.upper().split()), " ".join(b.upper().split())).ratio()


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two boxes."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _check_out(out: Path, folder: Path) -> None:
    """Refuse an `out` that is a file, the clips' folder, or a non-empty folder not built by us."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; give a folder for the dataset.", code="output")
    if out.resolve() == folder.resolve():
        raise UserError("The dataset can't be written into the folder of clips; choose another -o.", code="output")
    if out.is_dir() and any(out.iterdir()) and not is_dataset(out):
        raise UserError(
            f"{out} exists and is not a dataset built by `makeitmove dataset build`; choose another -o or remove it.",
            code="output",
        )


def _install(staging: Path, out: Path) -> None:
    """Put the finished set in the place of `out` (missing, empty, or an older set of ours)."""
    if not out.exists():
        os.rename(staging, out)
        return
    old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
    os.rename(out, old)
    os.rename(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def _write(folder: Path, name: str, data: bytes) -> str:
    """Write `data` to folder/name; its sha256."""
    (folder / name).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _npy(frames: np.ndarray) -> bytes:
    """np.save's bytes of a uint8 array."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(frames, dtype=np.uint8), allow_pickle=False)
    return buffer.getvalue()


def _png(frame: np.ndarray) -> bytes:
    """An RGB PNG with no metadata (no time, no software name): the same frame, the same bytes."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()
