"""The application commands: /animate, Apps → Animate meme, /history, /quota, /cancel, /help and the admin ones.

Everything a user did wrong, or must wait for, is answered ephemerally in one sentence; the admin commands are
hidden from members without Manage Server (default_permissions) and checked again against [discord] admins.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

import discord
from discord import app_commands

from bot.core import formatting, messages
from bot.core.errors import BotError, OptionError
from bot.core.options import CAMERAS, MAX_PROMPT_CHARS, MAX_SEED, AnimateRequest, parse_animate
from bot.discord import delivery, media
from bot.discord.buttons import runtime_of
from bot.discord.runtime import DEFAULT_UPLOAD_LIMIT, NONE, PLATFORM, Runtime

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
ADMIN_PERMISSIONS = discord.Permissions(manage_guild=True)
MENTION = re.compile(r"<@!?(\d+)>")
Motion = Literal["low", "high"]
CAMERA_CHOICES = [app_commands.Choice(name=camera, value=camera) for camera in CAMERAS]


async def say(interaction: discord.Interaction, line: str) -> None:
    """One ephemeral sentence, as the response or as a follow-up when the response was already given."""
    line = formatting.defuse_mentions(line)
    if interaction.response.is_done():
        await interaction.followup.send(line, ephemeral=True, allowed_mentions=NONE)
    else:
        await interaction.response.send_message(line, ephemeral=True, allowed_mentions=NONE)


def poster_of(user: discord.abc.User | None) -> str | None:
    """Who posted the meme, for the caption's credit (never a bot)."""
    return user.display_name if user is not None and not user.bot else None


# --- animating ---


@app_commands.command(name="animate", description="Turn a meme into a short animated GIF")
@app_commands.describe(
    image="the meme (PNG, JPEG, WebP or GIF)",
    prompt="how it should move, in words (optional)",
    motion="how much it moves",
    camera="a camera move",
    seed="the same seed gives the same GIF",
)
@app_commands.choices(camera=CAMERA_CHOICES)
async def animate(
    interaction: discord.Interaction,
    image: discord.Attachment,
    prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS] | None = None,
    motion: Motion | None = None,
    camera: app_commands.Choice[str] | None = None,
    seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
) -> None:
    """/animate image:<attachment> [prompt] [motion] [camera] [seed]."""
    if not media.is_image(image):
        await say(interaction, messages.DISCORD_NO_IMAGE_IN_MESSAGE)
        return
    options = {"prompt": prompt, "motion": motion, "camera": camera.value if camera else None, "seed": seed}
    try:
        request = AnimateRequest.from_options({k: v for k, v in options.items() if v is not None})
    except OptionError as exc:
        await say(interaction, exc.message)
        return
    await interaction.response.defer(thinking=True)  # within Discord's 3 s, before any download
    await _animate(interaction, media.of_attachment(image), request, poster=poster_of(interaction.user))


@app_commands.context_menu(name="Animate meme")
async def animate_message(interaction: discord.Interaction, message: discord.Message) -> None:
    """Apps → Animate meme on any message with an image attachment or image embed."""
    found = media.in_message(message)
    if found is None:
        await say(interaction, messages.DISCORD_NO_IMAGE_IN_MESSAGE)
        return
    await interaction.response.defer(thinking=True)
    await _animate(
        interaction, found, parse_animate(""), poster=poster_of(message.author), source=(message.channel.id, message.id)
    )


async def _animate(
    interaction: discord.Interaction, image: media.Image, request: AnimateRequest, *, poster: str | None,
    source: tuple[int, int] | None = None,
) -> None:  # fmt: skip
    req = delivery.Request(
        image=image, request=request, key=f"dc:{interaction.id}", user=interaction.user,
        guild_id=interaction.guild_id, channel_id=interaction.channel_id or 0, poster=poster,
        upload_limit=interaction.filesize_limit, source=source,
    )  # fmt: skip
    await delivery.animate_interaction(runtime_of(interaction), interaction.client, interaction, req)


