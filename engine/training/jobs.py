"""Remix, tune and train jobs as the worker runs them: a clip or a dataset in, an animation or a checkpoint out.

They run on the thread that owns the GPU, one at a time, like animations; the queue's progress callback
raises to cancel or abandon them between steps. Training needs the GPU's memory for itself, so the
resident video model is freed before it and loaded again when a remix samples.

- tune: the one clip becomes a one-clip dataset (caption taken off, re-timed, sized), then a LoRA is
  trained on it and only its temporal layers are saved (MotionDirector: the spatial LoRA soaks up the
  clip's look during training and is dropped, so a new prompt can change the subject); the file goes
  into the registry under the admin's name, its metadata naming the clip's hash.
- remix: the clip's tuned checkpoint is found by the clip's hash (one an admin tuned into the registry,
  or this engine's own cache under [training] work_dir) or tuned once and cached; then the new prompt is
  sampled from the clip's DDIM-inverted latents (engine/training/remix.py) and encoded like an animation.
- train: a dataset folder under [training] datasets_dir; a recovered job resumes from its last state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import Settings, replace
from engine.errors import UserError
from engine.types import AnimationOptions

log = logging.getLogger(__name__)

JobProgress = Callable[[str, float], None]
"""The queue's callback: (stage, fraction of the whole job); it raises to cancel or abandon the job."""

TUNE_SHARE = 0.6  # of a remix's progress when it has to tune first
PREPARE_SHARE = 0.15  # of a tune's progress: the one-clip dataset (OCR, caption, synthesize)
DETAIL_EVERY_S = 10.0  # a training's step/loss/ETA line reaches the log at most this often


Made = tuple[bytes | None, str | None, dict[str, Any], dict[str, float]]
"""What a job made, as the queue stores it: bytes and format (None, None for a checkpoint), script, timings."""


def run_training_job(record: Any, data: bytes | None, registry: Any, runner: Any, progress: JobProgress) -> Made:
    """Run a claimed remix, tune or train job: the queue's record, its clip, the checkpoint registry, the pipeline."""
    settings: Settings = runner.settings
    started = time.perf_counter()
    if record.kind == "remix":
        assert data is not None
        encoded, script = _remix(record, data, settings, registry, runner, progress)
        timings = {"total": round(time.perf_counter() - started, 4)}
        return encoded.data, encoded.format, script, timings
    if record.kind == "tune":
        assert data is not None
        made = _tune(record, data, settings, registry.directory, _resident(runner), progress)
    elif record.kind == "train":
        made = _train(record, settings, registry.directory, _resident(runner), progress)
    else:
        raise UserError(f"This engine doesn't know jobs of the kind {record.kind!r}.", code="unknown_kind")
    progress("done", 1.0)
    timings = {"total": round(time.perf_counter() - started, 4)}
    return None, None, made, timings


def _resident(runner: Any) -> Any:
    from engine.backends.video.resident import Resident

    return runner.models.shared("video", Resident)


# --- tune ---------------------------------------------------------------------------------------
def _tune(
    record: Any, data: bytes, settings: Settings, registry_dir: Path, resident: Any, progress: JobProgress
) -> dict[str, Any]:
    """The clip's temporal LoRA into the registry under the asked name."""
    name = str(record.options["name"])
    steps = record.options.get("steps")
    result = tune_clip(
        data, settings, name=name, registry_dir=registry_dir, prompt=record.options.get("prompt"),
        steps=int(steps) if steps else None, resume=record.attempts > 1, resident=resident,
        progress=_staged(progress, 0.0, 1.0),
    )  # fmt: skip
    return {"checkpoint_made": result.path.stem, **_trained(result)}


