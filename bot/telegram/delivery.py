"""A job's life in a chat: submit, "Queued — #3", throttled stage edits, the result with its buttons.

The same for every kind: an animation or a remix ends with its MP4, a tune with the sentence that its
checkpoint is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import partial

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.error import BadRequest, TelegramError

from bot.core import messages
from bot.core.errors import BotError, EngineError
from bot.core.follow import follow
from bot.core.models import Job
from bot.core.options import Request, TuneRequest
from bot.core.pending import PendingJob
from bot.telegram import sending
from bot.telegram.media import Source, download
from bot.telegram.runtime import KEEP_DELIVERED, PLATFORM, RESULT_FORMAT, Runtime

log = logging.getLogger(__name__)


async def start_job(
    rt: Runtime, bot: Bot, *, chat_id: int, user_id: int, source: Source, request: Request, key: str,
    poster: str | None,
) -> None:  # fmt: skip
    """Submit once per idempotency key and answer "Queued"; duplicates of a known key are ignored."""
    if key in rt.claims or rt.pending.find(key) is not None:
        log.info("duplicate request %s ignored", key)
        return
    rt.claims.add(key)
    try:
        await _submit(rt, bot, chat_id=chat_id, user_id=user_id, source=source, request=request, key=key, poster=poster)
    finally:
        rt.claims.discard(key)


async def _submit(
    rt: Runtime, bot: Bot, *, chat_id: int, user_id: int, source: Source, request: Request, key: str,
    poster: str | None,
) -> None:  # fmt: skip
    reply = ReplyParameters(message_id=source.message_id, allow_sending_without_reply=True)
    try:
        data = await download(bot, source)
        job = await rt.engine.make(
            request, data, filename=source.filename, output={"format": RESULT_FORMAT}, platform=PLATFORM,
            user_id=str(user_id), chat_id=str(chat_id), is_admin=rt.is_admin(user_id), idempotency_key=key,
        )  # fmt: skip
    except BotError as exc:
        line = messages.error_text(exc)
        rt.throttle.reserve(chat_id)
        await sending.call(lambda: bot.send_message(chat_id, line, reply_parameters=reply), what="send")
        return
    if job.id in rt.pending:  # the engine knew the key: a re-fetched update after a restart
        log.info("job %s already known for %s; not answering twice", job.id, key)
        return
    rt.throttle.reserve(chat_id)
    status = await sending.call(
        lambda: bot.send_message(chat_id, messages.queued_text(job.position), reply_parameters=reply), what="send"
    )
    rt.pending.add(
        job.id,
        PendingJob(
            key=key, user_id=user_id, chat_id=chat_id, request=request, poster=poster, image=source.file_id,
            filename=source.filename, status_id=status.message_id, status_text=status.text or "", at=time.time(),
            reply_to=source.message_id,
        ),
    )  # fmt: skip
    log.info("job %s queued for chat %s (position %s)", job.id, chat_id, job.position)
    watch(rt, bot, job.id)


def watch(rt: Runtime, bot: Bot, job_id: str) -> None:
    """Follow a job in the background until it is delivered; one watcher per job."""
    if job_id in rt.watchers and not rt.watchers[job_id].done():
        return
    task = asyncio.create_task(_follow(rt, bot, job_id), name=f"watch-{job_id[:8]}")
    rt.watchers[job_id] = task
    task.add_done_callback(lambda t: rt.watchers.pop(job_id, None) if rt.watchers.get(job_id) is t else None)


def resume(rt: Runtime, bot: Bot) -> int:
    """Watch every job the state file says is still in flight; returns how many."""
    jobs = rt.pending.in_flight()
    for job_id in jobs:
        watch(rt, bot, job_id)
    return len(jobs)


async def stop_watching(rt: Runtime) -> None:
    """Cancel the watchers; their jobs stay in the state file for the next start."""
    tasks = list(rt.watchers.values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _follow(rt: Runtime, bot: Bot, job_id: str) -> None:
    async def lost(exc: EngineError) -> None:
        await end_without_result(rt, bot, job_id, messages.error_text(exc, job_id=job_id))

    await follow(
        rt.engine, job_id, progress=partial(_show_progress, rt, bot), finish=partial(_finish, rt, bot), lost=lost
    )


async def _show_progress(rt: Runtime, bot: Bot, job: Job) -> None:
    kept = rt.pending.get(job.id)
    if kept is None or kept.delivered:  # e.g. /cancel already put "Cancelled." there
        return
    line = messages.status_text(job)
    if line == rt.shown.get(job.id, kept.status_text) or not rt.throttle.allow(kept.chat_id):
        return  # unchanged, or this chat has had its edits for now: the next event brings a fresher line
    with contextlib.suppress(BadRequest):  # "message is not modified" or the user deleted it
        await sending.call(
            lambda: bot.edit_message_text(line, chat_id=kept.chat_id, message_id=kept.status_id), what="edit"
        )
    rt.shown[job.id] = line


async def _finish(rt: Runtime, bot: Bot, job: Job) -> None:
    kept = rt.pending.get(job.id)
    if kept is None or kept.delivered:
        return
    if job.status != "done":
        await end_without_result(rt, bot, job.id, messages.error_text(job))
        return
    if isinstance(kept.request, TuneRequest):  # a checkpoint, not a file: the status line says it is ready
        await end_without_result(rt, bot, job.id, messages.tune_ready_text(job.made or kept.request.name))
        return
    data, _ = await rt.engine.result(job.id)
    caption = caption_of(kept, job)
    # Telegram has no call to ask whether a message went out, so a bot stopped between sendAnimation and
    # the `delivered` write can't know. It records `sending` first; after a restart such a job is sent
    # again under a line that says so: a labelled duplicate now and then beats a result that never comes.
    if kept.sending:
        caption = f"{messages.SENT_AGAIN}\n{caption}"
        log.info("job %s may have been sent before a restart; sending it again", job.id)
    else:
        rt.pending.update(job.id, sending=True)
    rt.throttle.reserve(kept.chat_id)
    sent = await send_result(
        bot, kept.chat_id, data, caption, job.id, reply_to=kept.reply_to, kind=kept.request.kind, share=job.shareable
    )
    rt.pending.update(job.id, delivered=True, seed=job.seed, result_id=sent.message_id, at=time.time())
    rt.shown.pop(job.id, None)
    log.info("job %s delivered to chat %s", job.id, kept.chat_id)
    if kept.status_id is not None:
        status_id = kept.status_id
        with contextlib.suppress(TelegramError):  # a status line left behind is untidy, not wrong
            await sending.call(lambda: bot.delete_message(kept.chat_id, status_id), what="delete")
    rt.pending.forget_old(KEEP_DELIVERED)


async def end_without_result(rt: Runtime, bot: Bot, job_id: str, line: str) -> bool:
    """Put `line` in the job's status message and mark it finished; False if this bot isn't showing the job."""
    kept = rt.pending.get(job_id)
    if kept is None or kept.delivered:
        return False
    rt.throttle.reserve(kept.chat_id)
    with contextlib.suppress(BadRequest):
        await sending.call(
            lambda: bot.edit_message_text(line, chat_id=kept.chat_id, message_id=kept.status_id), what="edit"
        )
    rt.pending.update(job_id, delivered=True, status_text=line, at=time.time())
    rt.shown.pop(job_id, None)
    log.info("job %s ended without a result: %s", job_id, line)
    return True


def caption_of(kept: PendingJob, job: Job) -> str:
    """A result's caption: who posted the meme or GIF, and the motion prompt or the remix's new subject."""
    if kept.request.kind == "remix":
        return messages.remix_caption(kept.poster, kept.request.prompt)
    return messages.result_caption(kept.poster, (job.script or {}).get("motion_prompt"))


async def send_result(
    bot: Bot, chat_id: int, data: bytes, caption: str, job_id: str, *, reply_to: int | None, kind: str = "animate",
    share: bool = False,
) -> Message:  # fmt: skip
    """sendAnimation with the MP4, replying to the meme, with the result buttons (🌐 Share too if `share`)."""
    markup = result_buttons(job_id, kind, share=share)
    return await sending.call(
        lambda: bot.send_animation(
            chat_id, data, caption=caption, filename=f"{job_id[:12]}.mp4", reply_markup=markup,
            reply_parameters=(
                ReplyParameters(message_id=reply_to, allow_sending_without_reply=True) if reply_to else None
            ),
        ),
        what="sendAnimation",
    )  # fmt: skip


def result_buttons(job_id: str, kind: str = "animate", *, share: bool = False) -> InlineKeyboardMarkup:
    """🔁 Again, ⚡ More motion, 📝 Prompt, 🗑 Delete (a remix: 🔁 🗑), then 🌐 Share alone on a row if `share`.

    Callback data is `mim:<action>:<id>`, 64 bytes at most.
    """
    buttons = messages.REMIX_BUTTONS if kind == "remix" else messages.RESULT_BUTTONS
    row = [InlineKeyboardButton(label, callback_data=f"mim:{action}:{job_id}") for action, label in buttons]
    rows = [row[:2], row[2:]] if len(row) > 2 else [row]
    if share:
        action, label = messages.SHARE_BUTTON
        rows.append([InlineKeyboardButton(label, callback_data=f"mim:{action}:{job_id}")])
    return InlineKeyboardMarkup(rows)
