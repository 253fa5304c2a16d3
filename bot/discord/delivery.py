"""A job's life on Discord: submit, "Queued — #3", throttled stage edits, the result with its buttons.

A job's status lives in one message. Started from an interaction, that message is the interaction's
response, edited through its token for 15 minutes; started by a reply, it is the bot's own reply. Either way
the state file keeps what is needed to finish the job after a restart: the token (until it dies), the
channel and the message ids. Every kind goes the same way: an animation or a remix ends with its file, a
tune with the sentence that its checkpoint is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import discord

from bot.core import formatting, messages
from bot.core.errors import BotError, EngineError
from bot.core.follow import follow
from bot.core.models import Job
from bot.core.options import Request as JobRequest
from bot.core.options import TuneRequest
from bot.core.pending import PendingJob
from bot.discord import media
from bot.discord.runtime import KEEP_DELIVERED, NONE, PLATFORM, TOKEN_LIFETIME_S, Runtime, chat_of, token_usable
from bot.discord.views import result_view
from engine.vocabulary import Format

log = logging.getLogger(__name__)

RESULT_FORMAT: Format = "gif"  # when it fits the upload limit well,
FALLBACK_FORMAT: Format = "mp4"  # else a sharp MP4
TOO_LARGE = 40005  # Discord's "Request entity too large"


class NoStatus(discord.DiscordException):
    """The job's status message was never made (its first edit failed); the result goes to the channel."""


@dataclass(frozen=True)
class Request:
    """Everything one job needs, whatever started it."""

    image: media.Image
    request: JobRequest  # an animation, a remix or a tune
    key: str  # idempotency key: dc:<interaction id> or dc:<message id>
    user: discord.abc.User
    guild_id: int | None
    channel_id: int
    poster: str | None
    upload_limit: int
    source: tuple[int, int] | None = None  # (channel id, message id) of the message holding the meme


async def submit(rt: Runtime, req: Request) -> Job:
    """Download the meme or GIF and queue it; BotError (with its sentence) for anything a user did or must wait for."""
    data = await media.download(_http(rt), req.image)
    return await rt.engine.make(
        req.request, data, filename=req.image.filename,
        output={"format": RESULT_FORMAT, "max_bytes": req.upload_limit, "fallback_format": FALLBACK_FORMAT},
        platform=PLATFORM, user_id=str(req.user.id), chat_id=_chat(req), is_admin=rt.is_admin(req.user),
        idempotency_key=req.key,
    )  # fmt: skip


def _chat(req: Request) -> str:
    return chat_of(req.guild_id, req.channel_id)


def _http(rt: Runtime) -> Any:
    if rt.http is None or rt.http.closed:
        rt.http = media.session()
    return rt.http


def _kept(req: Request, status_id: int | None, status_text: str, **extra: Any) -> PendingJob:
    return PendingJob(
        key=req.key, user_id=req.user.id, chat_id=req.channel_id, request=req.request, poster=req.poster,
        image=req.image.url, filename=req.image.filename, status_id=status_id, status_text=status_text,
        at=time.time(), source=req.source, **extra,
    )  # fmt: skip


async def animate_interaction(
    rt: Runtime, client: discord.Client, interaction: discord.Interaction, req: Request
) -> None:
    """Defer at once (a "thinking…" message), queue the meme, show "Queued — #n" and follow the job."""
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True)
    if req.key in rt.claims or rt.pending.find(req.key) is not None:
        return
    rt.claims.add(req.key)
    try:
        try:
            job = await submit(rt, req)
        except BotError as exc:
            await refuse_after_defer(interaction, messages.error_text(exc))
            return
        line = messages.queued_text(job.position)
        try:
            status_id: int | None = (await interaction.edit_original_response(content=line, allowed_mentions=NONE)).id
        except discord.HTTPException as exc:  # the job is queued all the same: its result goes to the channel
            log.warning("job %s: the queued line could not be shown (%s)", job.id, exc)
            status_id, line = None, ""
        rt.edited_at[job.id] = time.monotonic()  # the "Queued" line counts as the job's first edit
        expires = interaction.created_at.timestamp() + TOKEN_LIFETIME_S
        rt.pending.add(
            job.id,
            _kept(req, status_id, line, token=interaction.token, app_id=interaction.application_id,
                  token_expires=expires),
        )  # fmt: skip
    finally:
        rt.claims.discard(req.key)
    log.info("job %s queued for channel %s (position %s)", job.id, req.channel_id, job.position)
    watch(rt, client, job.id)


async def animate_message(rt: Runtime, client: discord.Client, message: discord.Message, req: Request) -> None:
    """The reply trigger: queue the meme and answer with a status reply that becomes the result."""
    if req.key in rt.claims or rt.pending.find(req.key) is not None:
        return
    rt.claims.add(req.key)
    try:
        try:
            job = await submit(rt, req)
        except BotError as exc:
            await message.reply(messages.error_text(exc), mention_author=False, allowed_mentions=NONE)
            return
        if job.id in rt.pending:  # the engine knew the key: a redelivered event after a restart
            return
        line = messages.queued_text(job.position)
        status = await message.reply(line, mention_author=False, allowed_mentions=NONE)
        rt.edited_at[job.id] = time.monotonic()
        rt.pending.add(job.id, _kept(req, status.id, line, reply_to=message.id))
    finally:
        rt.claims.discard(req.key)
    log.info("job %s queued by a reply in channel %s", job.id, req.channel_id)
    watch(rt, client, job.id)


