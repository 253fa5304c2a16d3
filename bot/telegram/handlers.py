"""The user commands and buttons: /start, /help, /animate and /remix (and their caption forms), /history, /quota,
/cancel."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters, Update
from telegram.ext import ContextTypes

from bot.core import messages
from bot.core.errors import BotError, OptionError
from bot.core.options import Request, parse_animate, parse_remix, rerun
from bot.telegram import gallery, sending
from bot.telegram.delivery import end_without_result, send_result, start_job
from bot.telegram.media import Source, clip_source, image_source
from bot.telegram.runtime import PLATFORM, runtime

log = logging.getLogger(__name__)

COMMAND = re.compile(r"^/animate(?:@(\w+))?(?:\s+(.*))?$", re.DOTALL | re.IGNORECASE)
REMIX = re.compile(r"^/remix(?:@(\w+))?(?:\s+(.*))?$", re.DOTALL | re.IGNORECASE)
KEPT_KINDS = ("animate", "remix")  # the jobs whose result is a file to send again
ACTIVE = ("queued", "running")


async def reply(message: Message, line: str) -> None:
    """Answer a message with one plain-text line (engine text included: never a parse_mode)."""
    await sending.call(
        lambda: message.reply_text(line, reply_parameters=ReplyParameters(message.message_id)), what="send"
    )


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start: the greeting."""
    if update.effective_message:
        await reply(update.effective_message, messages.start_text())


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/help: commands, options and examples."""
    user = update.effective_user
    if update.effective_message:
        is_admin = runtime(context).is_admin(user.id if user else None)
        await reply(update.effective_message, messages.help_text(is_admin=is_admin))


async def animate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/animate [prompt] [options]: as a reply to a meme, or as the caption of one."""
    await _start_from(update, context, COMMAND, image_source, messages.NEED_IMAGE, parse_animate, messages.error_text)


