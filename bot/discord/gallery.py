"""The 🌐 Share button under a result: its requester puts it in the engine's gallery; only the presser hears back."""

from __future__ import annotations

import contextlib
import logging

import discord

from bot.core import messages
from bot.core.errors import BotError
from bot.discord.runtime import PLATFORM, runtime_of, say
from bot.discord.views import shared_view

log = logging.getLogger(__name__)


async def on_share(interaction: discord.Interaction, action: str, job_id: str) -> None:
    """`mim:share:<id>`: the requester only (the engine checks too); then the button reads 🌐 Shared, disabled."""
    if action == "shared":  # disabled, so only a client that ignores that can press it
        await say(interaction, messages.ALREADY_SHARED)
        return
    rt = runtime_of(interaction)
    kept = rt.pending.get(job_id)
    if kept is not None and kept.user_id != interaction.user.id:  # a result this bot forgot: the engine decides
        await say(interaction, messages.NOT_REQUESTER)
        return
    await interaction.response.defer()  # the engine may take a moment; the message itself is what changes
    try:
        await rt.engine.share(job_id, platform=PLATFORM, user_id=str(interaction.user.id))
    except BotError as exc:
        await say(interaction, messages.error_text(exc, job_id=job_id))
        return
    view = shared_view(interaction.message, job_id)
    if view is not None:
        with contextlib.suppress(discord.HTTPException):  # the result was deleted meanwhile: nothing left to mark
            await interaction.edit_original_response(view=view)
    await say(interaction, messages.SHARED)
    log.info("job %s shared by its requester", job_id)
