"""The one job body: a claimed job's stored request → the pipeline's run → how it ended.

Both queues call `run_job` on the thread that owns the pipeline; each then records the outcome its own
way (LocalJobQueue in this process, the Procrastinate worker under its claim).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from engine.errors import UserError
from engine.pipeline import PipelineResult, ProgressCallback
from engine.runtime.gpu import free_memory
from engine.service.checkpoints import CheckpointRegistry
from engine.types import AnimationOptions
from storage.records import JobRecord

log = logging.getLogger(__name__)

OUT_OF_MEMORY = "The engine ran out of memory making this animation; try a smaller size or fewer frames."
TRAINING_OUT_OF_MEMORY = (
    "The engine ran out of memory training; ask for a lower rank, or set fewer [training] frames or a smaller "
    "[training] side."
)
# A running job's progress row is written at most this often (a write per step cost more than a quick job).
PROGRESS_INTERVAL_S = 0.5
# How long the pipeline thread waits for one repository call on the queue's event loop.
DB_TIMEOUT_S = 60.0
IMAGE_EXPIRED = "The picture for this job is no longer kept; send it again."


class Runner(Protocol):
    """What a queue needs of a pipeline: engine.pipeline.Pipeline satisfies it.

    Remix and training jobs also read its `settings` and `models` (the ModelPool holding the one video model).
    """

    def run(self, data: bytes, options: AnimationOptions, progress: ProgressCallback | None = None) -> PipelineResult:
        """Animate one meme."""
        ...


class Cancelled(Exception):
    """Raised inside the pipeline, at a stage boundary, when its job was cancelled (or is no longer ours)."""


class Abandoned(Exception):
    """Raised inside the pipeline, at a stage boundary, when the queue stops; the job stays running for recovery."""


@dataclass(frozen=True)
class Finished:
    """What a done job stores: its bytes (None for a job that made a checkpoint), script and timings."""

    data: bytes | None
    format: str | None
    script: dict[str, Any]
    timings: dict[str, float]

    @property
    def summary(self) -> str:
        """For the log line."""
        if self.data is not None:
            return f"{len(self.data)} bytes of {self.format}"
        return f"checkpoint {self.script.get('checkpoint_made')}"


@dataclass(frozen=True)
class Outcome:
    """How one run ended: what it made, or a failure's code and the sentence the user sees."""

    finished: Finished | None = None
    code: str = ""
    message: str = ""


def job_options(record: JobRecord, checkpoint_file: str | None) -> AnimationOptions:
    """The stored request as pipeline options: it was checked by the API's JobOptions before it was stored."""
    return AnimationOptions(**record.options, seed=record.seed, checkpoint=checkpoint_file)


def run_job(
    record: JobRecord, checkpoint: str | None, data: bytes | None, registry: CheckpointRegistry,
    runner: Runner, progress: ProgressCallback,
) -> Outcome:  # fmt: skip
    """Run one claimed job; Cancelled and Abandoned (raised by `progress`) pass through to the queue."""
    try:
        if record.kind != "animate":
            # Remixes and trainings: imported here, so an engine that never runs one never loads torch for it.
            from engine.training.jobs import run_training_job

            if data is None and record.kind != "train":
                raise UserError(IMAGE_EXPIRED, code="image_expired")
            pipeline = getattr(runner, "pipeline", runner)  # under the service's metrics wrapper
            return Outcome(finished=Finished(*run_training_job(record, data, registry, pipeline, progress)))
        checkpoint_file = str(registry.resolve(checkpoint)) if checkpoint is not None else None
        if data is None:
            raise UserError(IMAGE_EXPIRED, code="image_expired")
        result = runner.run(data, job_options(record, checkpoint_file), progress=progress)
        return Outcome(finished=Finished(result.encoded.data, result.encoded.format, script_of(result), result.timings))
    except (Cancelled, Abandoned):
        raise
    except UserError as exc:
        return Outcome(code=exc.code, message=exc.message)
    except Exception as exc:
        if not out_of_memory(exc):
            log.exception("job %s failed with an internal error", record.id)
            what = "making this animation" if record.kind in ("animate", "remix") else "making this checkpoint"
            message = f"Something went wrong on our side {what} (job {record.id}); please try again."
            return Outcome(code="internal_error", message=message)
        log.warning("job %s ran out of memory: %s", record.id, exc)
    free_memory()  # out here, once the exception and the frames it holds are gone
    if record.training:
        return Outcome(code="out_of_memory", message=TRAINING_OUT_OF_MEMORY)
    return Outcome(code="out_of_memory", message=OUT_OF_MEMORY)


def script_of(result: PipelineResult) -> dict[str, Any]:
    """The job history's script: what the engine read, understood and decided, as JSON."""
    script = dataclasses.asdict(result.script)
    ocr = [{"text": b.text, "box": list(b.box), "confidence": round(b.confidence, 3)} for b in result.ocr.blocks]
    # which backend ran each stage (the dashboard's job page shows them)
    return {"ocr": ocr, **script, "backends": dict(result.backends)}


def out_of_memory(exc: BaseException) -> bool:
    """A MemoryError or torch's OutOfMemoryError."""
    # torch.cuda.OutOfMemoryError is matched by name: importing torch here would load it on CPU-only installs.
    return isinstance(exc, MemoryError) or any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__)