def tune_clip(
    data: bytes, settings: Settings, *, name: str, registry_dir: Path, prompt: str | None = None,
    steps: int | None = None, resume: bool = False, resident: Any = None,
    progress: Callable[[str, float], None] | None = None,
) -> Any:  # fmt: skip
    """One-shot tuning (GIF-Tune, done the MotionDirector way): `data` -> `registry_dir/name.safetensors`."""
    from engine.runtime.gpu import free_memory
    from engine.training.trainer import TrainSpec, train

    report = progress or (lambda _stage, _fraction: None)
    t = settings.training
    sha = hashlib.sha256(data).hexdigest()
    folder = Path(t.work_dir).expanduser() / "tunes" / sha[:16]
    # 1. the clip as a one-clip dataset, at the tuning length; the prompt (if given) is its caption
    report("preparing", 0.0)
    dataset = _one_clip_dataset(data, folder, settings, prompt)
    # 2. the LoRA; the resident video model leaves the GPU to make room for training
    if resident is not None:
        resident.release()
    free_memory()
    spec = TrainSpec.from_settings(
        settings, dataset, name, rank=t.tune_rank, steps=steps or t.tune_steps, which="all", save_which="temporal",
        kind="tune", source_sha256=sha, resume=resume,
    )  # fmt: skip
    detail = _detail_logger(name)

    def trained(fraction: float, text: str) -> None:
        detail(text)
        report("training", PREPARE_SHARE + (1 - PREPARE_SHARE) * fraction)

    result = train(spec, settings, progress=trained, registry_dir=registry_dir)
    log.info("tuned %s on clip %s in %d steps: %s", name, sha[:12], result.steps, result.path)
    return result


def _one_clip_dataset(data: bytes, folder: Path, settings: Settings, prompt: str | None) -> Path:
    """`folder/dataset`: the clip re-timed, cut or looped to [training] tune_frames, caption taken off."""
    from engine.sniff import clip_suffix
    from engine.training.dataset import build_dataset, is_dataset

    out = folder / ("dataset" if not prompt else "dataset-" + _words_digest(prompt))
    if is_dataset(out):
        return out  # the same clip and words: the same bytes (the builder is deterministic)
    folder.mkdir(parents=True, exist_ok=True)
    # a folder of its own: two workers tuning the same GIF at once never share one (the set is renamed into place)
    source = Path(tempfile.mkdtemp(prefix=".source-", dir=folder))
    try:
        clip = f"clip{clip_suffix(data) or '.gif'}"  # the builder takes files by their suffix
        (source / clip).write_bytes(data)
        tuning = replace(settings, training={"frames": settings.training.tune_frames})
        captions = {clip: prompt} if prompt else None
        report = build_dataset(source, out, tuning, family="t2v", captions=captions)
    finally:
        shutil.rmtree(source, ignore_errors=True)
    if not report.entries:
        reason = report.skipped[0].reason if report.skipped else "it has no frames I can read"
        raise UserError(f"That clip can't be used for tuning: {_lower(reason)}", code="bad_clip")
    return out


# --- remix --------------------------------------------------------------------------------------
def _remix(
    record: Any, data: bytes, settings: Settings, registry: Any, runner: Any, progress: JobProgress
) -> tuple[Any, dict[str, Any]]:
    """The clip's motion with the prompt's subject, encoded as the job asked."""
    from engine.training.clips import read_clip, retime, training_fps
    from engine.training.remix import remix

    t = settings.training
    fps = training_fps(t.fps, "t2v")
    resident = _resident(runner)
    prompt = str(record.options["prompt"])
    sha = hashlib.sha256(data).hexdigest()
    # 1. the clip's tuned checkpoint: an admin's from the registry, this engine's cached one, or tune it now
    checkpoint, reused = find_tuned(sha, registry, settings), True
    share = 0.0
    if checkpoint is None:
        reused, share = False, TUNE_SHARE
        cache = Path(t.work_dir).expanduser() / "tunes" / sha[:16]
        tuned = tune_clip(
            data, settings, name=f"remix-{sha[:16]}", registry_dir=cache, resident=resident,
            progress=_staged(progress, 0.0, share, stage="tuning"),
        )  # fmt: skip
        checkpoint = tuned.path
    # 2. the clip's frames at the tuning length, then the prompt sampled from their inverted latents
    clip = read_clip(
        data, settings.intake, max_frames=t.max_clip_frames, side=settings.intake.working_side,
        max_seconds=t.tune_frames / fps,
    )  # fmt: skip
    frames = retime(clip.frames, clip.durations, fps, limit=t.tune_frames)
    options = runner.resolve(AnimationOptions(**_animation_options(record)))
    sampling = _staged(progress, share, 0.95, stage="sampling")
    made = remix(
        settings, resident, frames, prompt, checkpoint=checkpoint, seed=record.seed, frames=t.tune_frames,
        fps=fps, size=options.size, progress=lambda fraction: sampling("sampling", fraction),
    )  # fmt: skip
    # 3. encoded to the job's format and byte budget, as an animation is
    progress("encode", 0.95)
    encoded = runner.encode_frames(made, options)
    script = {"kind": "remix", "prompt": prompt, "checkpoint_used": checkpoint.stem, "tuned_now": not reused}
    return encoded, script


