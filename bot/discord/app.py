"""The wiring: the discord.py client, its command tree and persistent buttons, start-up, shutdown and `run`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.core import messages
from bot.core.engine_client import EngineClient
from bot.core.pending import PendingJobs
from bot.discord import commands, delivery, media
from bot.discord.runtime import NONE, Runtime
from bot.discord.views import ResultButton
from bot.settings import BotSettings, DiscordSettings
from engine.errors import ConfigError

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
INTENT_MISSING = (
    "[discord] reply_trigger is on, but this bot may not use the Message Content intent: turn it on in the "
    "Developer Portal (your application → Bot → Privileged Gateway Intents → Message Content Intent). Until then "
    "the reply trigger can't see the meme in the message replied to; /animate and Apps → Animate meme work."
)


class MakeItMove(discord.Client):
    """The bot: one client, one command tree, one Runtime."""

    def __init__(
        self, settings: BotSettings, environ: Mapping[str, str], *, message_content: bool, **options: Any
    ) -> None:
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here: no warning about it
        intents = discord.Intents.default()
        intents.message_content = message_content
        # allowed_mentions here is discord.py's default for every message it sends; each call says none() again
        super().__init__(intents=intents, allowed_mentions=NONE, chunk_guilds_at_startup=False, **options)
        dc = settings.discord
        self.rt = Runtime(
            dc,
            EngineClient(
                settings.engine.url,
                environ.get("ENGINE_TOKEN") or None,
                admin_token=environ.get("ENGINE_ADMIN_TOKEN") or None,
            ),  # fmt: skip
            PendingJobs(dc.state_file),
        )
        self.tree: app_commands.CommandTree[MakeItMove] = app_commands.CommandTree(self)
        self.runner: asyncio.Task[None] | None = None  # client.start, while `running`
        commands.register(self.tree)  # type: ignore[arg-type]

    async def setup_hook(self) -> None:
        """Buttons of old results, the command sync, then the jobs the state file says are in flight."""
        self.rt.http = media.session()
        self.add_dynamic_items(ResultButton)
        guild = discord.Object(self.rt.settings.dev_guild) if self.rt.settings.dev_guild else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        try:
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands %s", len(synced), f"to server {guild.id}" if guild else "globally")
        except discord.HTTPException:
            log.warning("the command sync failed; the commands Discord already has stay", exc_info=True)
        resumed = delivery.resume(self.rt, self)
        log.info("resumed %d jobs in flight", resumed)

    async def on_ready(self) -> None:
        """Say who we are, and whether the reply trigger can work."""
        log.info("bot %s ready in %d servers", self.user, len(self.guilds))
        if self.rt.settings.reply_trigger and not self.intents.message_content:
            log.warning(INTENT_MISSING)

    async def on_message(self, message: discord.Message) -> None:
        """The reply trigger, when [discord] reply_trigger is on."""
        if not self.rt.settings.reply_trigger:
            return
        try:
            await commands.on_reply(self, self.rt, message)
        except Exception:
            log.exception("reply trigger on message %s failed", message.id)
            with contextlib.suppress(discord.HTTPException):
                await message.reply(messages.error_text(RuntimeError()), mention_author=False, allowed_mentions=NONE)

    async def on_result_button(self, interaction: discord.Interaction, action: str, job_id: str) -> None:
        """A press of 🔁 ⚡ 📝 🗑 🌐 under a result, old results' included."""
        await commands.on_button(interaction, action, job_id)

    async def close(self) -> None:
        """Stop the watchers (their jobs stay in the state file), then the sessions and the gateway."""
        await delivery.stop_watching(self.rt)
        await self.rt.engine.close()
        await media.close(self.rt.http)
        await super().close()


def point_at(dc: DiscordSettings) -> None:
    """Send REST calls and the gateway where [discord] says: Discord itself, a proxy, or a test's fake.

    Both are private class attributes of discord.py (hence the exact pin); they are process-wide.
    """
    Route.BASE = dc.api_base_url.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(dc.gateway_url)


def token_of(environ: Mapping[str, str]) -> str:
    """DISCORD_TOKEN, or a ConfigError that says where to get one."""
    token = environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        raise ConfigError("set DISCORD_TOKEN to the bot's token (Developer Portal → your application → Bot)")
    return token


@contextlib.asynccontextmanager
async def running(
    settings: BotSettings, environ: Mapping[str, str], *, timeout: float | None = READY_TIMEOUT_S, **options: Any
) -> AsyncIterator[MakeItMove]:
    """A connected, ready bot inside the running event loop, closed when the block ends.

    Asked for the Message Content intent (reply_trigger) but refused it, the bot says why and starts again
    without it: the slash command and the context menu don't need it. `options` go to discord.Client.
    """
    token = token_of(environ)
    point_at(settings.discord)
    want_content = settings.discord.reply_trigger
    while True:
        client = MakeItMove(settings, environ, message_content=want_content, **options)
        client.runner = asyncio.create_task(client.start(token), name="discord-client")
        ready = asyncio.create_task(client.wait_until_ready())
        try:
            done, _ = await asyncio.wait({client.runner, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if client.runner in done:
            await client.close()
            failure = client.runner.exception()
            if isinstance(failure, discord.PrivilegedIntentsRequired) and want_content:
                log.warning(INTENT_MISSING)
                want_content = False
                continue
            if isinstance(failure, discord.LoginFailure):
                raise ConfigError("Discord refused DISCORD_TOKEN; copy the bot's token again from the Developer Portal")
            client.runner.result()  # raises what stopped the client
        if ready not in done:
            await _stop(client)
            raise TimeoutError(f"the Discord client wasn't ready within {timeout} s")
        break
    try:
        yield client
    finally:
        await _stop(client)


async def _stop(client: MakeItMove) -> None:
    await client.close()
    if client.runner is not None:
        with contextlib.suppress(asyncio.CancelledError, discord.DiscordException, asyncio.TimeoutError):
            await asyncio.wait_for(client.runner, timeout=10)


async def serve(settings: BotSettings, environ: Mapping[str, str]) -> None:
    """Run until stopped (or until discord.py gives up, which raises)."""
    async with running(settings, environ, timeout=None) as client:
        assert client.runner is not None
        await client.runner


def run(settings: BotSettings, environ: Mapping[str, str]) -> None:
    """`makeitmove bot discord`."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, environ))
