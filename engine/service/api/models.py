"""The HTTP API's request and response bodies: pydantic models the handlers and the OpenAPI spec share."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.vocabulary import FPS, FRAMES, MAX_PROMPT_CHARS, SEED, SIZE, Camera, Format, Motion
from storage.records import Ban, JobRecord, Limits, Quota, Stats

Status = Literal["queued", "running", "done", "failed", "cancelled"]
Kind = Literal["animate", "remix", "tune", "train"]

# Names bots send for platforms and people; bounded so they fit an index and a log line.
NAME = r"^[A-Za-z0-9_.:@-]{1,64}$"
MAX_LIMIT = 10**9
MAX_TRAINING_STEPS = 100_000  # limit numbers above this are a typo, not a policy


class Strict(BaseModel):
    """A request body: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class JobOptions(Strict):
    """How the animation should look; every key is optional and bounded like the pipeline's own checks."""

    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS, description="how it should move, in words")
    motion: Motion | None = None
    camera: Camera | None = None
    format: Format | None = None
    max_bytes: int | None = Field(default=None, ge=1, le=2**31 - 1, description="the result's byte budget (always met)")
    fallback_format: Format | None = Field(
        default=None, description="sent instead when `format` fits max_bytes only by shrinking the picture or its fps"
    )
    seed: int | None = Field(
        default=None, ge=SEED[0], le=SEED[1], description="same seed, same bytes; random when absent"
    )
    fps: int | None = Field(default=None, ge=FPS[0], le=FPS[1])
    frames: int | None = Field(default=None, ge=FRAMES[0], le=FRAMES[1])
    size: int | None = Field(default=None, ge=SIZE[0], le=SIZE[1], description="the longer side, px")


class JobForm(Strict):
    """Who asks for a job: the multipart form's text fields besides `options`."""

    platform: str = Field(pattern=NAME, examples=["telegram"])
    user_id: str = Field(pattern=NAME)
    chat_id: str = Field(pattern=NAME)
    is_admin: bool = Field(default=False, description="the bot vouches that this user is one of its admins")


class JobSubmission(Strict):
    """The multipart/form-data body of POST /v1/jobs (documentation only: the handler reads the parts)."""

    image: bytes = Field(json_schema_extra={"contentMediaType": "application/octet-stream"})
    options: str | None = Field(default=None, description="JSON object: see JobOptions")
    platform: str = Field(pattern=NAME)
    user_id: str = Field(pattern=NAME)
    chat_id: str = Field(pattern=NAME)
    is_admin: Literal["true", "false"] | None = None


class Requester(Strict):
    """Who asks to cancel: must be the job's own user unless the admin token is used."""

    platform: str | None = Field(default=None, pattern=NAME)
    user_id: str | None = Field(default=None, pattern=NAME)


class ErrorBody(BaseModel):
    """Every error: a machine code and a sentence a chat user can read."""

    code: str
    message: str


class RateLimited(ErrorBody):
    """A 429: when to try again."""

    retry_after: float = Field(description="seconds")


class JobAccepted(BaseModel):
    """A submission taken (202) or found again by its idempotency key (200)."""

    id: str
    status: Status
    position: int | None = Field(description="1-based place in the queue while queued")


class Progress(BaseModel):
    """How far a job got."""

    stage: str | None
    fraction: float = Field(ge=0, le=1)


