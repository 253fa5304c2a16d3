"""The wiring, in one place: the Application, its handlers, start-up, shutdown and the error handler."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import urlsplit

from telegram import BotCommand, Message, Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    Updater,
    filters,
)

from bot.core import messages
from bot.core.engine_client import EngineClient
from bot.core.errors import BotError
from bot.core.pending import PendingJobs
from bot.core.throttle import EditThrottle
from bot.settings import BotSettings, TelegramSettings
from bot.telegram import admin, handlers
from bot.telegram.delivery import resume, stop_watching
from bot.telegram.runtime import RUNTIME, Runtime, runtime_of
from engine.errors import ConfigError

log = logging.getLogger(__name__)

MIN_EDIT_INTERVAL_S = 1.0  # Telegram's per-chat pace: about one message or edit a second
# A caption that starts with /animate on a photo, image document, sticker or animation.
ANIMATE_CAPTION = filters.CaptionRegex(r"(?i)^/animate(@\w+)?(\s|$)")
MEDIA = filters.PHOTO | filters.Document.ALL | filters.Sticker.ALL | filters.ANIMATION
# A caption that starts with /remix on a GIF, video or clip document.
REMIX_CAPTION = filters.CaptionRegex(r"(?i)^/remix(@\w+)?(\s|$)")
CLIPS = filters.ANIMATION | filters.VIDEO | filters.Document.ALL
SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what setWebhook accepts as a secret_token


@dataclass(frozen=True)
class Webhook:
    """Where PTB's webhook server listens, and what setWebhook tells Telegram."""

    listen: str
    port: int
    url_path: str
    url: str
    secret: str

    def __repr__(self) -> str:
        return f"Webhook({self.url!r} on {self.listen}:{self.port})"  # never the secret


def webhook_of(tg: TelegramSettings, environ: Mapping[str, str]) -> Webhook | None:
    """The webhook from [telegram] webhook_url and TELEGRAM_WEBHOOK_SECRET, or None for long polling."""
    if not tg.webhook_url:
        return None
    # Without the secret anyone who learns the URL can post updates, e.g. an admin's /ban with a forged user id.
    secret = environ.get("TELEGRAM_WEBHOOK_SECRET", "")
    if not SECRET.fullmatch(secret):
        raise ConfigError("webhook mode needs TELEGRAM_WEBHOOK_SECRET: 1-256 characters of A-Z, a-z, 0-9, _ and -")
    if importlib.util.find_spec("tornado") is None:  # PTB's webhook server; otherwise it fails only once started
        raise ConfigError("webhook mode needs pip install 'python-telegram-bot[webhooks]==22.8' (tornado is missing)")
    path = urlsplit(tg.webhook_url).path.strip("/")  # the proxy in front forwards this path unchanged
    return Webhook(tg.webhook_listen, tg.webhook_port, path, tg.webhook_url, secret)


def build_application(settings: BotSettings, environ: Mapping[str, str]) -> Application:
    """The bot: TELEGRAM_TOKEN, ENGINE_TOKEN and ENGINE_ADMIN_TOKEN from `environ`, the rest from settings."""
    token = environ.get("TELEGRAM_TOKEN")
    if not token:
        raise ConfigError("set TELEGRAM_TOKEN to the bot's token from @BotFather")
    tg = settings.telegram
    application = (
        Application.builder()
        .token(token)
        .base_url(tg.api_base_url)
        .base_file_url(tg.file_base_url)
        .concurrent_updates(True)  # a slow download must not hold up everyone else's "Queued"
        .post_init(startup)
        .post_shutdown(shutdown)
        .build()
    )
    engine = EngineClient(
        settings.engine.url, environ.get("ENGINE_TOKEN") or None, admin_token=environ.get("ENGINE_ADMIN_TOKEN") or None
    )
    throttle = EditThrottle(tg.edits_per_minute, min_interval=MIN_EDIT_INTERVAL_S)
    application.bot_data[RUNTIME] = Runtime(tg, engine, PendingJobs(tg.state_file), throttle)
    add_handlers(application)
    return application


