"""Admin commands, for [telegram] admins only: /lora (list, use, off, tune), /stats, /ban, /unban, /limits."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ContextTypes

from bot.core import messages
from bot.core.errors import BotError, OptionError
from bot.core.options import parse_limits, parse_tune
from bot.telegram.delivery import start_job
from bot.telegram.handlers import reply
from bot.telegram.media import clip_source
from bot.telegram.runtime import PLATFORM, runtime

log = logging.getLogger(__name__)


async def _admin_args(update: Update, context: ContextTypes.DEFAULT_TYPE) -> list[str] | None:
    """The command's arguments when an admin sent it; otherwise a polite refusal and None."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return None
    if not runtime(context).is_admin(user.id):
        await reply(message, messages.ONLY_ADMINS)
        return None
    return list(context.args or [])


async def lora(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/lora lists the checkpoints; /lora use NAME switches; /lora off goes back to the base model; /lora tune."""
    args = await _admin_args(update, context)
    if args is None or update.effective_message is None:
        return
    if args[:1] == ["tune"]:
        await _tune(update, context, args[1:])
        return
    engine = runtime(context).engine
    try:
        if args[:1] == ["use"] and len(args) == 2:
            listing = await engine.activate_checkpoint(args[1])
            answer = messages.checkpoint_activated_text(listing.active)
        elif args == ["off"]:
            await engine.activate_checkpoint(None)
            answer = messages.checkpoint_activated_text(None)
        elif not args:
            answer = messages.checkpoints_text(await engine.checkpoints())
        else:
            answer = messages.LORA_USAGE
    except BotError as exc:
        answer = messages.error_text(exc)
    await reply(update.effective_message, answer)


async def _tune(update: Update, context: ContextTypes.DEFAULT_TYPE, words: list[str]) -> None:
    """/lora tune NAME [what happens in it], in reply to a GIF or video: a checkpoint tuned on it, followed live."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    source = clip_source(message.reply_to_message)
    if source is None:
        await reply(message, messages.TUNE_NEED_CLIP)
        return
    try:
        request = parse_tune(words)
    except OptionError as exc:
        await reply(message, exc.message)
        return
    await start_job(
        runtime(context), context.bot, chat_id=message.chat_id, user_id=user.id, source=source, request=request,
        key=f"tg:{message.chat_id}:{message.message_id}", poster=None,
    )  # fmt: skip


async def stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/stats: queue and usage numbers."""
    if await _admin_args(update, context) is None or update.effective_message is None:
        return
    try:
        answer = messages.stats_text(await runtime(context).engine.stats())
    except BotError as exc:
        answer = messages.error_text(exc)
    await reply(update.effective_message, answer)


async def ban(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/ban USER_ID [reason]."""
    args = await _admin_args(update, context)
    if args is None or update.effective_message is None:
        return
    if not args or not _is_user_id(args[0]):
        await reply(update.effective_message, messages.BAN_USAGE)
        return
    try:
        answer = messages.ban_text(await runtime(context).engine.ban(PLATFORM, args[0], " ".join(args[1:])))
    except BotError as exc:
        answer = messages.error_text(exc)
    await reply(update.effective_message, answer)


async def unban(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/unban USER_ID."""
    args = await _admin_args(update, context)
    if args is None or update.effective_message is None:
        return
    if len(args) != 1 or not _is_user_id(args[0]):
        await reply(update.effective_message, messages.UNBAN_USAGE)
        return
    try:
        lifted = await runtime(context).engine.unban(PLATFORM, args[0])
        answer = messages.unban_text(PLATFORM, args[0], lifted)
    except BotError as exc:
        answer = messages.error_text(exc)
    await reply(update.effective_message, answer)


async def limits(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/limits shows the rate limits; /limits key=value … changes them."""
    args = await _admin_args(update, context)
    if args is None or update.effective_message is None:
        return
    engine = runtime(context).engine
    try:
        if args:
            answer = messages.limits_text(await engine.set_limits(**parse_limits(" ".join(args))), changed=True)
        else:
            answer = messages.limits_text(await engine.limits())
    except BotError as exc:
        answer = messages.error_text(exc)
    await reply(update.effective_message, answer)


def _is_user_id(word: str) -> bool:
    """A Telegram user id: ASCII digits only (str.isdigit also takes "²" and "٣")."""
    return word.isascii() and word.isdigit() and len(word) <= 20