def find_tuned(sha: str, registry: Any, settings: Settings) -> Path | None:
    """A checkpoint tuned on the clip with this hash: this engine's cached one, or a valid one in the registry.

    The registry's listing reads every header with its own caps and safe parser, so a hostile file there is
    an invalid entry, never a failed remix.
    """
    cached = Path(settings.training.work_dir).expanduser() / "tunes" / sha[:16] / f"remix-{sha[:16]}.safetensors"
    if cached.is_file():
        return cached
    for checkpoint in registry.checkpoints():
        if checkpoint.valid and checkpoint.metadata.get("kind") == "tune":
            if checkpoint.metadata.get("source_sha256") == sha:
                return Path(checkpoint.path)
    return None


def _animation_options(record: Any) -> dict[str, Any]:
    keys = {f.name for f in dataclasses.fields(AnimationOptions)} - {"prompt", "seed", "checkpoint"}
    return {k: v for k, v in record.options.items() if k in keys}


# --- train --------------------------------------------------------------------------------------
def _train(record: Any, settings: Settings, registry_dir: Path, resident: Any, progress: JobProgress) -> dict[str, Any]:
    """A dataset folder under [training] datasets_dir -> a checkpoint in the registry."""
    from engine.runtime.gpu import free_memory
    from engine.training.trainer import TrainSpec, train

    options = record.options
    folder = Path(settings.training.datasets_dir).expanduser() / str(options["dataset"])
    resident.release()
    free_memory()
    spec = TrainSpec.from_settings(
        settings, folder, str(options["name"]), base=options.get("base"), rank=options.get("rank"),
        steps=options.get("steps"), lr=options.get("lr"), resume=bool(options.get("resume")) or record.attempts > 1,
    )  # fmt: skip
    detail = _detail_logger(spec.name)

    def trained(fraction: float, text: str) -> None:
        detail(text)
        progress("training", fraction)

    result = train(spec, settings, progress=trained, registry_dir=registry_dir)
    return {"checkpoint_made": result.path.stem, **_trained(result)}


# --- shared -------------------------------------------------------------------------------------
def _trained(result: Any) -> dict[str, Any]:
    """What a training job's history keeps: steps, speed and a thinned loss curve."""
    losses = list(result.losses)
    every = max(1, len(losses) // 100)
    return {
        "steps": result.steps, "seconds_per_step": round(result.seconds_per_step, 4),
        "losses": [round(v, 6) for v in losses[::every]], "loss_every": every,
    }  # fmt: skip


def _staged(progress: Callable[[str, float], None], start: float, end: float, *, stage: str | None = None) -> Any:
    """A part's own (stage, 0..1) as the whole job's fraction between start and end; `stage` renames its stages."""

    def report(name: str, fraction: float) -> None:
        progress(stage or name, start + (end - start) * min(max(fraction, 0.0), 1.0))

    return report


def _detail_logger(name: str) -> Callable[[str], None]:
    last = 0.0

    def detail(text: str) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= DETAIL_EVERY_S:
            last = now
            log.info("training %s: %s", name, text)

    return detail


def _words_digest(words: str) -> str:
    return hashlib.sha256(" ".join(words.split()).encode("utf-8")).hexdigest()[:12]


def _lower(sentence: str) -> str:
    return sentence[:1].lower() + sentence[1:] if sentence[1:2].islower() else sentence
