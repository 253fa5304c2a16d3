"""A loopback fake of Discord: REST under /api/v10, the gateway, interaction webhooks and a CDN, on 127.0.0.1.

Enough of Discord for the real discord.py 2.7.1 client to log in, sync commands, receive interactions and
messages, answer them, upload files, hit rate limits, lose its gateway and resume. A test points discord.py here
with `Route.BASE = fake.api_base_url` and `DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)`.

The parts: `constants` (ids, permission bits, intents, flags), `state` (the world and its lookups), `messages`
(how the bot's messages are made and edited), `interactions` (what a user's action sends), `gateway` (the
websocket), `rest` (the HTTP API), `cdn` (files), and `server` (FakeDiscord, which serves them and drives them).
"""

from tests.fakes.discord.constants import (
    ADMIN,
    ADMINISTRATOR,
    ALICE,
    ALL_PERMISSIONS,
    APPLICATION_COMMAND,
    APPLICATION_ID,
    AUTOCOMPLETE,
    BOB,
    BOT_ID,
    BOT_NAME,
    CHANNEL,
    DIRECT_MESSAGES,
    DISCORD_EPOCH_MS,
    EPHEMERAL,
    EVERYONE_PERMISSIONS,
    GUILD,
    GUILD_MEMBERS,
    GUILD_MESSAGES,
    LOADING,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    MENTION,
    MESSAGE_COMPONENT,
    MESSAGE_CONTENT,
    MIB,
    MODAL_SUBMIT,
    ROLE_MENTION,
    ROLE_MODS,
    SUPPRESS_EMBEDS,
    WAIT_S,
)
from tests.fakes.discord.server import FakeDiscord
from tests.fakes.discord.state import Call

__all__ = [
    "ADMIN", "ADMINISTRATOR", "ALICE", "ALL_PERMISSIONS", "APPLICATION_COMMAND", "APPLICATION_ID", "AUTOCOMPLETE",
    "BOB", "BOT_ID", "BOT_NAME", "CHANNEL", "DIRECT_MESSAGES", "DISCORD_EPOCH_MS", "EPHEMERAL",
    "EVERYONE_PERMISSIONS", "GUILD", "GUILD_MEMBERS", "GUILD_MESSAGES", "LOADING", "MANAGE_GUILD", "MANAGE_MESSAGES",
    "MENTION", "MESSAGE_COMPONENT", "MESSAGE_CONTENT", "MIB", "MODAL_SUBMIT", "ROLE_MENTION", "ROLE_MODS",
    "SUPPRESS_EMBEDS", "WAIT_S", "Call", "FakeDiscord",
]  # fmt: skip
