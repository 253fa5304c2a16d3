"""Admin endpoints (ENGINE_ADMIN_TOKEN): checkpoints, stats, bans and limits."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from engine.service.api.bodies import read_json_object
from engine.service.api.middleware import Refused, json_model, validation_message
from engine.service.api.models import (
    NAME,
    ActiveCheckpoint,
    BanLifted,
    BanRequest,
    BanView,
    CheckpointInfo,
    CheckpointList,
    LimitsBody,
    StatsView,
    Training,
)
from engine.service.keys import CHECKPOINTS, REPOSITORY

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


async def read_body(request: web.Request, model: type[M], what: str) -> M:
    """The JSON body validated by `model`; a 400 with a sentence naming the field otherwise."""
    if request.content_type != "application/json":
        raise Refused(415, "not_json", f"Send the {what} as application/json.")
    data = await read_json_object(request, "request body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Refused(400, "bad_body", validation_message(exc, what)) from None


async def _listing(request: web.Request) -> CheckpointList:
    registry = request.app[CHECKPOINTS]
    found = await asyncio.to_thread(registry.checkpoints)
    active = await request.app[REPOSITORY].active_checkpoint()
    return CheckpointList(
        checkpoints=[
            CheckpointInfo(
                name=c.name,
                size_bytes=c.size,
                modified=c.modified,
                tensors=c.tensors,
                valid=c.valid,
                problem=c.problem,
                active=c.name == active,
                training=Training.of(c.metadata),
            )  # fmt: skip
            for c in found
        ],
        active=active,
    )


async def list_checkpoints(request: web.Request) -> web.Response:
    """GET /v1/admin/checkpoints: the registry and the active checkpoint."""
    return json_model(await _listing(request))


async def set_active_checkpoint(request: web.Request) -> web.Response:
    """PUT /v1/admin/checkpoints/active: choose by name (never a path) for jobs that start from now on."""
    body = await read_body(request, ActiveCheckpoint, "checkpoint choice")
    if body.name is not None:
        # Reads that one file only; unknown or invalid is a UserError -> 400 with its sentence.
        await asyncio.to_thread(request.app[CHECKPOINTS].choose, body.name)
    await request.app[REPOSITORY].set_active_checkpoint(body.name)
    log.info("active checkpoint set to %s", body.name or "none")
    return json_model(await _listing(request))


async def get_stats(request: web.Request) -> web.Response:
    """GET /v1/admin/stats: counts for admins."""
    return json_model(StatsView.of(await request.app[REPOSITORY].stats()))


async def add_ban(request: web.Request) -> web.Response:
    """POST /v1/admin/bans: ban a user (idempotent)."""
    body = await read_body(request, BanRequest, "ban")
    ban = await request.app[REPOSITORY].ban(body.platform, body.user_id, reason=body.reason)
    log.info("banned %s user %s", body.platform, body.user_id)
    return json_model(BanView.of(ban))


async def lift_ban(request: web.Request) -> web.Response:
    """DELETE /v1/admin/bans/{platform}/{user_id}: lift a ban; 404 when there was none."""
    platform, user_id = request.match_info["platform"], request.match_info["user_id"]
    if not (re.fullmatch(NAME, platform) and re.fullmatch(NAME, user_id)):
        raise Refused(400, "bad_user", "A platform or user id has 1 to 64 letters, digits or . _ : @ -.")
    if not await request.app[REPOSITORY].unban(platform, user_id):
        raise Refused(404, "not_banned", "That user isn't banned.")
    log.info("lifted the ban on %s user %s", platform, user_id)
    return json_model(BanLifted(platform=platform, user_id=user_id, lifted=True))


async def get_limits(request: web.Request) -> web.Response:
    """GET /v1/admin/limits: the limits in force."""
    return json_model(LimitsBody.of(await request.app[REPOSITORY].limits()))


async def put_limits(request: web.Request) -> web.Response:
    """PUT /v1/admin/limits: replace the six limit numbers (persisted)."""
    body = await read_body(request, LimitsBody, "limits")
    limits = await request.app[REPOSITORY].set_limits(body.record())
    log.info("limits set to %s", limits)
    return json_model(LimitsBody.of(limits))
