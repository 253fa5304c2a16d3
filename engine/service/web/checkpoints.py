"""Checkpoints: the registry with each file's metadata; switch, upload, delete; start a training or a tuning."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from engine.errors import UserError
from engine.service.api.handlers.making import needs_gpu
from engine.service.api.middleware import validation_message
from engine.service.api.models import Training, TrainingRequest, TuneOptions
from engine.service.keys import CHECKPOINTS, QUEUE, REPOSITORY, SETTINGS
from engine.service.web.guard import posted
from engine.service.web.render import field, page
from engine.service.web.uploads import read_upload
from engine.sniff import clip_suffix
from engine.stages.intake import Intake
from storage.records import NewJob, Rejected

log = logging.getLogger(__name__)

PLATFORM, USER = "web", "dashboard"  # who the dashboard's training jobs belong to in the history
NOTICES = {
    "switched": "The active checkpoint is switched; jobs that start from now on use it.",
    "cleared": "No checkpoint is active now; jobs that start from now on use the base model.",
    "uploaded": "The checkpoint is uploaded.",
    "deleted": "The checkpoint is deleted.",
    "queued": "The job is queued; follow it in the queue.",
}


def datasets(folder: Path) -> list[str]:
    """The dataset folders `makeitmove dataset build` wrote (they hold a manifest.json)."""
    try:
        return sorted(p.name for p in folder.iterdir() if (p / "manifest.json").is_file() and p.name[0] != ".")
    except OSError:
        return []


async def checkpoints_page(
    request: web.Request, *, problem: str | None = None, status: int = 200
) -> web.StreamResponse:
    """GET /admin/checkpoints: every checkpoint with how it was made, the active one, and the forms."""
    settings = request.app[SETTINGS]
    found = await asyncio.to_thread(request.app[CHECKPOINTS].checkpoints)
    context: dict[str, Any] = {
        "title": "Checkpoints",
        "checkpoints": found,
        "made": {c.name: Training.of(c.metadata) for c in found},
        "active": await request.app[REPOSITORY].active_checkpoint(),
        "datasets": await asyncio.to_thread(datasets, Path(settings.training.datasets_dir)),
        "gpu_missing": needs_gpu(settings, "Making a checkpoint"),
        "max_upload_mb": settings.web.max_upload_mb,
        "notice": NOTICES.get(request.query.get("done", "")),
        "problem": problem,
    }
    return page(request, "checkpoints.html", context, status=status)


def _back(done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/admin/checkpoints?done={done}")


async def switch_checkpoint(request: web.Request) -> web.StreamResponse:
    """POST /admin/checkpoints/active: choose the checkpoint the next jobs start with (empty: none)."""
    name = field(await posted(request), "name")
    if name:
        try:
            await asyncio.to_thread(request.app[CHECKPOINTS].choose, name)
        except UserError as exc:
            return await checkpoints_page(request, problem=exc.message, status=400)
    await request.app[REPOSITORY].set_active_checkpoint(name or None)
    log.info("active checkpoint set to %s from the dashboard", name or "none")
    raise _back("switched" if name else "cleared")


async def upload_checkpoint(request: web.Request) -> web.StreamResponse:
    """POST /admin/checkpoints/upload: a .safetensors file, checked like the registry checks it, size-capped."""
    registry = request.app[CHECKPOINTS]
    registry.directory.mkdir(parents=True, exist_ok=True)
    cap = request.app[SETTINGS].web.max_upload_mb * 1024 * 1024
    fields, saved = await read_upload(
        request, file_field="file", max_bytes=cap, folder=registry.directory, suffix=".safetensors"
    )
    if saved is None:
        return await checkpoints_page(request, problem="Choose a .safetensors file to upload.", status=400)
    # No name typed: the file's own name without .safetensors, as the registry would list it.
    name = fields.get("name") or Path(fields.get("file.filename", "")).name.removesuffix(".safetensors")
    try:
        await asyncio.to_thread(registry.add, name, saved)
    except UserError as exc:
        return await checkpoints_page(request, problem=exc.message, status=400)
    finally:
        saved.unlink(missing_ok=True)
    raise _back("uploaded")


async def delete_checkpoint(request: web.Request) -> web.StreamResponse:
    """POST /admin/checkpoints/{name}/delete: remove a checkpoint that isn't the active one."""
    name = request.match_info["name"]
    if name == await request.app[REPOSITORY].active_checkpoint():
        return await checkpoints_page(
            request, problem=f"{name} is the active checkpoint; switch to another before deleting it.", status=400
        )
    try:
        await asyncio.to_thread(request.app[CHECKPOINTS].delete, name)
    except UserError as exc:
        return await checkpoints_page(request, problem=exc.message, status=400)
    raise _back("deleted")