async def refuse_after_defer(interaction: discord.Interaction, line: str) -> None:
    """After a public "thinking…": say it privately (ephemeral) and take the thinking message away."""
    await interaction.followup.send(formatting.defuse_mentions(line), ephemeral=True, allowed_mentions=NONE)
    with contextlib.suppress(discord.HTTPException):
        await interaction.delete_original_response()


# --- following a job ---


def watch(rt: Runtime, client: discord.Client, job_id: str) -> None:
    """Follow a job in the background until it is delivered; one watcher per job."""
    if job_id in rt.watchers and not rt.watchers[job_id].done():
        return
    task = asyncio.create_task(_follow(rt, client, job_id), name=f"watch-{job_id[:8]}")
    rt.watchers[job_id] = task
    task.add_done_callback(lambda t: rt.watchers.pop(job_id, None) if rt.watchers.get(job_id) is t else None)


def resume(rt: Runtime, client: discord.Client) -> int:
    """Watch every job the state file says is still in flight; returns how many."""
    jobs = rt.pending.in_flight()
    for job_id in jobs:
        watch(rt, client, job_id)
    return len(jobs)


async def stop_watching(rt: Runtime) -> None:
    """Cancel the watchers; their jobs stay in the state file for the next start."""
    tasks = list(rt.watchers.values()) + list(rt.flushes.values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _follow(rt: Runtime, client: discord.Client, job_id: str) -> None:
    async def lost(exc: EngineError) -> None:
        await end_without_result(rt, client, job_id, messages.error_text(exc, job_id=job_id))

    await follow(
        rt.engine, job_id, progress=partial(_show_progress, rt, client), finish=partial(_finish, rt, client), lost=lost
    )


async def _show_progress(rt: Runtime, client: discord.Client, job: Job) -> None:
    """Show the job's newest status line."""
    kept = rt.pending.get(job.id)
    if kept is None or kept.delivered:
        return
    rt.latest[job.id] = messages.status_text(job)
    await _sync_status(rt, client, job.id)


async def _sync_status(rt: Runtime, client: discord.Client, job_id: str) -> None:
    """Edit the status to the newest line, at most once per edit_interval_s; a held-back line goes out when due.

    What the message shows is kept in memory only: the state file is fsynced on every write, and a restarted
    bot's next event brings a fresher line anyway.
    """
    kept = rt.pending.get(job_id)
    line = rt.latest.get(job_id)
    if kept is None or kept.delivered or line is None or line == rt.shown.get(job_id, kept.status_text):
        return
    wait = rt.edited_at.get(job_id, 0.0) + rt.settings.edit_interval_s - time.monotonic()
    if wait > 0:
        if job_id not in rt.flushes:
            rt.flushes[job_id] = asyncio.create_task(_flush_later(rt, client, job_id, wait), name=f"flush-{job_id[:8]}")
        return
    rt.edited_at[job_id] = time.monotonic()
    try:
        await edit_message(client, kept, content=formatting.defuse_mentions(line))
    except (discord.HTTPException, NoStatus) as exc:  # deleted, or out of reach: the result still comes
        log.info("status of job %s not edited: %s", job_id, exc)
        return
    rt.shown[job_id] = line


async def _flush_later(rt: Runtime, client: discord.Client, job_id: str, wait: float) -> None:
    try:
        await asyncio.sleep(wait)
    finally:
        rt.flushes.pop(job_id, None)
    await _sync_status(rt, client, job_id)


def _forget_status(rt: Runtime, job_id: str) -> None:
    for kept in (rt.latest, rt.shown, rt.edited_at):
        kept.pop(job_id, None)
    flush = rt.flushes.pop(job_id, None)
    if flush is not None:
        flush.cancel()


async def edit_message(client: discord.Client, kept: PendingJob, **fields: Any) -> discord.Message | None:
    """Edit the job's status message: through the interaction token while it lives, else as the bot's message."""
    if kept.status_id is None:
        raise NoStatus("the job has no status message")
    hook = _webhook(client, kept)
    if hook is not None:
        return await hook.edit_message(kept.status_id, allowed_mentions=NONE, **fields)
    message = client.get_partial_messageable(kept.chat_id).get_partial_message(kept.status_id)
    return await message.edit(allowed_mentions=NONE, **fields)


def _webhook(client: discord.Client, kept: PendingJob) -> discord.Webhook | None:
    """The interaction's webhook while its token is usable, else None."""
    if not token_usable(kept) or kept.app_id is None or kept.token is None:
        return None
    return discord.Webhook.partial(kept.app_id, kept.token, client=client)


async def _finish(rt: Runtime, client: discord.Client, job: Job) -> None:
    kept = rt.pending.get(job.id)
    if kept is None or kept.delivered:
        return
    if job.status != "done":
        await end_without_result(rt, client, job.id, messages.error_text(job))
        return
    if isinstance(kept.request, TuneRequest):  # a checkpoint, not a file: the status line says it is ready
        await end_without_result(rt, client, job.id, messages.tune_ready_text(job.made or kept.request.name))
        return
    data, content_type = await rt.engine.result(job.id)
    extension = "mp4" if content_type.startswith("video/") else "gif"
    if kept.request.kind == "remix":
        caption = messages.remix_caption(kept.poster, kept.request.prompt)
    else:
        caption = messages.result_caption(kept.poster, (job.script or {}).get("motion_prompt"))
    caption = formatting.defuse_mentions(caption)
    if kept.sending:
        # A restart came between the upload and recording it. Through a live token the message says whether
        # the upload landed; otherwise send again under a line that says so, rather than never.
        if kept.status_id is not None and await _already_sent(client, kept):
            _delivered(rt, job, kept.status_id)
            return
        caption = f"{messages.SENT_AGAIN}\n{caption}"
    else:
        rt.pending.update(job.id, sending=True)
    try:
        name = f"makeitmove-{job.id[:12]}.{extension}"
        view = result_view(job.id, kept.request.kind, share=job.shareable)
        message_id = await _upload(client, kept, job.id, data, name, caption, view)
    except discord.HTTPException as exc:
        if exc.status >= 500:
            raise  # Discord's own trouble: the watcher tries again
        # too large, or the channel is out of reach (deleted, no permission): trying again won't help
        log.warning("job %s: the result could not be posted (%s)", job.id, exc)
        line = messages.DISCORD_NO_UPLOAD if exc.status == 413 or exc.code == TOO_LARGE else messages.DISCORD_CANT_POST
        await end_without_result(rt, client, job.id, line)
        return
    _delivered(rt, job, message_id)
    log.info("job %s delivered to channel %s as %s", job.id, kept.chat_id, extension)
    rt.pending.forget_old(KEEP_DELIVERED)


def _delivered(rt: Runtime, job: Job, message_id: int) -> None:
    rt.pending.update(job.id, delivered=True, seed=job.seed, result_id=message_id, at=time.time())
    _forget_status(rt, job.id)


async def _already_sent(client: discord.Client, kept: PendingJob) -> bool:
    hook = _webhook(client, kept)
    if hook is None or kept.status_id is None:
        return False
    with contextlib.suppress(discord.HTTPException):
        message = await hook.fetch_message(kept.status_id)
        return bool(message.attachments)
    return False


async def _upload(
    client: discord.Client, kept: PendingJob, job_id: str, data: bytes, name: str, caption: str, view: discord.ui.View
) -> int:
    """The result with its buttons: in place of the status while the token lives, else as a reply below it."""

    def file() -> discord.File:
        return discord.File(io.BytesIO(data), filename=name)

    if token_usable(kept) and not kept.reply_to and kept.status_id is not None:
        try:
            message = await edit_message(client, kept, content=caption, attachments=[file()], view=view)
            assert message is not None
            return message.id
        except discord.HTTPException as exc:
            if exc.status == 413 or exc.code == TOO_LARGE:
                raise
            log.info("job %s: the interaction token failed (%s); posting in the channel", job_id, exc)
    channel = client.get_partial_messageable(kept.chat_id)
    below = kept.reply_to or kept.status_id
    extra: dict[str, Any] = {}
    if below:
        extra["reference"] = discord.MessageReference(
            message_id=below, channel_id=kept.chat_id, fail_if_not_exists=False
        )
    sent = await channel.send(caption, file=file(), view=view, allowed_mentions=NONE, **extra)
    with contextlib.suppress(discord.HTTPException, NoStatus):  # a status line left behind is untidy, not wrong
        if kept.reply_to and kept.status_id:
            await channel.get_partial_message(kept.status_id).delete()
        elif not kept.reply_to:
            await edit_message(client, kept, content=messages.DISCORD_SEE_BELOW)
    return sent.id


async def end_without_result(rt: Runtime, client: discord.Client, job_id: str, line: str) -> bool:
    """Put `line` in the job's status message and mark it finished; False if this bot isn't showing the job."""
    kept = rt.pending.get(job_id)
    if kept is None or kept.delivered:
        return False
    try:
        await edit_message(client, kept, content=formatting.defuse_mentions(line))
    except (discord.HTTPException, NoStatus) as exc:
        log.info("job %s: status not edited (%s); telling the channel", job_id, exc)
        with contextlib.suppress(discord.HTTPException):
            channel = client.get_partial_messageable(kept.chat_id)
            await channel.send(formatting.defuse_mentions(line), allowed_mentions=NONE)
    rt.pending.update(job_id, delivered=True, status_text=line, at=time.time())
    _forget_status(rt, job_id)
    log.info("job %s ended without a result: %s", job_id, line)
    return True
