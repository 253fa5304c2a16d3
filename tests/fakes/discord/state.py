"""The fake's world: guilds, roles, members, channels, users, messages, interactions and files, and their lookups."""

from __future__ import annotations

import io
import itertools
import mimetypes
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from PIL import Image

from tests.fakes.discord.constants import (
    ADMIN,
    ADMINISTRATOR,
    ALICE,
    ALL_PERMISSIONS,
    APPLICATION_ID,
    BOB,
    BOT_ID,
    CHANNEL,
    DISCORD_EPOCH_MS,
    EVERYONE_PERMISSIONS,
    GUILD,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    MIB,
    ROLE_MODS,
)


@dataclass
class Call:
    """One HTTP request the bot made (REST, webhook or CDN), and what the fake answered."""

    method: str
    path: str  # without /api/v10, e.g. "/channels/1/messages"
    json: Any  # the JSON body, or multipart's payload_json; None without one
    files: dict[str, bytes]  # uploaded filename -> bytes
    at: float  # time.monotonic()
    query: dict[str, str] = field(default_factory=dict)
    status: int = 0


@dataclass
class Interaction:
    """One interaction a user started, and how the bot answered it."""

    payload: dict[str, Any]
    created: float  # epoch seconds, from its snowflake
    responses: list[dict[str, Any]] = field(default_factory=list)
    original_id: int | None = None
    modal: dict[str, Any] | None = None

    def age(self) -> float:
        """Seconds since the interaction was created."""
        return time.time() - self.created


def now_iso() -> str:
    """Now, as Discord writes timestamps."""
    return datetime.now(timezone.utc).isoformat()


