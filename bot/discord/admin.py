"""The admin commands: /lora list|use|off|tune, /stats, /ban, /unban, /limits.

Discord hides them from members without Manage Server (default_permissions, guild-only); each is checked
again against [discord] admins when used, because a server's owner can grant them to anyone.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.core import messages
from bot.core.errors import BotError, OptionError
from bot.core.options import MAX_PROMPT_CHARS, TuneRequest
from bot.discord import clips
from bot.discord.runtime import PLATFORM, Runtime, runtime_of, say

ADMIN_PERMISSIONS = discord.Permissions(manage_guild=True)


async def _admin(interaction: discord.Interaction) -> Runtime | None:
    rt = runtime_of(interaction)
    if not rt.is_admin(interaction.user):
        await say(interaction, messages.ONLY_ADMINS)
        return None
    return rt


lora = app_commands.Group(
    name="lora", description="LoRA checkpoints", default_permissions=ADMIN_PERMISSIONS, guild_only=True
)


@lora.command(name="list", description="The LoRA checkpoints and which one is in use")
async def lora_list(interaction: discord.Interaction) -> None:
    """/lora list."""
    if (rt := await _admin(interaction)) is None:
        return
    try:
        await say(interaction, messages.checkpoints_text(await rt.engine.checkpoints()))
    except BotError as exc:
        await say(interaction, messages.error_text(exc))


@lora.command(name="use", description="Switch to a LoRA checkpoint (from the next job on)")
@app_commands.describe(name="the checkpoint's name, as /lora list shows it")
async def lora_use(interaction: discord.Interaction, name: app_commands.Range[str, 1, 200]) -> None:
    """/lora use NAME."""
    await _activate(interaction, name)


@lora.command(name="off", description="Go back to the base model")
async def lora_off(interaction: discord.Interaction) -> None:
    """/lora off."""
    await _activate(interaction, None)


@lora.command(name="tune", description="Tune a checkpoint on a GIF (attached, or the newest in this channel)")
@app_commands.describe(
    name="the new checkpoint's name: letters, digits, dots, dashes and underscores",
    prompt="what happens in the GIF (optional: the engine writes one)",
    gif="the GIF or video (without it: the newest one in this channel)",
)
async def lora_tune(
    interaction: discord.Interaction,
    name: app_commands.Range[str, 1, 100],
    prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS] | None = None,
    gif: discord.Attachment | None = None,
) -> None:
    """/lora tune name:<text> [prompt] [gif]: a training job with live progress, then "Checkpoint NAME is ready"."""
    if await _admin(interaction) is None:
        return
    try:
        request = TuneRequest.from_options({"name": name, "prompt": prompt})
    except OptionError as exc:
        await say(interaction, exc.message)
        return
    await clips.start_on_clip(interaction, gif, request)


@lora_use.autocomplete("name")
async def _checkpoint_names(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    rt = runtime_of(interaction)
    if not rt.is_admin(interaction.user):
        return []
    try:
        listing = await rt.engine.checkpoints()
    except BotError:
        return []
    names = [c.name for c in listing.checkpoints if c.valid and current.lower() in c.name.lower()]
    return [app_commands.Choice(name=name[:100], value=name) for name in names[:25]]


async def _activate(interaction: discord.Interaction, name: str | None) -> None:
    if (rt := await _admin(interaction)) is None:
        return
    try:
        await rt.engine.activate_checkpoint(name)
    except BotError as exc:
        await say(interaction, messages.error_text(exc))
        return
    await say(interaction, messages.checkpoint_activated_text(name))


@app_commands.command(name="stats", description="Queue and usage numbers")
@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
async def stats(interaction: discord.Interaction) -> None:
    """/stats."""
    if (rt := await _admin(interaction)) is None:
        return
    try:
        await say(interaction, messages.stats_text(await rt.engine.stats()))
    except BotError as exc:
        await say(interaction, messages.error_text(exc))


@app_commands.command(name="ban", description="Ban a user from the bot")
@app_commands.describe(user="who", reason="why (kept with the ban)")
@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
async def ban(
    interaction: discord.Interaction, user: discord.User, reason: app_commands.Range[str, 1, 200] | None = None
) -> None:
    """/ban user [reason]."""
    if (rt := await _admin(interaction)) is None:
        return
    try:
        await say(interaction, messages.ban_text(await rt.engine.ban(PLATFORM, str(user.id), reason or "")))
    except BotError as exc:
        await say(interaction, messages.error_text(exc))


@app_commands.command(name="unban", description="Lift a ban")
@app_commands.describe(user="who")
@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
async def unban(interaction: discord.Interaction, user: discord.User) -> None:
    """/unban user."""
    if (rt := await _admin(interaction)) is None:
        return
    try:
        lifted = await rt.engine.unban(PLATFORM, str(user.id))
    except BotError as exc:
        await say(interaction, messages.error_text(exc))
        return
    await say(interaction, messages.unban_text(PLATFORM, str(user.id), lifted))


Limit = app_commands.Range[int, 1, 10**9]


@app_commands.command(name="limits", description="Show the rate limits, or change some")
@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
async def limits(
    interaction: discord.Interaction, user_jobs: Limit | None = None, user_window_s: Limit | None = None,
    user_concurrent: Limit | None = None, chat_jobs: Limit | None = None, chat_window_s: Limit | None = None,
    queue_max: Limit | None = None,
) -> None:  # fmt: skip
    """/limits [key: number …]: the limits now, or after the change."""
    if (rt := await _admin(interaction)) is None:
        return
    asked = {
        "user_jobs": user_jobs, "user_window_s": user_window_s, "user_concurrent": user_concurrent,
        "chat_jobs": chat_jobs, "chat_window_s": chat_window_s, "queue_max": queue_max,
    }  # fmt: skip
    numbers = {key: value for key, value in asked.items() if value is not None}
    try:
        now = await rt.engine.set_limits(**numbers) if numbers else await rt.engine.limits()
    except BotError as exc:
        await say(interaction, messages.error_text(exc))
        return
    await say(interaction, messages.limits_text(now, changed=bool(numbers)))


COMMANDS: tuple[app_commands.Group | app_commands.Command[Any, Any, Any], ...] = (lora, stats, ban, unban, limits)
