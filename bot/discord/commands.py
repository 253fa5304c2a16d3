"""What members use: /animate, /remix, Apps → Animate meme, the reply trigger, /history, /quota, /cancel, /help,
buttons.

Everything a user did wrong, or must wait for, is answered ephemerally in one sentence. The admin commands
live in admin.py; `register` puts both on the tree.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord
from discord import app_commands

from bot.core import formatting, messages
from bot.core.errors import BotError, OptionError
from bot.core.options import (
    CAMERAS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    AnimateRequest,
    RemixRequest,
    Request,
    parse_animate,
    rerun,
)
from bot.core.pending import PendingJob
from bot.discord import admin, clips, delivery, gallery, media
from bot.discord.runtime import DEFAULT_UPLOAD_LIMIT, NONE, PLATFORM, Runtime, poster_of, runtime_of, say
from engine.vocabulary import Motion

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
MENTION = re.compile(r"<@!?(\d+)>")
CAMERA_CHOICES = [app_commands.Choice(name=camera, value=camera) for camera in CAMERAS]


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


@app_commands.command(name="remix", description="A GIF's motion with a new subject")
@app_commands.describe(
    prompt="what the GIF should show instead, e.g. a sloth is surfing",
    gif="the GIF or video (without it: the newest one in this channel)",
)
async def remix(
    interaction: discord.Interaction,
    prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
    gif: discord.Attachment | None = None,
) -> None:
    """/remix prompt:<text> [gif:<attachment>]."""
    try:
        request = RemixRequest.from_options({"prompt": prompt})
    except OptionError as exc:
        await say(interaction, exc.message)
        return
    await clips.start_on_clip(interaction, gif, request)


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
    """`@bot` (or `@bot make him dance`) in a reply to a meme, or on a message carrying one; `@bot remix a sloth
    is surfing` in a reply to a GIF, or on a message carrying one."""
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
    text = MENTION.sub(" ", message.content)
    first, *rest = text.split(maxsplit=1) or [""]
    remixing = first.lower() == "remix"
    find = media.clip_in_message if remixing else media.in_message
    found = find(target) if target is not None else None
    holder = target
    if found is None:
        found, holder = find(message), message
    if found is None:
        line = messages.DISCORD_NEED_CLIP if remixing else messages.DISCORD_NEED_IMAGE
        if target is not None and not client.intents.message_content:
            # without the intent Discord hides other messages' attachments
            line = messages.DISCORD_CANT_SEE_REPLIED_CLIP if remixing else messages.DISCORD_CANT_SEE_REPLY
        await message.reply(line, mention_author=False, allowed_mentions=NONE)
        return
    try:
        request: Request = RemixRequest.from_options({"prompt": "".join(rest)}) if remixing else parse_animate(text)
    except OptionError as exc:
        line = exc.message if remixing else messages.error_text(exc)
        await message.reply(line, mention_author=False, allowed_mentions=NONE)
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
        "• /remix with what a GIF should show instead (and the GIF, or I take the newest one here)",
    ]
    if replies:
        lines.append("• reply to a meme and mention me, e.g. “@me make him dance motion=high”")
        lines.append("• reply to a GIF with “@me remix a sloth is surfing”")
    lines.append("• /history, /quota, /cancel")
    if is_admin:
        lines.append("Admins: /lora list|use|off|tune, /stats, /ban, /unban, /limits")
    return "\n".join(lines)


# --- result buttons ---


async def on_button(interaction: discord.Interaction, action: str, job_id: str) -> None:
    """What a press of a result button does; refusals and errors are ephemeral, one sentence."""
    if action in ("share", "shared"):
        await gallery.on_share(interaction, action, job_id)
        return
    rt = runtime_of(interaction)
    kept = rt.pending.get(job_id)
    user = interaction.user
    if action == "del":
        if not (rt.is_admin(user) or (kept is not None and kept.user_id == user.id)):
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
    request = rerun(kept.request, kept.seed, more=action == "more") if kept is not None else None
    if kept is None or request is None:
        await interaction.response.send_message(messages.UNKNOWN_JOB, ephemeral=True, allowed_mentions=NONE)
        return
    await interaction.response.defer(thinking=True)
    req = delivery.Request(
        image=await _fresh_image(interaction.client, kept), request=request, key=f"dc:{interaction.id}", user=user,
        guild_id=interaction.guild_id, channel_id=interaction.channel_id or kept.chat_id, poster=kept.poster,
        upload_limit=interaction.filesize_limit, source=kept.source,
    )  # fmt: skip
    await delivery.animate_interaction(rt, interaction.client, interaction, req)


async def _fresh_image(client: discord.Client, kept: PendingJob) -> media.Image:
    """The meme or GIF again: from its message when there is one (attachment links expire), else the kept link."""
    find = media.in_message if isinstance(kept.request, AnimateRequest) else media.clip_in_message
    if kept.source is not None:
        channel_id, message_id = kept.source
        try:
            message = await client.get_partial_messageable(channel_id).fetch_message(message_id)
        except discord.HTTPException:
            message = None
        found = find(message) if message is not None else None
        if found is not None:
            return found
    return media.Image(kept.image, kept.filename or "meme")


def register(tree: app_commands.CommandTree[discord.Client]) -> None:
    """Every command on the tree, and its error handler."""
    every: tuple[app_commands.Command[Any, Any, Any] | app_commands.ContextMenu | app_commands.Group, ...] = (
        animate, animate_message, remix, history, quota, cancel, help_command, *admin.COMMANDS,
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
