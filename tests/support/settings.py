"""One test's config as the two processes read it: the engine's Settings and the bots' BotSettings."""

from __future__ import annotations

from typing import Any

from bot.settings import BotSettings, load_bot_settings
from bot.settings import replace as replace_bot
from engine.config import Settings, load_settings, replace

BOT_SECTIONS = ("telegram", "discord")


def both(sections: dict[str, dict[str, Any]]) -> tuple[Settings, BotSettings]:
    """Sections of config.toml laid over the shipped defaults; the bots reach the engine at its [engine] url."""
    settings = replace(load_settings(), **{k: v for k, v in sections.items() if k not in BOT_SECTIONS})
    bots = {k: v for k, v in sections.items() if k in BOT_SECTIONS}
    return settings, replace_bot(load_bot_settings(), engine={"url": settings.engine.url}, **bots)
