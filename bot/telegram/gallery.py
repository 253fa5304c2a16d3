"""The 🌐 Share button under a result: its requester puts it in the engine's gallery; only the presser hears back."""

from __future__ import annotations

import contextlib
import logging

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.error import BadRequest

from bot.core import messages
from bot.core.errors import BotError
from bot.telegram import sending
from bot.telegram.runtime import PLATFORM, Runtime

log = logging.getLogger(__name__)


async def share(rt: Runtime, query: CallbackQuery, job_id: str) -> None:
    """`mim:share:<id>`: the requester only (the engine checks too); then the button reads 🌐 Shared."""
    kept = rt.pending.get(job_id)
    if kept is not None and kept.user_id != query.from_user.id:  # a result this bot forgot: the engine decides
        await query.answer(messages.NOT_REQUESTER, show_alert=True)
        return
    try:
        await rt.engine.share(job_id, platform=PLATFORM, user_id=str(query.from_user.id))
    except BotError as exc:
        await query.answer(messages.error_text(exc, job_id=job_id), show_alert=True)
        return
    await query.answer(messages.SHARED)
    message = query.message if isinstance(query.message, Message) else None
    markup = shared_markup(message.reply_markup, job_id) if message is not None else None
    if markup is not None:
        with contextlib.suppress(BadRequest):  # the result was deleted meanwhile: nothing left to mark
            await sending.call(lambda: query.edit_message_reply_markup(markup), what="edit")
    log.info("job %s shared by its requester", job_id)


async def already_shared(query: CallbackQuery) -> None:
    """`mim:shared:<id>`: the button of a result already in the gallery."""
    await query.answer(messages.ALREADY_SHARED)


def shared_markup(markup: InlineKeyboardMarkup | None, job_id: str) -> InlineKeyboardMarkup | None:
    """The result's buttons with 🌐 Share turned into 🌐 Shared; None when it has no Share button for this job."""
    press = f"mim:{messages.SHARE_BUTTON[0]}:{job_id}"
    rows = markup.inline_keyboard if markup is not None else ()
    if not any(button.callback_data == press for row in rows for button in row):
        return None
    action, label = messages.SHARED_BUTTON
    shared = InlineKeyboardButton(label, callback_data=f"mim:{action}:{job_id}")
    return InlineKeyboardMarkup([[shared if b.callback_data == press else b for b in row] for row in rows])