class JobView(BaseModel):
    """A job as bots see it."""

    id: str
    kind: Kind = Field(description="what the job makes: an animation, a remix, or a checkpoint (tune, train)")
    status: Status
    position: int | None
    progress: Progress
    error: ErrorBody | None
    script: dict[str, Any] | None
    checkpoint: str | None
    made: str | None = Field(description="the checkpoint a done tune or train job wrote to the registry")
    shareable: bool = Field(
        description="its requester may share it to the gallery: the gallery is public and this is a done animation "
        "or remix whose result is kept"
    )
    seed: int
    timings: dict[str, float] | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: JobRecord, position: int | None, *, gallery: bool = False) -> JobView:
        """The view of a stored job; `gallery`: this engine's gallery is public ([gallery] public)."""
        error = ErrorBody(code=job.error_code or "failed", message=job.error) if job.error else None
        # Stage writes are coalesced while a job runs, so a finished job's row may still name an earlier stage.
        stage = "done" if job.status == "done" else job.stage
        return cls(
            id=job.id, kind=job.kind, status=job.status,  # type: ignore[arg-type]
            position=position if job.status == "queued" else None,
            made=made if isinstance(made := (job.script or {}).get("checkpoint_made"), str) else None,
            shareable=gallery and job.shareable,
            progress=Progress(stage=stage, fraction=min(1.0, max(0.0, job.fraction))), error=error,
            script=job.script, checkpoint=job.checkpoint, seed=job.seed, timings=job.timings,
            created_at=job.created_at, finished_at=job.finished_at,
        )  # fmt: skip


class JobList(BaseModel):
    """A user's newest jobs first."""

    jobs: list[JobView]


class ShareView(BaseModel):
    """A result in the gallery."""

    job_id: str
    shared: Literal[True]
    shared_at: datetime = Field(description="when its requester first shared it")


class QuotaView(BaseModel):
    """What a user has left."""

    jobs_left: int
    jobs_limit: int
    window_s: int
    concurrent_left: int
    concurrent_limit: int
    refills_at: datetime | None

    @classmethod
    def of(cls, quota: Quota) -> QuotaView:
        """The view of a repository quota."""
        return cls(**vars(quota))


class Training(BaseModel):
    """How a checkpoint was made, from its file's metadata (checkpoints made elsewhere may say nothing)."""

    kind: Literal["train", "tune"] | None = Field(description="trained on a dataset, or tuned on one GIF")
    family: str | None = Field(description="t2v (ModelScope), ltx or wan")
    base_model: str | None
    rank: int | None
    alpha: int | None
    steps: int | None
    dataset_sha256: str | None
    trigger: str | None
    examples: list[str] = Field(description="training captions, a few")

    @classmethod
    def of(cls, metadata: dict[str, str]) -> Training | None:
        """Read from untrusted strings: numbers only when they are numbers, text cut short."""
        if not any(key in metadata for key in ("family", "base_model", "rank", "steps")):
            return None

        def text(key: str, limit: int = 200) -> str | None:
            value = metadata.get(key)
            return value[:limit] if value else None

        def number(key: str) -> int | None:
            value = metadata.get(key, "")
            return int(value) if value.isascii() and value.isdigit() and len(value) <= 9 else None

        examples: list[str] = []
        try:
            listed = json.loads(metadata.get("examples", "[]")[:4096])
        except ValueError:
            listed = []
        if isinstance(listed, list):
            examples = [e[:200] for e in listed[:3] if isinstance(e, str)]
        kind = metadata.get("kind")
        return cls(
            kind=kind if kind in ("train", "tune") else None, family=text("family", 16),  # type: ignore[arg-type]
            base_model=text("base_model"), rank=number("rank"), alpha=number("alpha"), steps=number("steps"),
            dataset_sha256=text("dataset_sha256", 64), trigger=text("trigger", 64), examples=examples,
        )  # fmt: skip


class CheckpointInfo(BaseModel):
    """One LoRA checkpoint in the registry."""

    name: str
    size_bytes: int
    modified: datetime
    tensors: int
    valid: bool
    problem: str | None = Field(description="why the file can't be used")
    active: bool
    training: Training | None = Field(default=None, description="how it was made, when its file says")


class CheckpointList(BaseModel):
    """The registry's checkpoints and the one jobs start with."""

    checkpoints: list[CheckpointInfo]
    active: str | None


class ActiveCheckpoint(Strict):
    """Which checkpoint jobs start with from now on; null for none."""

    name: str | None = Field(max_length=200)