class World:
    """Everything the fake knows for one bot, and where it is served; the gateway and REST read and change it."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.application_id = APPLICATION_ID
        self.bot_user: dict[str, Any] = self.user(BOT_ID, "makeitmove", bot=True)
        self.port = 0
        self.attachment_size_limit = 10 * MIB  # what interactions announce as attachment_size_limit
        self.calls: list[Call] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.versions: dict[int, list[dict[str, Any]]] = {}  # message id -> its state after creation and each edit
        self.interactions: dict[int, Interaction] = {}
        self.tokens: dict[str, int] = {}  # interaction token -> interaction id
        self.guilds: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {BOT_ID: self.bot_user}
        self.members: dict[int, dict[int, dict[str, Any]]] = {}  # guild -> user -> member (roles as ids)
        self.roles: dict[int, dict[int, dict[str, Any]]] = {}  # guild -> role id -> role
        self.synced: dict[int | None, list[dict[str, Any]]] = {}  # guild (None: global) -> synced commands
        self.files: dict[int, tuple[str, str, bytes]] = {}  # attachment id -> (filename, content type, bytes)
        self.read_only: set[int] = set()  # channels where the bot lacks Send Messages: its posts get 403 50013
        self._increment = itertools.count()

    # --- where it is served ---

    @property
    def api_base_url(self) -> str:
        """discord.py's Route.BASE."""
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        """discord.py's DiscordWebSocket.DEFAULT_GATEWAY (and what GET /gateway/bot answers)."""
        return f"ws://127.0.0.1:{self.port}/gateway/"

    @property
    def cdn_base_url(self) -> str:
        """Where attachments are served."""
        return f"http://127.0.0.1:{self.port}/cdn"

    # --- guilds, roles, members, channels ---

    def add_guild(self, guild_id: int, name: str, *, owner_id: int) -> None:
        """A guild with its @everyone role; the bot is a member."""
        self.guilds[guild_id] = {"id": guild_id, "name": name, "owner_id": owner_id}
        self.roles[guild_id], self.members[guild_id] = {}, {}
        self.add_role(guild_id, guild_id, "@everyone", EVERYONE_PERMISSIONS)
        self.add_member(guild_id, BOT_ID, self.bot_user["username"])

    def add_role(self, guild_id: int, role_id: int, name: str, permissions: int) -> None:
        """A role with these permission bits."""
        self.roles[guild_id][role_id] = {
            "id": str(role_id), "name": name, "permissions": str(permissions), "position": len(self.roles[guild_id]),
            "color": 0, "colors": {"primary_color": 0}, "hoist": False, "managed": False, "mentionable": False,
            "icon": None, "unicode_emoji": None, "flags": 0,
        }  # fmt: skip

    def add_member(
        self, guild_id: int, user_id: int, name: str, *, roles: Iterable[int] = (), permissions: int | None = None
    ) -> None:
        """A member; `permissions` gives them a role of their own with exactly these bits."""
        roles = list(roles)
        if permissions is not None:
            role_id = self.snowflake()
            self.add_role(guild_id, role_id, f"{name}'s role", permissions)
            roles.append(role_id)
        self.users.setdefault(user_id, self.user(user_id, name))
        self.members[guild_id][user_id] = {"user_id": user_id, "roles": roles, "joined_at": now_iso()}

    def add_channel(self, guild_id: int, channel_id: int, name: str) -> None:
        """A text channel."""
        self.channels[channel_id] = {
            "id": str(channel_id), "type": 0, "guild_id": str(guild_id), "name": name, "position": len(self.channels),
            "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None, "last_message_id": None,
            "rate_limit_per_user": 0, "flags": 0,
        }  # fmt: skip

    def setup_default(self) -> None:
        """GUILD (owned by nobody here) with CHANNEL, ROLE_MODS (Manage Server) and members ADMIN, ALICE, BOB."""
        self.add_guild(GUILD, "Meme Lab", owner_id=1)
        self.add_channel(GUILD, CHANNEL, "memes")
        self.add_role(GUILD, ROLE_MODS, "mods", EVERYONE_PERMISSIONS | MANAGE_GUILD | MANAGE_MESSAGES)
        self.add_member(GUILD, ADMIN, "admin", roles=[ROLE_MODS])
        self.add_member(GUILD, ALICE, "alice")
        self.add_member(GUILD, BOB, "bob")

    # --- files ---

    def store_file(self, data: bytes, filename: str, content_type: str, channel: int) -> dict[str, Any]:
        """Keep bytes for the CDN; returns the Discord attachment object (width and height for an image)."""
        attachment_id = self.snowflake()
        self.files[attachment_id] = (filename, content_type, data)
        url = f"{self.cdn_base_url}/attachments/{channel}/{attachment_id}/{filename}"
        attachment: dict[str, Any] = {
            "id": str(attachment_id), "filename": filename, "size": len(data), "url": url, "proxy_url": url,
            "content_type": content_type,
        }  # fmt: skip
        if content_type.startswith("image/"):
            try:
                with Image.open(io.BytesIO(data)) as image:
                    attachment.update(width=image.width, height=image.height)
            except (OSError, ValueError):
                pass  # Discord leaves out the size of an image it can't read
        return attachment

    @staticmethod
    def guess_type(filename: str) -> str:
        """A file's content type from its name, as Discord guesses it."""
        return mimetypes.guess_type(filename)[0] or "application/octet-stream"

    # --- lookups and objects as Discord sends them ---

    def record(self, interaction: dict[str, Any] | int) -> Interaction:
        """The interaction behind a payload or id."""
        interaction_id = int(interaction["id"] if isinstance(interaction, dict) else interaction)
        return self.interactions[interaction_id]

    def snowflake(self, at: float | None = None) -> int:
        """An id whose timestamp is `at` (now by default), as discord.utils.snowflake_time reads it."""
        ms = int((time.time() if at is None else at) * 1000)
        return ((ms - DISCORD_EPOCH_MS) << 22) | (next(self._increment) & 0x3FFFFF)

    @staticmethod
    def user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
        """A user object."""
        return {
            "id": str(user_id), "username": name, "global_name": name, "discriminator": "0", "avatar": None,
            "bot": bot, "system": False, "public_flags": 0, "flags": 0, "banner": None, "accent_color": None,
        }  # fmt: skip

    def member(self, guild: int, user: int) -> dict[str, Any]:
        """A guild member object, with its user."""
        known = self.members[guild][user]
        return {
            "user": self.users[user], "roles": [str(r) for r in known["roles"]], "joined_at": known["joined_at"],
            "nick": None, "avatar": None, "banner": None, "premium_since": None, "deaf": False, "mute": False,
            "pending": False, "flags": 0, "communication_disabled_until": None,
        }  # fmt: skip

    def mention(self, guild: int | None, user: int) -> dict[str, Any]:
        """A user as a message's mentions list shows them: with their member object in a guild."""
        if guild is None or user not in self.members[guild]:
            return self.users[user]
        member = {k: v for k, v in self.member(guild, user).items() if k != "user"}
        return {**self.users[user], "member": member}

    def perms(self, guild: int, user: int) -> int:
        """A member's guild permissions: @everyone and their roles; everything for the owner or an administrator."""
        if self.guilds[guild]["owner_id"] == user:
            return ALL_PERMISSIONS
        bits = int(self.roles[guild][guild]["permissions"])
        for role in self.members[guild][user]["roles"]:
            bits |= int(self.roles[guild][role]["permissions"])
        return ALL_PERMISSIONS if bits & ADMINISTRATOR else bits

    def guild_of(self, channel: int) -> int | None:
        """The guild a channel belongs to (None for a DM or an unknown channel)."""
        guild = self.channels[channel].get("guild_id") if channel in self.channels else None
        return int(guild) if guild else None

    def new_message(self, channel: int, author: dict[str, Any], content: str) -> dict[str, Any]:
        """A fresh message object (not stored)."""
        guild = self.guild_of(channel)
        return {
            "id": str(self.snowflake()), "channel_id": str(channel), "author": author, "content": content,
            "timestamp": now_iso(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [], "mention_roles": [], "attachments": [], "embeds": [], "components": [], "pinned": False,
            "type": 0, "flags": 0, **({"guild_id": str(guild)} if guild else {}),
        }  # fmt: skip
