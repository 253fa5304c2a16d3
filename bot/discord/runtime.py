"""What every Discord handler shares: settings, the engine client, the jobs in flight, who is an admin, `say`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast

import aiohttp
import discord

from bot.core import formatting
from bot.core.engine_client import EngineClient
from bot.core.pending import PendingJob, PendingJobs
from bot.settings import DiscordSettings

PLATFORM = "discord"
KEEP_DELIVERED = 500  # delivered jobs remembered for the result buttons and duplicate events
TOKEN_LIFETIME_S = 15 * 60  # an interaction token's life; its messages can't be edited through it afterwards
TOKEN_MARGIN_S = 60  # stop using a token this long before it dies: an upload near the end may outlive it
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # what Discord lets a bot upload in a server without boosts
NONE = discord.AllowedMentions.none()  # on every message: OCR or LLM text must never ping anyone


@dataclass
class Runtime:
    """The bot's state: one per client."""

    settings: DiscordSettings
    engine: EngineClient
    pending: PendingJobs
    claims: set[str] = field(default_factory=set)  # idempotency keys being submitted right now
    watchers: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # job id -> its watcher
    # the status line each job should show, the one it shows, when it was last edited, and a pending edit
    latest: dict[str, str] = field(default_factory=dict)
    shown: dict[str, str] = field(default_factory=dict)
    edited_at: dict[str, float] = field(default_factory=dict)
    flushes: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None  # downloads of images behind embed URLs

    def is_admin(self, user: discord.abc.User | None) -> bool:
        """One of [discord] admins by user or role id; with that list empty, anyone with Manage Server."""
        if user is None:
            return False
        admins = set(self.settings.admins)
        roles = {role.id for role in getattr(user, "roles", ())}
        if admins:
            return user.id in admins or bool(roles & admins)
        permissions = getattr(user, "guild_permissions", None)
        return bool(permissions is not None and permissions.manage_guild)


def poster_of(user: discord.abc.User | None) -> str | None:
    """Who posted the meme or GIF, for the caption's credit (never a bot)."""
    return user.display_name if user is not None and not user.bot else None


def token_usable(kept: PendingJob, now: float | None = None) -> bool:
    """The job's interaction token (if it has one) can still edit its messages."""
    expires = kept.token_expires
    return bool(kept.token) and expires is not None and (now or time.time()) < expires - TOKEN_MARGIN_S


def chat_of(guild_id: int | None, channel_id: int | None) -> str:
    """The engine's chat for per-chat limits: the server, or the DM channel outside one."""
    return str(guild_id) if guild_id else f"dm{channel_id or 0}"


def runtime_of(interaction: discord.Interaction) -> Runtime:
    """The Runtime of the client handling this interaction."""
    return cast(Runtime, interaction.client.rt)  # type: ignore[attr-defined]


async def say(interaction: discord.Interaction, line: str) -> None:
    """One ephemeral sentence, as the response or as a follow-up when the response was already given."""
    line = formatting.defuse_mentions(line)
    if interaction.response.is_done():
        await interaction.followup.send(line, ephemeral=True, allowed_mentions=NONE)
    else:
        await interaction.response.send_message(line, ephemeral=True, allowed_mentions=NONE)
