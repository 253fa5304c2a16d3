"""What every handler shares, kept in `application.bot_data`: settings, the engine client, jobs in flight."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

from telegram.ext import ContextTypes

from bot.core.engine_client import EngineClient
from bot.core.pending import PendingJobs
from bot.core.throttle import EditThrottle
from bot.settings import TelegramSettings

RUNTIME = "makeitmove.runtime"
PLATFORM = "telegram"
RESULT_FORMAT = "mp4"  # Telegram plays an H.264 MP4 sent with sendAnimation as a looping GIF
KEEP_DELIVERED = 500  # delivered jobs remembered for duplicate updates and the result buttons


@dataclass
class Runtime:
    """The bot's state: one per Application."""

    settings: TelegramSettings
    engine: EngineClient
    pending: PendingJobs
    throttle: EditThrottle
    claims: set[str] = field(default_factory=set)  # idempotency keys being submitted right now
    watchers: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # job id -> its watcher
    # the status line each job shows now; in memory, because the state file is fsynced on every write
    shown: dict[str, str] = field(default_factory=dict)

    def is_admin(self, user_id: int | None) -> bool:
        """The user is one of [telegram] admins."""
        return user_id is not None and user_id in self.settings.admins


def runtime(context: ContextTypes.DEFAULT_TYPE) -> Runtime:
    """The Runtime of the Application handling this update."""
    return cast(Runtime, context.bot_data[RUNTIME])


def runtime_of(bot_data: dict[Any, Any]) -> Runtime:
    """The Runtime stored in an Application's bot_data."""
    return cast(Runtime, bot_data[RUNTIME])
