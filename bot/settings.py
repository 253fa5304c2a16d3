"""The bots' settings: their own sections of config.toml ([telegram], [discord]) and where the engine is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from engine.config import POSITIVE, Range, as_raw, build, merge, read_config


@dataclass(frozen=True)
class EngineLink:
    """Where the bots find the engine service ([engine] url; the tokens come from the environment)."""

    url: str


@dataclass(frozen=True)
class TelegramSettings:
    """The Telegram bot (`makeitmove bot telegram`); its token comes from TELEGRAM_TOKEN."""

    admins: tuple[int, ...]
    api_base_url: str
    file_base_url: str
    webhook_url: str
    webhook_listen: str
    webhook_port: Annotated[int, Range(1, 65535)]
    edits_per_minute: Annotated[int, POSITIVE]
    state_file: str


@dataclass(frozen=True)
class DiscordSettings:
    """The Discord bot (`makeitmove bot discord`); its token comes from DISCORD_TOKEN."""

    admins: tuple[int, ...]
    dev_guild: Annotated[int, Range(0)]
    reply_trigger: bool
    edit_interval_s: Annotated[float, POSITIVE]
    state_file: str
    api_base_url: str
    gateway_url: str


@dataclass(frozen=True)
class BotSettings:
    """Everything a bot process reads from the config file."""

    engine: EngineLink
    telegram: TelegramSettings
    discord: DiscordSettings


def load_bot_settings(path: str | Path | None = None) -> BotSettings:
    """The shipped defaults with the file at `path` laid over them; the engine's own sections are its business."""
    raw = read_config(path)
    sections = {"engine": {"url": raw["engine"]["url"]}, "telegram": raw["telegram"], "discord": raw["discord"]}
    return build(BotSettings, sections, prefix="")


def replace(settings: BotSettings, **sections: dict[str, Any]) -> BotSettings:
    """A copy with some keys changed, validated like a config file: replace(s, discord={"dev_guild": 1})."""
    return build(BotSettings, merge(as_raw(settings), sections, prefix=""), prefix="")
