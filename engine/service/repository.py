"""The engine's way into storage: the repository opened on [storage] url with the config's limits as defaults."""

from __future__ import annotations

from engine.config import Settings
from storage.records import Limits
from storage.repository import Repository


def default_limits(settings: Settings) -> Limits:
    """The config file's limits, used until an admin changes them."""
    limits = settings.limits
    return Limits(
        user_jobs=limits.user.jobs,
        user_window_s=limits.user.window_s,
        user_concurrent=limits.user.concurrent,
        chat_jobs=limits.chat.jobs,
        chat_window_s=limits.chat.window_s,
        queue_max=limits.queue_max,
    )


async def open_repository(settings: Settings) -> Repository:
    """The repository on [storage] url, migrated, with the config's limits as its defaults."""
    return await Repository.open(settings.storage.url, default_limits=default_limits(settings))
