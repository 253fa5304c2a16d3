"""Composes the stages: meme bytes in, animation bytes and a report out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from engine.config import Settings
from engine.errors import UserError
from engine.runtime.models import ModelPool
from engine.stages.caption import Caption
from engine.stages.detext import Detext
from engine.stages.encode import Encode
from engine.stages.generate import Generate
from engine.stages.intake import Intake
from engine.stages.ocr import Ocr
from engine.stages.postprocess import Postprocess
from engine.stages.synthesize import Synthesize
from engine.types import AnimationOptions, Encoded, Frames, OcrResult, ResolvedOptions, SceneInfo, Script

log = logging.getLogger(__name__)

STAGES = ("intake", "ocr", "detext", "caption", "synthesize", "generate", "postprocess", "encode")

ProgressCallback = Callable[[str, float], None]
"""Called with (stage, fraction of the whole job done, 0..1)."""


@dataclass(frozen=True)
class PipelineResult:
    """Everything one run made, for the CLI report and the job history."""

    encoded: Encoded
    ocr: OcrResult
    scene: SceneInfo
    script: Script
    options: ResolvedOptions
    backends: dict[str, str]
    timings: dict[str, float]  # seconds per stage, and "total"


class Pipeline:
    """The eight stages, built once and reused for every job."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models = ModelPool(settings.runtime)  # the models the backends share, loaded once per pipeline
        self.intake = Intake(settings.intake)
        self.ocr = Ocr(settings.ocr, self.models)
        self.detext = Detext(settings.detext)
        self.caption = Caption(settings.caption, self.models)
        self.synthesize = Synthesize(settings.synthesize)
        self.generate = Generate(settings.generate, self.models)
        self.postprocess = Postprocess(settings.postprocess)
        self.encode = Encode(settings.encode)
        self.backends = {
            "intake": "pillow",
            "ocr": settings.ocr.backend,
            "detext": f"opencv-{settings.detext.method}",
            "caption": settings.caption.backend,
            "synthesize": settings.synthesize.backend,
            "generate": settings.generate.backend,
            "postprocess": "caption-restore" if settings.postprocess.restore_caption else "none",
            "encode": "",  # filled per job: it depends on the format asked for
        }

    def resolve(self, options: AnimationOptions) -> ResolvedOptions:
        """Fill the configured defaults in; the values themselves were checked where the request came in."""
        gen, enc = self.settings.generate, self.settings.encode
        return ResolvedOptions(
            prompt=options.prompt,
            motion=options.motion or gen.motion,
            camera=options.camera or gen.camera,
            frames=options.frames if options.frames is not None else gen.frames,
            fps=options.fps if options.fps is not None else gen.fps,
            size=options.size if options.size is not None else enc.size,
            format=options.format or enc.format,
            max_bytes=options.max_bytes if options.max_bytes is not None else enc.max_bytes,
            fallback_format=options.fallback_format,
            seed=options.seed,
            checkpoint=options.checkpoint,
        )

    def run(self, data: bytes, options: AnimationOptions, progress: ProgressCallback | None = None) -> PipelineResult:
        """Animate one meme; UserError for anything wrong with the input or the options."""
        resolved = self.resolve(options)
        timings: dict[str, float] = {}
        started = time.perf_counter()

        @contextmanager
        def stage(name: str) -> Iterator[None]:
            if progress is not None:
                progress(name, STAGES.index(name) / len(STAGES))
            t0 = time.perf_counter()
            yield
            timings[name] = round(time.perf_counter() - t0, 4)
            log.debug("stage %s took %.3f s", name, timings[name])

        # 1. decode safely
        with stage("intake"):
            image = self.intake(data)
        # 2. read the caption
        with stage("ocr"):
            ocr = self.ocr(image)
        # 3. take the caption off the picture
        with stage("detext"):
            clean = self.detext(image, ocr)
        # 4. look at the picture
        with stage("caption"):
            scene = self.caption(clean, ocr)
        # 5. write the motion script
        with stage("synthesize"):
            script = self.synthesize(scene, prompt=resolved.prompt, camera=resolved.camera)
        # 6. make the frames
        with stage("generate"):
            frames = self.generate(clean, scene, script, resolved, progress=_within("generate", progress))
        # 7. put the caption back, crisp
        with stage("postprocess"):
            frames = self.postprocess(frames, image, clean, ocr=ocr)
        # 8. encode to the byte budget
        with stage("encode"):
            encoded = self.encode_frames(frames, resolved)
        timings["total"] = round(time.perf_counter() - started, 4)
        if progress is not None:
            progress("done", 1.0)
        log.info(
            "animated %s (%dx%d, %s) -> %s %d bytes in %.2f s",
            image.sha256[:12], image.width, image.height, frames.motion, encoded.format, len(encoded.data),
            timings["total"],
        )  # fmt: skip
        # The script says who wrote it: the LLM, or the template standing in for a failed one.
        backends = dict(self.backends, encode=encoded.format, synthesize=script.writer)
        return PipelineResult(encoded, ocr, scene, script, resolved, backends, timings)

    def encode_frames(self, frames: Frames, options: ResolvedOptions) -> Encoded:
        """The asked-for format; the fallback format instead when the first fits only by losing too much.

        Remix jobs (engine/training/jobs.py) encode their frames through here too.
        """
        fallback = options.fallback_format
        try:
            encoded = self.encode(frames, format=options.format, max_bytes=options.max_bytes)
        except UserError as exc:
            if fallback is None or fallback == options.format or exc.code != "too_large":
                raise
            log.info("%s can't meet %d bytes; encoding %s instead", options.format, options.max_bytes, fallback)
            return self.encode(frames, format=fallback, max_bytes=options.max_bytes)
        if fallback is None or fallback == options.format or acceptable(encoded, frames.fps):
            return encoded
        other = self.encode(frames, format=fallback, max_bytes=options.max_bytes)
        if (other.width, other.height) > (encoded.width, encoded.height) or (
            (other.width, other.height) == (encoded.width, encoded.height) and other.fps > encoded.fps
        ):
            log.info(
                "%s fit %d bytes only as %s; sending %s", encoded.format, options.max_bytes, encoded.fitted, fallback
            )
            return other
        return encoded


def _within(name: str, progress: ProgressCallback | None) -> Callable[[float], None] | None:
    """A stage's own 0..1 progress as the whole job's fraction (the callback may raise to cancel)."""
    if progress is None:
        return None
    start, width = STAGES.index(name) / len(STAGES), 1 / len(STAGES)
    return lambda fraction: progress(name, start + width * min(max(fraction, 0.0), 1.0))


def acceptable(encoded: Encoded, fps: float) -> bool:
    """The fit kept the picture's size and at least half its frame rate (fewer colours or lossier is fine)."""
    shrunk = any(concession.startswith("size=") for concession in encoded.fitted)
    return not shrunk and encoded.fps >= fps / 2