class StatsView(BaseModel):
    """Numbers for admins."""

    jobs_by_status: dict[str, int]
    queue_depth: int
    jobs_last_24h: int
    users_last_24h: int
    bans: int
    active_checkpoint: str | None
    mean_seconds_last_100: float | None

    @classmethod
    def of(cls, stats: Stats) -> StatsView:
        """The view of repository stats."""
        return cls(**vars(stats))


class BanRequest(Strict):
    """Ban one user."""

    platform: str = Field(pattern=NAME)
    user_id: str = Field(pattern=NAME)
    reason: str = Field(default="", max_length=500)


class BanView(BaseModel):
    """A ban in force."""

    platform: str
    user_id: str
    reason: str
    created_at: datetime

    @classmethod
    def of(cls, ban: Ban) -> BanView:
        """The view of a stored ban."""
        return cls(**vars(ban))


class BanLifted(BaseModel):
    """A ban that was lifted."""

    platform: str
    user_id: str
    lifted: bool


class LimitsBody(Strict):
    """The six rate-limit numbers, all positive."""

    user_jobs: int = Field(ge=1, le=MAX_LIMIT, description="jobs per user per window")
    user_window_s: int = Field(ge=1, le=MAX_LIMIT)
    user_concurrent: int = Field(ge=1, le=MAX_LIMIT, description="queued or running at once")
    chat_jobs: int = Field(ge=1, le=MAX_LIMIT, description="jobs per chat per window")
    chat_window_s: int = Field(ge=1, le=MAX_LIMIT)
    queue_max: int = Field(ge=1, le=MAX_LIMIT, description="queued jobs at once, for everyone")

    @classmethod
    def of(cls, limits: Limits) -> LimitsBody:
        """The view of the limits in force."""
        return cls(**vars(limits))

    def record(self) -> Limits:
        """As the repository's dataclass."""
        return Limits(**self.model_dump())


class Health(BaseModel):
    """Liveness, for load balancers and the bots' start-up checks."""

    status: Literal["ok"]
    pipeline_loaded: bool
    queue_depth: int


CHECKPOINT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # the registry's names (engine/service/checkpoints.py)


class RemixOptions(Strict):
    """POST /v1/remixes: the GIF's motion with a new subject."""

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="the new subject and scene")
    format: Format | None = None
    max_bytes: int | None = Field(default=None, ge=1, le=2**31 - 1, description="the result's byte budget")
    fallback_format: Format | None = None
    seed: int | None = Field(default=None, ge=SEED[0], le=SEED[1])
    size: int | None = Field(default=None, ge=SIZE[0], le=SIZE[1], description="the longer side, px")


class TuneOptions(Strict):
    """POST /v1/admin/tunes: a checkpoint tuned on one GIF."""

    name: str = Field(pattern=CHECKPOINT_NAME, description="the checkpoint's name in the registry")
    prompt: str | None = Field(
        default=None,
        max_length=MAX_PROMPT_CHARS,
        description="what happens in the GIF; the engine writes one if absent",
    )
    steps: int | None = Field(default=None, ge=1, le=MAX_TRAINING_STEPS)


class TrainingRequest(Strict):
    """POST /v1/admin/trainings: a checkpoint trained on a dataset folder under [training] datasets_dir."""

    dataset: str = Field(pattern=CHECKPOINT_NAME, description="a folder name under [training] datasets_dir")
    name: str = Field(pattern=CHECKPOINT_NAME, description="the checkpoint's name in the registry")
    base: Literal["t2v", "i2v"] | None = None
    rank: int | None = Field(default=None, ge=1, le=256)
    steps: int | None = Field(default=None, ge=1, le=MAX_TRAINING_STEPS)
    lr: float | None = Field(default=None, gt=0, le=1)
    resume: bool = Field(default=False, description="continue the last training of this name")
    platform: str = Field(pattern=NAME)
    user_id: str = Field(pattern=NAME)
    chat_id: str = Field(default="admin", pattern=NAME)