async def on_reply(client: discord.Client, rt: Runtime, message: discord.Message) -> None:
    """`@bot` (or `@bot make him dance`) in a reply to a meme, or on a message carrying one."""
    me = client.user
    # Named in the text: a reply to the bot's own message lists it in `mentions` too (the reply ping), and
    # "lol" under a result must not animate the result.
    if me is None or message.author.bot or str(me.id) not in MENTION.findall(message.content):
        return
    target: discord.Message | None = None
    if message.reference is not None and message.reference.message_id is not None:
        resolved = message.reference.resolved
        if isinstance(resolved, discord.Message):
            target = resolved
        else:
            try:
                target = await message.channel.fetch_message(message.reference.message_id)
            except discord.HTTPException:
                target = None
    found = media.in_message(target) if target is not None else None
    holder = target
    if found is None:
        found, holder = media.in_message(message), message
    if found is None:
        line = messages.DISCORD_NEED_IMAGE
        if target is not None and not client.intents.message_content:
            line = messages.DISCORD_CANT_SEE_REPLY  # without the intent Discord hides other messages' attachments
        await message.reply(line, mention_author=False, allowed_mentions=NONE)
        return
    try:
        request = parse_animate(MENTION.sub(" ", message.content))
    except OptionError as exc:
        await message.reply(messages.error_text(exc), mention_author=False, allowed_mentions=NONE)
        return
    assert holder is not None
    limit = message.guild.filesize_limit if message.guild is not None else DEFAULT_UPLOAD_LIMIT
    req = delivery.Request(
        image=found, request=request, key=f"dc:{message.id}", user=message.author, guild_id=message.guild.id
        if message.guild else None, channel_id=message.channel.id, poster=poster_of(holder.author),
        upload_limit=limit, source=(holder.channel.id, holder.id),
    )  # fmt: skip
    await delivery.animate_message(rt, client, message, req)


# --- your jobs ---


@app_commands.command(name="history", description="Your last animations")
async def history(interaction: discord.Interaction) -> None:
    """/history: your last 10 animations, privately."""
    rt = runtime_of(interaction)
    try:
        jobs = await rt.engine.history(PLATFORM, str(interaction.user.id), limit=10)
    except BotError as exc:
        await say(interaction, messages.error_text(exc))
        return
    await say(interaction, messages.history_text(list(jobs)))


@app_commands.command(name="quota", description="How many animations you have left")
async def quota(interaction: discord.Interaction) -> None:
    """/quota."""
    try:
        left = await runtime_of(interaction).engine.quota(PLATFORM, str(interaction.user.id))
    except BotError as exc:
        await say(interaction, messages.error_text(exc))
        return
    await say(interaction, messages.quota_text(left))


@app_commands.command(name="cancel", description="Stop your animation that is still queued or running")
async def cancel(interaction: discord.Interaction) -> None:
    """/cancel: your newest queued or running animation."""
    rt = runtime_of(interaction)
    user_id = str(interaction.user.id)
    try:
        jobs = await rt.engine.history(PLATFORM, user_id, limit=10)
        active = next((job for job in jobs if job.status in ACTIVE), None)
        if active is None:
            await say(interaction, messages.NOTHING_TO_CANCEL)
            return
        job = await rt.engine.cancel(active.id, platform=PLATFORM, user_id=user_id)
    except BotError as exc:
        await say(interaction, messages.error_text(exc))
        return
    if job.status != "cancelled":
        await say(interaction, messages.NOT_CANCELLABLE)
        return
    await delivery.end_without_result(rt, interaction.client, job.id, messages.CANCELLED)
    await say(interaction, messages.CANCELLED)


@app_commands.command(name="help", description="What I do and how to ask")
async def help_command(interaction: discord.Interaction) -> None:
    """/help, privately; admins also see their commands."""
    rt = runtime_of(interaction)
    await say(interaction, help_text(is_admin=rt.is_admin(interaction.user), replies=rt.settings.reply_trigger))


def help_text(*, is_admin: bool, replies: bool) -> str:
    """The Discord /help: the ways to start (the reply trigger when it is on) and, for admins, their commands."""
    lines = [
        f"{messages.BOT_NAME} turns a meme into an animated GIF.",
        "• /animate with the meme attached (prompt, motion, camera and seed are optional)",
        "• Apps → Animate meme on any message with an image",
    ]
    if replies:
        lines.append("• reply to a meme and mention me, e.g. “@me make him dance motion=high”")
    lines.append("• /history, /quota, /cancel")
    if is_admin:
        lines.append("Admins: /lora list|use|off, /stats, /ban, /unban, /limits")
    return "\n".join(lines)


# --- admins ---


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


def register(tree: app_commands.CommandTree[discord.Client]) -> None:
    """Every command on the tree, and its error handler."""
    every: tuple[app_commands.Command[Any, Any, Any] | app_commands.ContextMenu | app_commands.Group, ...] = (
        animate, animate_message, history, quota, cancel, help_command, lora, stats, ban, unban, limits,
    )  # fmt: skip
    for command in every:
        tree.add_command(command)
    tree.on_error = on_error  # type: ignore[method-assign]


async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """Log the traceback; tell the user one calm sentence, privately."""
    cause = getattr(error, "original", error)
    if isinstance(cause, BotError):
        line = messages.error_text(cause)
    elif isinstance(error, app_commands.CheckFailure):
        line = messages.ONLY_ADMINS
    else:
        log.error("command %s failed", getattr(interaction.command, "name", "?"), exc_info=error)
        line = messages.error_text(RuntimeError())
    try:
        await say(interaction, line)
    except discord.HTTPException:
        log.info("could not tell the user about the error (the interaction is gone)")