async def start_training(request: web.Request) -> web.StreamResponse:
    """POST /admin/trainings: a checkpoint trained on a dataset folder (needs the GPU video backend)."""
    settings = request.app[SETTINGS]
    reason = needs_gpu(settings, "Training")
    if reason is not None:
        return await checkpoints_page(request, problem=reason, status=409)
    form = await posted(request)
    values: dict[str, Any] = {"dataset": field(form, "dataset"), "name": field(form, "name")}
    for key in ("steps", "rank"):
        if field(form, key):
            values[key] = field(form, key)
    values["resume"] = field(form, "resume") == "on"
    try:
        body = TrainingRequest.model_validate({**values, "platform": PLATFORM, "user_id": USER})
    except ValidationError as exc:
        return await checkpoints_page(request, problem=validation_message(exc, "training form"), status=400)
    if body.dataset not in datasets(Path(settings.training.datasets_dir)):
        return await checkpoints_page(request, problem=f"There is no dataset called {body.dataset}.", status=400)
    options = body.model_dump(exclude_none=True, exclude={"platform", "user_id", "chat_id"})
    return await _queue(request, options, b"", "train")


async def start_tuning(request: web.Request) -> web.StreamResponse:
    """POST /admin/tunes: a checkpoint tuned on one uploaded GIF or video (needs the GPU video backend)."""
    settings = request.app[SETTINGS]
    folder = Path(settings.training.work_dir) / "uploads"
    fields, saved = await read_upload(
        request, file_field="clip", max_bytes=settings.intake.max_bytes, folder=folder, suffix=".clip"
    )
    try:
        clip = saved.read_bytes() if saved is not None else b""
    finally:
        if saved is not None:
            saved.unlink(missing_ok=True)
    reason = needs_gpu(settings, "Tuning")
    if reason is not None:
        return await checkpoints_page(request, problem=reason, status=409)
    if not clip:
        return await checkpoints_page(request, problem="Choose the GIF or video to tune on.", status=400)
    if clip_suffix(clip) is None:
        return await checkpoints_page(
            request, problem="That file isn't a GIF or a video I can read (GIF, MP4, WebM or WebP).", status=415
        )
    values = {k: v for k, v in fields.items() if k in ("name", "prompt", "steps") and v}
    try:
        options = TuneOptions.model_validate(values)
    except ValidationError as exc:
        return await checkpoints_page(request, problem=validation_message(exc, "tuning form"), status=400)
    if clip_suffix(clip) in (".gif", ".apng", ".webp"):
        try:
            await asyncio.to_thread(Intake(settings.intake).inspect, clip)
        except UserError as exc:
            return await checkpoints_page(request, problem=exc.message, status=400)
    return await _queue(request, options.model_dump(exclude_none=True), clip, "tune")


async def _queue(request: web.Request, options: dict[str, Any], data: bytes, kind: str) -> web.StreamResponse:
    digest = hashlib.sha256(data)
    digest.update(b"\0" + json.dumps(options, sort_keys=True).encode())
    new = NewJob(
        platform=PLATFORM, user_id=USER, chat_id=USER, is_admin=True, options=options, seed=0, image=data,
        request_digest=digest.hexdigest(), kind=kind,
    )  # fmt: skip
    try:
        submitted = await request.app[QUEUE].submit(new)
    except Rejected as exc:
        return await checkpoints_page(request, problem=exc.message, status=409)
    log.info("%s job %s queued from the dashboard", kind, submitted.job.id)
    raise web.HTTPSeeOther(f"/admin/jobs/{submitted.job.id}")