def add_handlers(application: Application) -> None:
    """Every command, message and button handler, and the error handler."""
    application.add_handlers(
        [
            CommandHandler("start", handlers.start),
            CommandHandler("help", handlers.help_command),
            CommandHandler("animate", handlers.animate),
            MessageHandler(ANIMATE_CAPTION & MEDIA, handlers.animate),
            CommandHandler("remix", handlers.remix),
            MessageHandler(REMIX_CAPTION & (MEDIA | CLIPS), handlers.remix),  # on a photo: "reply to a GIF"
            MessageHandler(
                filters.PHOTO & filters.ChatType.PRIVATE & ~ANIMATE_CAPTION & ~REMIX_CAPTION, handlers.offer
            ),
            CallbackQueryHandler(handlers.button, pattern=r"^mim:"),
            CommandHandler("history", handlers.history),
            CommandHandler("quota", handlers.quota),
            CommandHandler("cancel", handlers.cancel),
            CommandHandler("lora", admin.lora),
            CommandHandler("stats", admin.stats),
            CommandHandler("ban", admin.ban),
            CommandHandler("unban", admin.unban),
            CommandHandler("limits", admin.limits),
        ]
    )
    application.add_error_handler(on_error)


async def startup(application: Application) -> None:
    """Advertise the commands, then resume watching the jobs the state file says are in flight."""
    commands = [BotCommand(name, what) for name, what, admin_only in messages.COMMANDS if not admin_only]
    try:
        await application.bot.set_my_commands(commands)
    except Exception:  # a cosmetic call; the bot works without it
        log.warning("setMyCommands failed", exc_info=True)
    resumed = resume(runtime_of(application.bot_data), application.bot)
    log.info("bot @%s started; resumed %d jobs in flight", application.bot.username, resumed)


async def shutdown(application: Application) -> None:
    """Stop the watchers (their jobs stay in the state file) and close the engine session."""
    rt = runtime_of(application.bot_data)
    await stop_watching(rt)
    await rt.engine.close()


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the traceback; tell the user one calm sentence."""
    log.error("update failed", exc_info=context.error)
    if not isinstance(update, Update):
        return
    message = update.effective_message
    if isinstance(message, Message):
        error = context.error if isinstance(context.error, BotError) else None
        with contextlib.suppress(Exception):  # the error may be Telegram itself being unreachable
            await message.reply_text(messages.error_text(error) if error else messages.error_text(RuntimeError()))


@contextlib.asynccontextmanager
async def polling(application: Application, *, poll_timeout: float = 10.0) -> AsyncIterator[Application]:
    """Run the bot with long polling inside the running event loop (what run_polling does, without owning it)."""

    async def start(updater: Updater) -> object:
        return await updater.start_polling(
            poll_interval=0.0, timeout=int(poll_timeout), allowed_updates=Update.ALL_TYPES
        )

    async with _running(application, start):
        yield application


@contextlib.asynccontextmanager
async def webhook(application: Application, hook: Webhook) -> AsyncIterator[Application]:
    """Run the bot's webhook server inside the running event loop (what run_webhook does, without owning it)."""

    async def start(updater: Updater) -> object:
        return await updater.start_webhook(**_webhook_arguments(hook))

    async with _running(application, start):
        yield application


@contextlib.asynccontextmanager
async def _running(application: Application, start: Callable[[Updater], Awaitable[object]]) -> AsyncIterator[None]:
    await application.initialize()
    if application.post_init is not None:
        await application.post_init(application)
    updater = application.updater
    assert updater is not None
    await start(updater)
    await application.start()
    try:
        yield
    finally:
        await updater.stop()
        await application.stop()
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)


class _WebhookArguments(TypedDict):
    listen: str
    port: int
    url_path: str
    webhook_url: str
    allowed_updates: list[str]
    secret_token: str


def _webhook_arguments(hook: Webhook) -> _WebhookArguments:
    """start_webhook's and run_webhook's shared arguments, so the tests run what production runs."""
    return {
        "listen": hook.listen, "port": hook.port, "url_path": hook.url_path, "webhook_url": hook.url,
        "allowed_updates": Update.ALL_TYPES, "secret_token": hook.secret,
    }  # fmt: skip


def run(settings: BotSettings, environ: Mapping[str, str]) -> None:
    """`makeitmove bot telegram`: long polling, or a webhook when [telegram] webhook_url is set."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines carry the bot token
    hook = webhook_of(settings.telegram, environ)  # before anything starts: a config error ends the command
    application = build_application(settings, environ)
    if hook is not None:
        application.run_webhook(**_webhook_arguments(hook))
    else:
        application.run_polling(allowed_updates=Update.ALL_TYPES)
