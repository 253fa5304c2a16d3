"""The buttons under a result: 🔁 Again, ⚡ More motion, 📝 Prompt, 🗑 Delete.

Each is a DynamicItem whose custom_id, `mim:<action>:<job id>`, carries all it needs, so buttons on results
sent before a restart keep working: discord.py matches the id against the template, not a live View.
"""

from __future__ import annotations

import logging
import re
from typing import Any, cast

import discord

from bot.core import formatting, messages
from bot.core.errors import BotError
from bot.discord import delivery, media
from bot.discord.runtime import NONE, Runtime

log = logging.getLogger(__name__)

STYLES = {
    "again": discord.ButtonStyle.primary,
    "more": discord.ButtonStyle.primary,
    "prompt": discord.ButtonStyle.secondary,
    "del": discord.ButtonStyle.danger,
}
TEMPLATE = re.compile(r"mim:(?P<action>again|more|prompt|del):(?P<job>[A-Za-z0-9_-]{1,64})")


class ResultButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """One result button; `mim:<action>:<job id>` fits Discord's 100-character custom_id."""

    def __init__(self, action: str, job_id: str) -> None:
        label = dict(messages.RESULT_BUTTONS)[action]
        super().__init__(discord.ui.Button(label=label, style=STYLES[action], custom_id=f"mim:{action}:{job_id}"))
        self.action, self.job_id = action, job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ResultButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await on_button(interaction, self.action, self.job_id)


def result_view(job_id: str) -> discord.ui.View:
    """The four buttons of a result, persistent (no timeout)."""
    view = discord.ui.View(timeout=None)
    for action, _ in messages.RESULT_BUTTONS:
        view.add_item(ResultButton(action, job_id))
    return view


def runtime_of(interaction: discord.Interaction) -> Runtime:
    """The Runtime of the client handling this interaction."""
    return cast(Runtime, interaction.client.rt)  # type: ignore[attr-defined]


async def on_button(interaction: discord.Interaction, action: str, job_id: str) -> None:
    """What a press does; refusals and errors are ephemeral, one sentence."""
    rt = runtime_of(interaction)
    info = rt.pending.get(job_id)
    user = interaction.user
    if action == "del":
        if not (rt.is_admin(user) or (info is not None and info.get("user_id") == user.id)):
            await interaction.response.send_message(messages.NOT_YOUR_JOB, ephemeral=True, allowed_mentions=NONE)
            return
        await interaction.response.defer()
        try:
            await interaction.delete_original_response()  # a component's original response is its message
        except discord.HTTPException as exc:
            log.info("result of job %s not deleted: %s", job_id, exc)
        return
    if action == "prompt":
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            job = await rt.engine.get(job_id)
            line = messages.prompt_text(job.script)
        except BotError as exc:
            line = messages.error_text(exc, job_id=job_id)
        await interaction.followup.send(formatting.defuse_mentions(line), ephemeral=True, allowed_mentions=NONE)
        return
    if info is None:
        await interaction.response.send_message(messages.UNKNOWN_JOB, ephemeral=True, allowed_mentions=NONE)
        return
    request = delivery.request_of(info)
    if action == "again":
        request = request.with_seed(None)
    else:  # the same seed, so only the motion changes
        request = request.with_seed(info.get("seed")).more_motion()
    await interaction.response.defer(thinking=True)
    image = await _fresh_image(interaction.client, info)
    req = delivery.Request(
        image=image, request=request, key=f"dc:{interaction.id}", user=user, guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or int(info["channel_id"]), poster=info.get("poster"),
        upload_limit=interaction.filesize_limit, source=tuple(info["source"]) if info.get("source") else None,
    )  # fmt: skip
    await delivery.animate_interaction(rt, interaction.client, interaction, req)


async def _fresh_image(client: discord.Client, info: dict[str, Any]) -> media.Image:
    """The meme again: from its message when there is one (attachment links expire), else the kept link."""
    kept = info.get("image") or {}
    source = info.get("source")
    if source:
        try:
            message = await client.get_partial_messageable(int(source[0])).fetch_message(int(source[1]))
        except discord.HTTPException:
            message = None
        found = media.in_message(message) if message is not None else None
        if found is not None:
            return found
    return media.Image(str(kept.get("url", "")), str(kept.get("filename") or "meme"))
