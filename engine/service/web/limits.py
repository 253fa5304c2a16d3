"""Limits and bans: the six rate-limit numbers (the same rules as /limits) and who is banned, with a reason."""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from engine.service.api.middleware import validation_message
from engine.service.api.models import NAME, BanRequest, LimitsBody
from engine.service.keys import REPOSITORY
from engine.service.web.guard import posted
from engine.service.web.render import field, page

log = logging.getLogger(__name__)

LIMIT_FIELDS = (
    ("user_jobs", "Jobs per user per window"),
    ("user_window_s", "User window (seconds)"),
    ("user_concurrent", "Jobs per user at once (queued or running)"),
    ("chat_jobs", "Jobs per chat per window"),
    ("chat_window_s", "Chat window (seconds)"),
    ("queue_max", "Queued jobs at once, for everyone"),
)
NOTICES = {
    "limits": "The limits are saved; they apply to the next submission.",
    "banned": "The user is banned; their next submission is refused.",
    "lifted": "The ban is lifted.",
}


async def limits_page(
    request: web.Request, *, problem: str | None = None, status: int = 200, typed: dict[str, str] | None = None
) -> web.StreamResponse:
    """GET /admin/limits: the limits in force (editable) and every ban."""
    repository = request.app[REPOSITORY]
    limits = vars(await repository.limits())
    context: dict[str, Any] = {
        "title": "Limits and bans",
        "fields": LIMIT_FIELDS,
        "values": {**{k: str(v) for k, v in limits.items()}, **(typed or {})},
        "bans": await repository.bans(),
        "notice": NOTICES.get(request.query.get("done", "")),
        "problem": problem,
    }
    return page(request, "limits.html", context, status=status)


async def save_limits(request: web.Request) -> web.StreamResponse:
    """POST /admin/limits: replace the six numbers, checked as PUT /v1/admin/limits checks them."""
    form = await posted(request)
    typed = {name: field(form, name) for name, _ in LIMIT_FIELDS}
    try:
        body = LimitsBody.model_validate({k: _number(v) for k, v in typed.items()})
    except ValidationError as exc:
        return await limits_page(request, problem=validation_message(exc, "limits"), status=400, typed=typed)
    limits = await request.app[REPOSITORY].set_limits(body.record())
    log.info("limits set to %s from the dashboard", limits)
    raise web.HTTPSeeOther("/admin/limits?done=limits")


def _number(text: str) -> Any:
    """A whole number as typed (spaces and thousands separators allowed); anything else for pydantic to refuse."""
    cleaned = text.replace(",", "").replace("_", "").replace(" ", "")
    return int(cleaned) if re.fullmatch(r"\d{1,12}", cleaned) else text


async def add_ban(request: web.Request) -> web.StreamResponse:
    """POST /admin/bans: ban a user of a platform, with a reason."""
    form = await posted(request)
    values = {name: field(form, name) for name in ("platform", "user_id", "reason")}
    try:
        body = BanRequest.model_validate(values)
    except ValidationError as exc:
        return await limits_page(request, problem=validation_message(exc, "ban"), status=400)
    await request.app[REPOSITORY].ban(body.platform, body.user_id, reason=body.reason)
    log.info("banned %s user %s from the dashboard", body.platform, body.user_id)
    raise web.HTTPSeeOther("/admin/limits?done=banned")


async def lift_ban(request: web.Request) -> web.StreamResponse:
    """POST /admin/bans/{platform}/{user_id}/lift: unban."""
    platform, user_id = request.match_info["platform"], request.match_info["user_id"]
    if not (re.fullmatch(NAME, platform) and re.fullmatch(NAME, user_id)):
        return await limits_page(request, problem="That isn't a user I know.", status=400)
    if not await request.app[REPOSITORY].unban(platform, user_id):
        return await limits_page(request, problem="That user isn't banned.", status=404)
    log.info("lifted the ban on %s user %s from the dashboard", platform, user_id)
    raise web.HTTPSeeOther("/admin/limits?done=lifted")