async def remix(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/remix PROMPT: as a reply to a GIF or video (or as the caption of one), its motion with a new subject."""
    await _start_from(update, context, REMIX, clip_source, messages.NEED_CLIP, parse_remix, _said)


async def _start_from(
    update: Update, context: ContextTypes.DEFAULT_TYPE, command: re.Pattern[str],
    find: Callable[[Message | None], Source | None], missing: str, parse: Callable[[str], Request],
    explain: Callable[[OptionError], str],
) -> None:  # fmt: skip
    """A member's command on the message it captions or replies to: parse its words, queue the job."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    words = _arguments(command, message, context.bot.username)
    if words is None:
        return  # addressed to another bot
    source = find(message) or find(message.reply_to_message)
    if source is None:
        await reply(message, missing)
        return
    try:
        request = parse(words)
    except OptionError as exc:
        await reply(message, explain(exc))
        return
    holder = message if source.message_id == message.message_id else message.reply_to_message
    await start_job(
        runtime(context), context.bot, chat_id=message.chat_id, user_id=user.id, source=source, request=request,
        key=f"tg:{message.chat_id}:{message.message_id}", poster=_poster(holder),
    )  # fmt: skip


def _said(error: OptionError) -> str:
    """An option error as it stands: /animate's example line is no help with /remix."""
    return error.message


def _arguments(command: re.Pattern[str], message: Message, username: str) -> str | None:
    """What follows the command in the text or caption; None when it is addressed to another bot."""
    match = command.match(message.text or message.caption or "")
    if match is None or (match.group(1) and match.group(1).lower() != username.lower()):
        return None
    return match.group(2) or ""


async def offer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo alone in a private chat: offer a one-tap Animate button."""
    message = update.effective_message
    if message is None:
        return
    button = InlineKeyboardMarkup([[InlineKeyboardButton(messages.ANIMATE_BUTTON, callback_data="mim:go")]])
    await sending.call(
        lambda: message.reply_text(
            messages.OFFER_TEXT, reply_markup=button, reply_parameters=ReplyParameters(message.message_id)
        ),
        what="send",
    )


async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Every inline button: `mim:go`, `mim:again|more|prompt|del|send|share|shared:<job id>`."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    rt = runtime(context)
    action, _, job_id = query.data.removeprefix("mim:").partition(":")
    kept = rt.pending.get(job_id) if job_id else None
    allowed = kept is None or query.from_user.id == kept.user_id or rt.is_admin(query.from_user.id)
    if action == "del" and not allowed:
        await query.answer(messages.NOT_YOUR_JOB, show_alert=True)  # the refusal is the answer itself
        return
    if action in ("share", "shared"):  # answered with what happened, which only the presser sees
        await (gallery.share(rt, query, job_id) if action == "share" else gallery.already_shared(query))
        return
    await query.answer()
    message = query.message if isinstance(query.message, Message) else None
    if message is None:
        return
    chat_id, user_id = message.chat_id, query.from_user.id
    try:
        if action == "go":
            source = image_source(message.reply_to_message)
            if source is None:
                await sending.call(lambda: context.bot.send_message(chat_id, messages.NEED_IMAGE), what="send")
                return
            await start_job(
                rt, context.bot, chat_id=chat_id, user_id=user_id, source=source, request=parse_animate(""),
                key=f"tg:{chat_id}:{message.message_id}", poster=_poster(message.reply_to_message),
            )  # fmt: skip
        elif action in ("again", "more"):
            request = rerun(kept.request, kept.seed, more=action == "more") if kept is not None else None
            if kept is None or request is None:
                await sending.call(lambda: context.bot.send_message(chat_id, messages.UNKNOWN_JOB), what="send")
                return
            source = Source(kept.image, kept.filename, kept.reply_to or message.message_id)
            await start_job(
                rt, context.bot, chat_id=chat_id, user_id=user_id, source=source, request=request,
                key=f"tg:{chat_id}:cb:{query.id}", poster=kept.poster,
            )  # fmt: skip
        elif action == "prompt":
            job = await rt.engine.get(job_id)
            await sending.call(
                lambda: context.bot.send_message(
                    chat_id, messages.prompt_text(job.script), reply_parameters=ReplyParameters(message.message_id)
                ),
                what="send",
            )
        elif action == "del":
            await sending.call(lambda: message.delete(), what="delete")
        elif action == "send":
            data, _ = await rt.engine.result(job_id)
            job = await rt.engine.get(job_id)
            caption = messages.result_caption(None, (job.script or {}).get("motion_prompt"))
            await send_result(
                context.bot, chat_id, data, caption, job_id, reply_to=message.message_id, kind=job.kind,
                share=job.shareable,
            )  # fmt: skip
    except BotError as exc:
        line = messages.error_text(exc, job_id=job_id)
        await sending.call(lambda: context.bot.send_message(chat_id, line), what="send")


async def history(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/history: your last 10 animations, each finished one re-sendable with a button."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    try:
        jobs = await runtime(context).engine.history(PLATFORM, str(user.id), limit=10)
    except BotError as exc:
        await reply(message, messages.error_text(exc))
        return
    buttons = [
        InlineKeyboardButton(str(n), callback_data=f"mim:send:{job.id}")
        for n, job in enumerate(jobs, start=1)
        if job.status == "done" and job.kind in KEPT_KINDS
    ]
    markup = InlineKeyboardMarkup([buttons[:5], buttons[5:]]) if buttons else None
    await sending.call(
        lambda: message.reply_text(
            _numbered(messages.history_text(list(jobs))), reply_markup=markup,
            reply_parameters=ReplyParameters(message.message_id),
        ),
        what="send",
    )  # fmt: skip


async def quota(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/quota: how many animations you have left."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    try:
        left = await runtime(context).engine.quota(PLATFORM, str(user.id))
    except BotError as exc:
        await reply(message, messages.error_text(exc))
        return
    await reply(message, messages.quota_text(left))


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/cancel: stop your newest queued or running animation."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    rt = runtime(context)
    try:
        jobs = await rt.engine.history(PLATFORM, str(user.id), limit=10)
        active = next((job for job in jobs if job.status in ACTIVE), None)
        if active is None:
            await reply(message, messages.NOTHING_TO_CANCEL)
            return
        job = await rt.engine.cancel(active.id, platform=PLATFORM, user_id=str(user.id))
    except BotError as exc:
        await reply(message, messages.error_text(exc))
        return
    if job.status != "cancelled":
        await reply(message, messages.NOT_CANCELLABLE)
        return
    # Its "Queued"/progress line becomes "Cancelled." at once rather than when the engine's event arrives;
    # that edit answers the command when it is in this chat, so the user gets one message, not two.
    kept = rt.pending.get(job.id)
    shown_here = kept is not None and kept.chat_id == message.chat_id
    if not await end_without_result(rt, context.bot, job.id, messages.CANCELLED) or not shown_here:
        await reply(message, messages.CANCELLED)


def _numbered(history_text: str) -> str:
    """Number the history's bullet lines so they match the re-send buttons."""
    lines = history_text.split("\n")
    count = 0
    for i, line in enumerate(lines):
        if line.startswith("• "):
            count += 1
            lines[i] = f"{count}. {line[2:]}"
    return "\n".join(lines)


def _poster(message: Message | None) -> str | None:
    """Who posted the meme, for the caption's credit."""
    user = message.from_user if message is not None else None
    return user.full_name if user is not None and not user.is_bot else None
