"""Endpoints that make something from a clip or a dataset: /remix (everyone), tuning and training (admins).

They are jobs like any other (queued, watched over the same events, cancelled the same way), of their own
kind: the worker that owns the GPU runs them (engine/training/jobs.py), one training at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ValidationError

from engine.config import Settings
from engine.errors import ConfigError, UserError
from engine.runtime.gpu import model_path
from engine.service.api.handlers.admin import read_body
from engine.service.api.handlers.jobs import IDEMPOTENCY_KEY, accepted, admitted, parse_options, read_form
from engine.service.api.middleware import Refused, validation_message
from engine.service.api.models import JobForm, RemixOptions, TrainingRequest, TuneOptions
from engine.service.keys import QUEUE, REPOSITORY, SETTINGS
from engine.sniff import clip_suffix
from engine.stages.intake import Intake
from storage.records import NewJob

log = logging.getLogger(__name__)

GPU_BACKENDS = ("t2v", "i2v")


def needs_gpu(settings: Settings, what: str) -> str | None:
    """Why `what` can't run on this engine (no GPU video backend, or its text-to-video model missing), or None."""
    model = settings.generate.t2v_model
    if settings.generate.backend in GPU_BACKENDS:
        try:  # a few stats, never a walk of the model's files: this runs on every submission
            model_path(model, key="generate.t2v_model")
            return None
        except ConfigError:
            pass
    return (
        f'{what} needs the engine\'s GPU video backend: set [generate] backend = "t2v" in its config.toml '
        f"and fetch the text-to-video model with `hf download {model}` (or set t2v_model to a local folder)."
    )


async def _clip_form(request: web.Request, options_model: type[BaseModel]) -> tuple[JobForm, BaseModel, bytes]:
    """The multipart form of a clip job: who asks, the options, and a clip the worker can decode."""
    fields, clip = await read_form(request)
    try:
        form = JobForm.model_validate({k: v for k, v in fields.items() if k != "options"})
    except ValidationError as exc:
        raise Refused(400, "bad_form", validation_message(exc, "form")) from None
    options = parse_options(fields.get("options"), options_model)
    if clip is None:
        raise Refused(400, "missing_image", "Attach the GIF or video as the form's image field.")
    settings: Settings = request.app[SETTINGS]
    if len(clip) > settings.intake.max_bytes:
        raise Refused(413, "too_large", "That clip is too large for the engine.")
    if clip_suffix(clip) is None:
        raise Refused(415, "not_a_clip", "That file isn't a GIF or a video I can read (GIF, MP4, WebM or WebP).")
    return form, options, clip


async def _inspect(request: web.Request, clip: bytes) -> None:
    """An animated image's frame headers (sizes, frame count caps), read without decoding; videos: by the worker."""
    if clip_suffix(clip) in (".gif", ".apng", ".webp"):
        try:
            # in a thread: walking a hostile GIF's frame headers costs about a second of CPU
            await asyncio.get_running_loop().run_in_executor(None, Intake(request.app[SETTINGS].intake).inspect, clip)
        except UserError as exc:
            raise Refused(400, exc.code, exc.message) from None


async def submit_remix(request: web.Request) -> web.Response:
    """POST /v1/remixes: the motion of the attached GIF with the prompt's subject (409 without a GPU backend)."""
    reason = needs_gpu(request.app[SETTINGS], "Remixing")
    if reason is not None:
        raise Refused(409, "needs_gpu_backend", reason)
    form, options, clip = await _clip_form(request, RemixOptions)
    assert isinstance(options, RemixOptions)
    values = options.model_dump(exclude_none=True, exclude={"seed"})
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    return await _submit(request, form, values, seed, clip, "remix")


async def submit_tune(request: web.Request) -> web.Response:
    """POST /v1/admin/tunes: a checkpoint tuned on the attached GIF, written to the registry under its name."""
    reason = needs_gpu(request.app[SETTINGS], "Tuning")
    if reason is not None:
        raise Refused(409, "needs_gpu_backend", reason)
    form, options, clip = await _clip_form(request, TuneOptions)
    values = options.model_dump(exclude_none=True)
    return await _submit(request, form.model_copy(update={"is_admin": True}), values, 0, clip, "tune")


async def submit_training(request: web.Request) -> web.Response:
    """POST /v1/admin/trainings: a checkpoint trained on a dataset folder that `makeitmove dataset build` wrote."""
    settings: Settings = request.app[SETTINGS]
    reason = needs_gpu(settings, "Training")
    if reason is not None:
        raise Refused(409, "needs_gpu_backend", reason)
    body = await read_body(request, TrainingRequest, "training request")
    folder = Path(settings.training.datasets_dir) / body.dataset
    if not (folder / "manifest.json").is_file():
        raise Refused(
            400, "unknown_dataset",
            f"There is no dataset called {body.dataset} (build one with `makeitmove dataset build FOLDER -o "
            f"{Path(settings.training.datasets_dir).as_posix()}/{body.dataset}`).",
        )  # fmt: skip
    form = JobForm(platform=body.platform, user_id=body.user_id, chat_id=body.chat_id, is_admin=True)
    values = body.model_dump(exclude_none=True, exclude={"platform", "user_id", "chat_id"})
    return await _submit(request, form, values, 0, b"", "train")


async def _submit(
    request: web.Request, form: JobForm, options: dict[str, object], seed: int, data: bytes, kind: str
) -> web.Response:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise Refused(400, "bad_idempotency_key", "The Idempotency-Key must be 1 to 200 visible ASCII characters.")
    digest = hashlib.sha256(data)
    digest.update(b"\0" + json.dumps(options, sort_keys=True).encode())
    new = NewJob(
        platform=form.platform, user_id=form.user_id, chat_id=form.chat_id, is_admin=form.is_admin,
        options=options, seed=seed, image=data, idempotency_key=key, request_digest=digest.hexdigest(), kind=kind,
    )  # fmt: skip
    # who asks and how much first: a banned or limited user, a full queue or a repeated key costs no header walk
    existing = await admitted(request, lambda: request.app[REPOSITORY].precheck(new))
    if existing is not None:
        return await accepted(request, existing, created=False)
    if data:
        await _inspect(request, data)
    submitted = await admitted(request, lambda: request.app[QUEUE].submit(new))
    if submitted.created:
        log.info("%s job %s queued for %s:%s", kind, submitted.job.id, form.platform, form.user_id)
    return await accepted(request, submitted.job, created=submitted.created)
