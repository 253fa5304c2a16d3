"""`makeitmove bot telegram|discord`: the chat bots, plugged into the engine's command line by an entry point."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    """Add `bot telegram` and `bot discord` to the `makeitmove` command line."""
    bot = commands.add_parser("bot", help="run a chat bot", description="Run a chat bot against the engine service.")
    bots = bot.add_subparsers(dest="bot_command", required=True, metavar="PLATFORM", parser_class=type(bot))
    telegram = bots.add_parser(
        "telegram", help="the Telegram bot",
        description="Run the Telegram bot. Tokens come from TELEGRAM_TOKEN, ENGINE_TOKEN and ENGINE_ADMIN_TOKEN.",
    )  # fmt: skip
    telegram.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    telegram.set_defaults(handler=bot_telegram_command)
    discord = bots.add_parser(
        "discord", help="the Discord bot",
        description="Run the Discord bot. Tokens come from DISCORD_TOKEN, ENGINE_TOKEN and ENGINE_ADMIN_TOKEN.",
    )  # fmt: skip
    discord.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    discord.set_defaults(handler=bot_discord_command)


def bot_telegram_command(args: argparse.Namespace) -> int:
    """`makeitmove bot telegram`: long polling, or a webhook when [telegram] webhook_url is set."""
    from bot.settings import load_bot_settings

    try:
        from bot.telegram.app import run
    except ImportError as exc:  # python-telegram-bot is an extra
        from engine.errors import ConfigError

        missing = exc.name
        raise ConfigError(f"the Telegram bot needs pip install 'makeitmove[telegram]' ({missing} is missing)") from None

    settings = load_bot_settings(args.config)
    if not args.verbose:  # a service logs its job transitions; the CLI's default is quiet
        logging.getLogger().setLevel(logging.INFO)
    run(settings, os.environ)
    return 0


def bot_discord_command(args: argparse.Namespace) -> int:
    """`makeitmove bot discord`: the gateway connection, slash commands, the context menu and buttons."""
    from bot.settings import load_bot_settings
    from engine.errors import ConfigError

    try:
        from bot.discord.app import run, token_of
    except ImportError as exc:  # discord.py is an extra
        raise ConfigError(f"the Discord bot needs pip install 'makeitmove[discord]' ({exc.name} is missing)") from None

    settings = load_bot_settings(args.config)
    token_of(os.environ)  # a missing token ends the command before anything starts
    if not args.verbose:
        logging.getLogger().setLevel(logging.INFO)
    run(settings, os.environ)
    return 0
