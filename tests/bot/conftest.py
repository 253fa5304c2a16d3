"""Fixtures of the Discord bot's tests (the Telegram tests bring their own pipeline)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from engine.config import load_settings, replace
from engine.pipeline import Pipeline
from tests.bot.telegram_world import SMALL


def _discord(request: pytest.FixtureRequest) -> bool:
    return request.module.__name__.rsplit(".", 1)[-1].startswith("test_discord")


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline at small options, shared by the engines of a module."""
    return Pipeline(replace(load_settings(), **SMALL))


@pytest.fixture(autouse=True)
def discord_urls() -> Any:
    """discord.py's two process-wide URLs, put back after each test."""
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


@pytest.fixture(autouse=True)
def nothing_crashed(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Any:
    """In the Discord bot's tests, no error logged by the bot or discord.py: every failure there is one it handles."""
    if not _discord(request):
        yield
        return
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(("bot.", "discord"))]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]
