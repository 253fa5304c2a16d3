"""What the service's handlers share: typed app keys and the tokens bots and admins present."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from engine.config import Settings
from engine.pipeline import Pipeline
from engine.service.checkpoints import CheckpointRegistry
from engine.service.decodes import DecodeBudget
from engine.service.metrics import ServiceMetrics
from engine.service.queue.protocol import JobQueue
from storage.repository import Repository


@dataclass(frozen=True)
class Tokens:
    """The bearer tokens in force; None means that kind of caller is not configured."""

    bot: str | None = None
    admin: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Tokens:
        """ENGINE_TOKEN and ENGINE_ADMIN_TOKEN; empty values count as unset."""
        env = os.environ if environ is None else environ
        return cls(bot=env.get("ENGINE_TOKEN") or None, admin=env.get("ENGINE_ADMIN_TOKEN") or None)

    def __repr__(self) -> str:
        # tokens must never reach a log line, even through a repr in a traceback
        return f"Tokens(bot={'set' if self.bot else None}, admin={'set' if self.admin else None})"


SETTINGS = web.AppKey("settings", Settings)
TOKENS = web.AppKey("tokens", Tokens)
REPOSITORY = web.AppKey("repository", Repository)
PIPELINE = web.AppKey("pipeline", Pipeline)
QUEUE = web.AppKey("queue", JobQueue)
CHECKPOINTS = web.AppKey("checkpoints", CheckpointRegistry)
METRICS = web.AppKey("metrics", ServiceMetrics)
DECODES = web.AppKey("decodes", DecodeBudget)
OPENAPI = web.AppKey("openapi", dict)
# Set when the server starts to shut down: long-lived event streams end at once instead of holding the shutdown
# until aiohttp's timeout cancels them (a dashboard or a bot following a job kept a restart waiting 15–60 s).
CLOSING = web.AppKey("closing", asyncio.Event)


async def until_set(event: asyncio.Event, closing: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` or `closing` is set, or `timeout` seconds pass; True when the server is closing."""
    waits = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(closing.wait())}
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    return closing.is_set()
