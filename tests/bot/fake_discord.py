"""A loopback fake of Discord: REST under /api/v10, the gateway, interaction webhooks and a CDN, on 127.0.0.1.

Enough of Discord for the real discord.py 2.7.1 client to log in, sync commands, receive interactions and
messages, answer them, upload files, hit rate limits, lose its gateway and resume. A test points discord.py here
with `Route.BASE = fake.api_base_url` and `DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)`.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import mimetypes
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from aiohttp import WSMsgType, web
from PIL import Image

T = TypeVar("T")

DISCORD_EPOCH_MS = 1_420_070_400_000
BOT_ID = APPLICATION_ID = 900_000_000_000_000_001  # a modern application: its bot user has the app's id
BOT_NAME = "Make It Move"
GUILD = 900_000_000_000_000_100
CHANNEL = 900_000_000_000_000_101
ROLE_MODS = 900_000_000_000_000_102  # the default guild's role with Manage Server
ADMIN, ALICE, BOB = 900_000_000_000_000_201, 900_000_000_000_000_202, 900_000_000_000_000_203
MIB = 1024 * 1024

# permission bits (https://discord.com/developers/docs/topics/permissions)
ADMINISTRATOR, MANAGE_GUILD, MANAGE_MESSAGES = 1 << 3, 1 << 5, 1 << 13
EVERYONE_PERMISSIONS = sum(1 << b for b in (6, 10, 11, 14, 15, 16, 18, 31))  # react, view, send, embed, attach...
ALL_PERMISSIONS = (1 << 51) - 1
# intent bits
GUILD_MEMBERS, GUILD_MESSAGES, DIRECT_MESSAGES, MESSAGE_CONTENT = 1 << 1, 1 << 9, 1 << 12, 1 << 15
# message flags
SUPPRESS_EMBEDS, EPHEMERAL, LOADING = 4, 64, 128
# interaction types
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")


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
class _Interaction:
    payload: dict[str, Any]
    created: float  # epoch seconds, from its snowflake
    responses: list[dict[str, Any]] = field(default_factory=list)
    original_id: int | None = None
    modal: dict[str, Any] | None = None


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # exactly "application/json": discord.py parses a body as JSON only then (aiohttp would add "; charset=utf-8")
    return web.Response(
        body=json.dumps(body).encode(), status=status, headers={"Content-Type": "application/json", **(headers or {})}
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"code": code, "message": message}, status)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class FakeDiscord:
    """Discord's REST API, gateway, interaction webhooks and CDN for one bot, on a free loopback port."""

    def __init__(self, token: str, *, message_content_intent_allowed: bool = True) -> None:
        self.token = token
        self.message_content_intent_allowed = message_content_intent_allowed
        self.application_id = APPLICATION_ID
        self.bot_user: dict[str, Any] = self._user(BOT_ID, "makeitmove", bot=True)
        self.token_lifetime_s = 900.0  # an interaction token's life (Discord: 15 minutes)
        self.callback_window_s = 3.0  # time to send the first interaction callback
        self.upload_limit = 10 * MIB  # per message, as Discord checks a bot's upload without boosts
        self.attachment_size_limit = 10 * MIB  # what interactions announce as attachment_size_limit
        self.calls: list[Call] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self._versions: dict[int, list[dict[str, Any]]] = {}  # message id -> its state after creation and each edit
        self.interactions: dict[int, _Interaction] = {}
        self.identify: dict[str, Any] | None = None  # the last IDENTIFY's "d"
        self.connections = self.resumes = 0
        self.guilds: dict[int, dict[str, Any]] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {BOT_ID: self.bot_user}
        self._members: dict[int, dict[int, dict[str, Any]]] = {}  # guild -> user -> member (roles as ids)
        self._roles: dict[int, dict[int, dict[str, Any]]] = {}  # guild -> role id -> role
        self._commands: dict[int | None, list[dict[str, Any]]] = {}  # guild (None: global) -> synced commands
        self._files: dict[int, tuple[str, str, bytes]] = {}  # attachment id -> (filename, content type, bytes)
        self._tokens: dict[str, int] = {}  # interaction token -> interaction id
        self._rate_limits: list[tuple[str, float]] = []
        self.read_only: set[int] = set()  # channels where the bot lacks Send Messages: its posts get 403 50013
        self._ws: web.WebSocketResponse | None = None
        self._session_id = ""
        self._live = False  # the current socket identified or resumed: events go out at once
        self._seq = 0
        self._events: list[dict[str, Any]] = []  # this session's dispatches, replayed on RESUME
        self._ready = asyncio.Event()
        self._increment = itertools.count()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- serving ---

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application(client_max_size=200 * MIB)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._api)
        app.router.add_get("/cdn/attachments/{channel}/{id}/{filename}", self._cdn)
        app.router.add_get("/gateway{tail:.*}", self._gateway)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close the gateway and stop listening."""
        if self._ws is not None:
            await self._ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

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

    # --- the world: guilds, roles, members, channels, attachments ---

    def add_guild(self, guild_id: int, name: str, *, owner_id: int) -> None:
        """A guild with its @everyone role; the bot is a member."""
        self.guilds[guild_id] = {"id": guild_id, "name": name, "owner_id": owner_id}
        self._roles[guild_id], self._members[guild_id] = {}, {}
        self.add_role(guild_id, guild_id, "@everyone", EVERYONE_PERMISSIONS)
        self.add_member(guild_id, BOT_ID, self.bot_user["username"])

    def add_role(self, guild_id: int, role_id: int, name: str, permissions: int) -> None:
        """A role with these permission bits."""
        self._roles[guild_id][role_id] = {
            "id": str(role_id), "name": name, "permissions": str(permissions), "position": len(self._roles[guild_id]),
            "color": 0, "colors": {"primary_color": 0}, "hoist": False, "managed": False, "mentionable": False,
            "icon": None, "unicode_emoji": None, "flags": 0,
        }  # fmt: skip

    def add_member(
        self, guild_id: int, user_id: int, name: str, *, roles: Iterable[int] = (), permissions: int | None = None
    ) -> None:
        """A member; `permissions` gives them a role of their own with exactly these bits."""
        roles = list(roles)
        if permissions is not None:
            role_id = self._snowflake()
            self.add_role(guild_id, role_id, f"{name}'s role", permissions)
            roles.append(role_id)
        self.users.setdefault(user_id, self._user(user_id, name))
        self._members[guild_id][user_id] = {"user_id": user_id, "roles": roles, "joined_at": _now_iso()}

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

    def add_attachment(self, data: bytes, filename: str, content_type: str | None = None) -> dict[str, Any]:
        """Serve bytes on the CDN; returns the Discord attachment object (width and height for an image)."""
        return self._store_file(data, filename, content_type or self._guess_type(filename), CHANNEL)

    def attachment_bytes(self, attachment: dict[str, Any] | int) -> bytes:
        """The bytes behind an attachment object or id (uploaded by the bot or added by the test)."""
        attachment_id = int(attachment["id"] if isinstance(attachment, dict) else attachment)
        return self._files[attachment_id][2]

    def commands(self, guild: int | None = None) -> list[dict[str, Any]]:
        """The commands last synced to a guild, or globally."""
        return list(self._commands.get(guild, []))

    # --- driving the bot ---

    async def wait_ready(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the bot identified and got READY and its guilds (or was refused); returns the IDENTIFY."""
        await asyncio.wait_for(self._ready.wait(), timeout)
        assert self.identify is not None
        return self.identify

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway event; while the socket is down it waits in the session for a RESUME."""
        self._seq += 1
        payload = {"op": 0, "t": event, "s": self._seq, "d": data}
        self._events.append(payload)
        if self._ws is not None and not self._ws.closed and self._live:
            await self._ws.send_str(json.dumps(payload))

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close the bot's gateway socket as Discord does on trouble; discord.py reconnects and RESUMEs."""
        assert self._ws is not None, "the bot has no gateway connection"
        await self._ws.close(code=code)

    async def slash(
        self, name: str, *, user: int = ALICE, channel: int = CHANNEL, guild: int | None = None,
        options: list[dict[str, Any]] | None = None, attachments: list[dict[str, Any]] | None = None,
        subcommand: str | None = None, created_at: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A user runs /name (subcommand "sub" or "group sub"); attachments fill its attachment options in order.

        Returns the INTERACTION_CREATE payload (its "id" and "token" identify it).
        """
        assert guild in (None, self._guild_of(channel)), f"channel {channel} is not in guild {guild}"
        data = self._command_data(name, 1, self._guild_of(channel), options, attachments, subcommand)
        return await self._interact(APPLICATION_COMMAND, data, user, channel, created_at=created_at)

    async def autocomplete(
        self, name: str, *, focused: str, value: str, user: int = ALICE, channel: int = CHANNEL,
        options: list[dict[str, Any]] | None = None, subcommand: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A user types `value` into option `focused` of /name; the answer is a type-8 callback."""
        typed = [*(options or []), {"name": focused, "value": value, "focused": True}]
        data = self._command_data(name, 1, self._guild_of(channel), typed, None, subcommand)
        return await self._interact(AUTOCOMPLETE, data, user, channel)

    async def context_menu(
        self, name: str, *, target_message: dict[str, Any], user: int = ALICE, channel: int | None = None,
        guild: int | None = None, created_at: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A user picks Apps → name on a message (content always visible: interactions carry it)."""
        channel = channel or int(target_message["channel_id"])
        assert guild in (None, self._guild_of(channel)), f"channel {channel} is not in guild {guild}"
        data = self._command_data(name, 3, self._guild_of(channel), None, None, None)
        data["target_id"] = str(target_message["id"])
        data["resolved"] = {"messages": {str(target_message["id"]): target_message}}
        return await self._interact(APPLICATION_COMMAND, data, user, channel, created_at=created_at)

    async def click(
        self, message_id: int, custom_id: str, *, user: int = ALICE, values: list[str] | None = None,
        created_at: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A user clicks a button (or picks `values` in a select) on a stored message."""
        message = self.messages[int(message_id)]
        found = [c for row in message.get("components", []) for c in row.get("components", [])]
        component = next((c for c in found if c.get("custom_id") == custom_id), None)
        if component is None:
            raise AssertionError(
                f"message {message_id} has no component {custom_id!r}: {[c.get('custom_id') for c in found]}"
            )
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            data["values"] = values
        channel = int(message["channel_id"])
        return await self._interact(MESSAGE_COMPONENT, data, user, channel, message=message, created_at=created_at)

    async def submit_modal(
        self, opened_by: dict[str, Any] | int, values: dict[str, str], *, user: int = ALICE
    ) -> dict[str, Any]:  # fmt: skip
        """A user submits the modal the bot answered `opened_by` with; `values` by text input custom_id."""
        modal = self._record(opened_by).modal
        assert modal is not None, "the bot opened no modal for that interaction"

        def filled(component: dict[str, Any]) -> dict[str, Any]:
            if component["type"] == 1:
                return {"type": 1, "components": [filled(c) for c in component["components"]]}
            if component["type"] == 18:
                return {"type": 18, "component": filled(component["component"])}
            return {"type": component["type"], "custom_id": component.get("custom_id"),
                    "value": values.get(component.get("custom_id", ""), "")}  # fmt: skip

        data = {"custom_id": modal["custom_id"], "components": [filled(c) for c in modal["components"]]}
        payload = self._record(opened_by).payload
        return await self._interact(
            MODAL_SUBMIT, data, user, int(payload["channel_id"]), message=payload.get("message")
        )

    async def post_message(
        self, channel: int, user: int, content: str, *, attachments: Iterable[dict[str, Any]] = (),
        embeds: Iterable[dict[str, Any]] = (), reply_to: int | None = None, mentions: Iterable[int] = (),
    ) -> dict[str, Any]:  # fmt: skip
        """A user posts in a channel: stored, and MESSAGE_CREATE as the bot's intents let it see it. Returns it."""
        guild = self._guild_of(channel)
        mentioned = [*mentions, *(int(m) for m in MENTION.findall(content))]
        assert user in self.users, f"unknown user {user}: add_member first"
        message = self._message(channel, self.users[user], content)
        message.update(attachments=list(attachments), embeds=list(embeds))
        if reply_to is not None:
            replied = self.messages[reply_to]
            message.update(type=19, referenced_message=replied)
            message["message_reference"] = {"type": 0, "message_id": str(reply_to), "channel_id": str(channel),
                                            "guild_id": str(guild)}  # fmt: skip
            mentioned.append(int(replied["author"]["id"]))  # a reply pings its author by default
        message["mentions"] = [self._mention(guild, u) for u in dict.fromkeys(mentioned) if u in self.users]
        message["mention_roles"] = ROLE_MENTION.findall(content)
        message["mention_everyone"] = "@everyone" in content or "@here" in content
        self.messages[int(message["id"])] = message
        await self._echo("MESSAGE_CREATE", message)
        return message

    # --- looking at what the bot did ---

    def rate_limit_next(self, path_substring: str, retry_after: float = 0.2) -> None:
        """The next request whose path contains this gets one 429 (not global) telling it to wait retry_after s."""
        self._rate_limits.append((path_substring, retry_after))

    def responses_of(self, interaction: dict[str, Any] | int) -> list[dict[str, Any]]:
        """The interaction's callbacks ({"type", "data"}), in order; the fake refuses a second one."""
        return list(self._record(interaction).responses)

    def original(self, interaction: dict[str, Any] | int) -> dict[str, Any] | None:
        """The interaction's @original message as it stands now (None before a response or after a delete)."""
        original_id = self._record(interaction).original_id
        return self.messages.get(original_id) if original_id is not None else None

    def made_by(self, interaction: dict[str, Any] | int) -> list[dict[str, Any]]:
        """Every live message the interaction's token created (its @original and follow-ups), oldest first."""
        interaction_id = int(self._record(interaction).payload["id"])
        return [m for m in self.messages.values() if m.get("interaction_id") == interaction_id]

    def versions(self, message: dict[str, Any] | int) -> list[dict[str, Any]]:
        """Every state a bot message had (as created, then after each edit), deleted or not: short-lived ones too."""
        return list(self._versions.get(int(message["id"] if isinstance(message, dict) else message), []))

    def messages_in(self, channel_id: int) -> list[dict[str, Any]]:
        """Every live message in a channel (ephemeral ones too: their flags say 64), oldest first."""
        return [m for m in self.messages.values() if int(m["channel_id"]) == channel_id]

    async def wait_for(self, predicate: Callable[[Call], bool], timeout: float = 10.0) -> Call:
        """The first recorded call that matches, waiting up to `timeout` seconds for it."""
        return await self.wait_until(lambda: next((c for c in self.calls if predicate(c)), None), timeout)

    async def wait_until(self, condition: Callable[[], T | None], timeout: float = 10.0) -> T:
        """Poll `condition` until it returns something truthy, and return that; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                seen = [(c.method, c.path, c.status) for c in self.calls[-12:]]
                raise AssertionError(f"condition not met within {timeout} s; last calls: {seen}")
            await asyncio.sleep(0.02)

    # --- the gateway ---

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        if self._ws is not None and not self._ws.closed:
            await self._ws.close(code=4000)
        self._ws, self._live, self.connections = ws, False, self.connections + 1
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41_250}, "s": None, "t": None}))
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:  # discord.py sends text JSON (it only receives zlib)
                continue
            message = json.loads(frame.data)
            op, data = message.get("op"), message.get("d")
            if op == 1:
                await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
            elif op == 2:
                await self._identified(ws, data)
            elif op == 6:
                await self._resumed(ws, data)
            elif op == 8:
                await self._chunk(ws, data)
        if self._ws is ws:
            self._ws, self._live = None, False
        return ws

    async def _identified(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.identify = data
        if data.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            self._ready.set()
            return
        if data.get("intents", 0) & MESSAGE_CONTENT and not self.message_content_intent_allowed:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            self._ready.set()
            return
        self._session_id, self._seq, self._events, self._live = secrets.token_hex(16), 0, [], True
        ready = {
            "v": 10, "user": self.bot_user, "session_id": self._session_id, "session_type": "normal",
            "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway-resume/", "shard": [0, 1],
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
            "application": {"id": str(self.application_id), "flags": 1 << 19},  # the Message Content intent flag
            "private_channels": [], "relationships": [], "presences": [], "guild_join_requests": [],
        }  # fmt: skip
        await self.dispatch("READY", ready)
        for guild_id in self.guilds:
            await self.dispatch("GUILD_CREATE", self._guild_create(guild_id, data.get("intents", 0)))
        self._ready.set()

    async def _resumed(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        if data.get("session_id") != self._session_id or data.get("token") != self.token:
            await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
            return
        self.resumes += 1
        for event in [e for e in self._events if e["s"] > (data.get("seq") or 0)]:
            await ws.send_str(json.dumps(event))
        self._live = True
        await self.dispatch("RESUMED", {})

    async def _chunk(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        guild = int(data["guild_id"])
        wanted = {int(u) for u in data.get("user_ids") or []}
        members = [self._member(guild, u) for u in self._members[guild] if not wanted or u in wanted]
        chunk = {"guild_id": str(guild), "members": members, "chunk_index": 0, "chunk_count": 1}
        await self.dispatch("GUILD_MEMBERS_CHUNK", {**chunk, **({"nonce": data["nonce"]} if "nonce" in data else {})})

    def _guild_create(self, guild_id: int, intents: int) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        # without the Guild Members intent Discord sends only the bot's own member
        listed = self._members[guild_id] if intents & GUILD_MEMBERS else [BOT_ID]
        return {
            "id": str(guild_id), "name": guild["name"], "owner_id": str(guild["owner_id"]), "icon": None,
            "splash": None, "discovery_splash": None, "banner": None, "description": None, "afk_channel_id": None,
            "afk_timeout": 300, "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0, "premium_tier": 0,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None,
            "preferred_locale": "en-US", "features": [], "emojis": [], "stickers": [], "threads": [],
            "voice_states": [], "presences": [], "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": [], "large": False, "unavailable": False, "joined_at": _now_iso(),
            "member_count": len(self._members[guild_id]), "roles": list(self._roles[guild_id].values()),
            "channels": [c for c in self.channels.values() if c.get("guild_id") == str(guild_id)],
            "members": [self._member(guild_id, u) for u in listed],
        }  # fmt: skip

    # --- REST ---

    async def _api(self, request: web.Request) -> web.StreamResponse:
        body, uploads = await self._read(request)
        path = "/" + request.match_info["tail"]
        call = Call(request.method, path, body, {name: data for _, name, data in uploads}, time.monotonic(),
                    dict(request.query))  # fmt: skip
        self.calls.append(call)
        try:
            response = self._rate_limited(path) or await self._route(request, path, body, uploads)
        except (ValueError, KeyError, TypeError) as error:  # a malformed request: a 500 would make discord.py retry
            response = _error(400, 50035, f"Invalid Form Body ({error!r})")
        call.status = response.status
        return response

    async def _read(self, request: web.Request) -> tuple[Any, list[tuple[int, str, bytes]]]:
        """The JSON body (or payload_json) and the uploads as (index of files[n], filename, bytes)."""
        uploads: list[tuple[int, str, bytes]] = []
        if request.content_type == "multipart/form-data":
            body: Any = None
            reader = await request.multipart()
            async for part in reader:
                data = await part.read()  # type: ignore[union-attr]
                if part.name == "payload_json":
                    body = json.loads(data)
                else:
                    index = int(re.sub(r"\D", "", part.name or "") or len(uploads))
                    uploads.append((index, part.filename or part.name or "", bytes(data)))  # type: ignore[union-attr]
            return body, uploads
        raw = await request.read()
        return (json.loads(raw) if raw else None), uploads

    def _rate_limited(self, path: str) -> web.Response | None:
        hit = next((r for r in self._rate_limits if r[0] in path), None)
        if hit is None:
            return None
        self._rate_limits.remove(hit)
        retry_after = hit[1]
        headers = {
            "Retry-After": str(max(1, round(retry_after))), "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": str(retry_after), "X-RateLimit-Scope": "user",
            "Via": "1.1 google",  # discord.py takes a 429 without Via for a Cloudflare ban and gives up
        }  # fmt: skip
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        return _json(body, 429, headers)

    async def _route(
        self, request: web.Request, path: str, body: Any, uploads: list[tuple[int, str, bytes]]
    ) -> web.Response:  # fmt: skip
        method, parts = request.method, path.strip("/").split("/")
        authorized = parts[0] not in ("users", "oauth2", "gateway", "applications", "channels")  # token-less routes
        if not authorized and request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, 0, "401: Unauthorized")
        match parts:
            case ["users", "@me"] if method == "GET":
                return _json(self.bot_user)
            case ["oauth2", "applications", "@me"] if method == "GET":
                return _json(self._application())
            case ["gateway"] if method == "GET":
                return _json({"url": self.gateway_url.rstrip("/")})
            case ["gateway", "bot"] if method == "GET":
                limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
                return _json({"url": self.gateway_url.rstrip("/"), "shards": 1, "session_start_limit": limit})
            case ["applications", app, "commands"] if app == str(self.application_id):
                return self._sync(None, method, body)
            case ["applications", app, "guilds", guild, "commands"] if app == str(self.application_id):
                return self._sync(int(guild), method, body)
            case ["interactions", interaction_id, token, "callback"] if method == "POST":
                return await self._callback(int(interaction_id), token, body, uploads, request.query)
            case ["webhooks", app, token, *rest] if app == str(self.application_id):
                return await self._webhook(method, token, rest, body, uploads, request.query)
            case ["channels", channel] if method == "GET" and int(channel) in self.channels:
                return _json(self.channels[int(channel)])
            case ["channels", channel, "typing"] if method == "POST":
                return web.Response(status=204)
            case ["channels", channel, "messages"] if method == "POST":
                return await self._channel_post(int(channel), body, uploads)
            case ["channels", channel, "messages", message_id]:
                return await self._channel_message(method, int(channel), int(message_id), body, uploads)
        return _error(404, 0, "404: Not Found")

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id), "name": BOT_NAME, "description": "", "icon": None, "bot_public": True,
            "bot_require_code_grant": False, "owner": self._user(ADMIN, "admin"), "verify_key": "0" * 64,
            "flags": 1 << 19, "team": None, "summary": "", "bot": self.bot_user, "tags": [],
            "interactions_endpoint_url": None, "redirect_uris": [], "approximate_guild_count": len(self.guilds),
        }  # fmt: skip

    def _sync(self, guild: int | None, method: str, body: Any) -> web.Response:
        if method == "GET":
            return _json(self._commands.get(guild, []))
        if method != "PUT":
            return _error(405, 0, "405: Method Not Allowed")
        known = {(c["name"], c.get("type", 1)): c["id"] for c in self._commands.get(guild, [])}
        synced = []
        for command in body:
            kind = command.get("type", 1)
            synced.append({
                "description": "", "options": [], "default_member_permissions": None, "nsfw": False,
                "contexts": None, "integration_types": [0], **command, "type": kind, "version": str(self._snowflake()),
                "id": known.get((command["name"], kind)) or str(self._snowflake()),
                "application_id": str(self.application_id), **({"guild_id": str(guild)} if guild else {}),
            })  # fmt: skip
        for command in synced:  # Discord answers permission bits as a string, whatever the request sent
            bits = command["default_member_permissions"]
            command["default_member_permissions"] = None if bits is None else str(bits)
        self._commands[guild] = synced
        return _json(synced)

    # --- interactions ---

    async def _callback(
        self, interaction_id: int, token: str, body: dict[str, Any], uploads: list[tuple[int, str, bytes]],
        query: Any,
    ) -> web.Response:  # fmt: skip
        record = self.interactions.get(interaction_id)
        if record is None or record.payload["token"] != token or self._age(record) > self.callback_window_s:
            return _error(404, 10062, "Unknown interaction")
        if record.responses:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        kind, data = body["type"], body.get("data") or {}
        component = record.payload["type"] in (MESSAGE_COMPONENT, MODAL_SUBMIT) and "message" in record.payload
        if kind in (6, 7) and not component:
            return _error(400, 50035, "Invalid Form Body (this interaction has no message to update)")
        channel = int(record.payload["channel_id"])
        message: dict[str, Any] | None = None
        if kind == 4:
            if (too_big := self._too_big(uploads)) is not None:
                return too_big
            message = self._bot_message(channel, data, uploads, record)
        elif kind == 5:
            message = self._bot_message(channel, {"flags": LOADING | (data.get("flags", 0) & EPHEMERAL)}, [], record)
        elif kind in (6, 7):
            message = self.messages[int(record.payload["message"]["id"])]
            if kind == 7:
                if (too_big := self._too_big(uploads)) is not None:
                    return too_big
                self._edit(message, data, uploads)
        elif kind == 9:
            record.modal = data
        record.responses.append(body)
        if message is not None:
            record.original_id = int(message["id"])
            await self._echo("MESSAGE_CREATE" if kind in (4, 5) else "MESSAGE_UPDATE", message)
        if query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        # discord.py 2.7 always asks ?with_response=1 and builds an InteractionCallbackResponse from this
        ephemeral = bool(message is not None and message["flags"] & EPHEMERAL)
        answer: dict[str, Any] = {"interaction": {
            "id": str(interaction_id), "type": record.payload["type"], "response_message_loading": kind == 5,
            "response_message_ephemeral": ephemeral, **({"response_message_id": message["id"]} if message else {}),
        }}  # fmt: skip
        if message is not None and kind != 6:
            answer["resource"] = {"type": kind, "message": message}
        return _json(answer)

    async def _webhook(
        self, method: str, token: str, rest: list[str], body: Any, uploads: list[tuple[int, str, bytes]], query: Any
    ) -> web.Response:  # fmt: skip
        record = self.interactions.get(self._tokens.get(token, 0))
        if record is None or self._age(record) > self.token_lifetime_s:
            return _error(401, 50027, "Invalid Webhook Token")
        if not rest and method == "POST":  # a follow-up
            if not record.responses:
                return _error(404, 10015, "Unknown Webhook")
            if (too_big := self._too_big(uploads)) is not None:
                return too_big
            message = self._bot_message(int(record.payload["channel_id"]), body, uploads, record)
            await self._echo("MESSAGE_CREATE", message)
            return _json(message) if query.get("wait", "").lower() in ("1", "true") else web.Response(status=204)
        if len(rest) != 2 or rest[0] != "messages":
            return _error(404, 0, "404: Not Found")
        message_id = record.original_id if rest[1] == "@original" else int(rest[1])
        message = self.messages.get(message_id) if message_id is not None else None
        mine = message is not None and (
            message.get("interaction_id") == int(record.payload["id"]) or message_id == record.original_id
        )
        if message is None or not mine:
            return _error(404, 10008, "Unknown Message")
        if method == "GET":
            return _json(message)
        if method == "DELETE":
            return await self._delete(message)
        if method == "PATCH":
            if (too_big := self._too_big(uploads)) is not None:
                return too_big
            self._edit(message, body, uploads)
            await self._echo("MESSAGE_UPDATE", message)
            return _json(message)
        return _error(405, 0, "405: Method Not Allowed")

    def _record(self, interaction: dict[str, Any] | int) -> _Interaction:
        interaction_id = int(interaction["id"] if isinstance(interaction, dict) else interaction)
        return self.interactions[interaction_id]

    def _age(self, record: _Interaction) -> float:
        return time.time() - record.created

    def _command_data(
        self, name: str, kind: int, guild: int | None, options: list[dict[str, Any]] | None,
        attachments: list[dict[str, Any]] | None, subcommand: str | None,
    ) -> dict[str, Any]:  # fmt: skip
        """An application command's interaction data, checked against what the bot synced."""
        scope = guild if any(c["name"] == name and c["type"] == kind for c in self._commands.get(guild, [])) else None
        command = next((c for c in self._commands.get(scope, []) if c["name"] == name and c["type"] == kind), None)
        if command is None:
            synced = {g: [c["name"] for c in cs] for g, cs in self._commands.items()}
            raise AssertionError(f"command {name!r} (type {kind}) was never synced; synced: {synced}")
        schema, path = command, (subcommand or "").split()
        for step in path:
            schema = next(o for o in schema.get("options", []) if o["name"] == step)
        declared = {o["name"]: o for o in schema.get("options", [])}
        filled = [{"type": declared[o["name"]]["type"], **o} if o["name"] in declared else o for o in options or []]
        free = [
            o["name"] for o in declared.values() if o["type"] == 11 and o["name"] not in {f["name"] for f in filled}
        ]
        for attachment, option in zip(attachments or [], free, strict=False):
            filled.append({"name": option, "type": 11, "value": str(attachment["id"])})
        resolved = self._resolved(guild, filled, attachments or [])
        for depth, step in reversed(list(enumerate(path))):
            filled = [{"name": step, "type": 2 if depth < len(path) - 1 else 1, "options": filled}]
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": kind}
        if kind == 1:
            data.update(options=filled, resolved=resolved)
        return {**data, **({"guild_id": str(scope)} if scope else {})}

    def _resolved(self, guild: int | None, options: list[dict[str, Any]], attachments: list[dict[str, Any]]) -> dict:
        resolved: dict[str, dict[str, Any]] = {"attachments": {str(a["id"]): a for a in attachments}}
        for option in options:
            if option.get("type") == 6:
                user = int(option["value"])
                resolved.setdefault("users", {})[str(user)] = self.users[user]
                if guild is not None and user in self._members[guild]:
                    member = {k: v for k, v in self._member(guild, user).items() if k != "user"}
                    resolved.setdefault("members", {})[str(user)] = {
                        **member,
                        "permissions": str(self._perms(guild, user)),
                    }
            elif option.get("type") == 8 and guild is not None:
                resolved.setdefault("roles", {})[str(option["value"])] = self._roles[guild][int(option["value"])]
        return resolved

    async def _interact(
        self, kind: int, data: dict[str, Any], user: int, channel: int, *, message: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        created = (created_at or datetime.now(timezone.utc)).timestamp()
        interaction_id, token = self._snowflake(created), f"itok.{secrets.token_urlsafe(24)}"
        guild = self._guild_of(channel)
        payload: dict[str, Any] = {
            "id": str(interaction_id), "application_id": str(self.application_id), "type": kind, "data": data,
            "token": token, "version": 1, "channel_id": str(channel), "channel": self.channels[channel],
            "locale": "en-US", "entitlements": [], "attachment_size_limit": self.attachment_size_limit,
            "authorizing_integration_owners": {"0": str(guild)} if guild else {"1": str(user)},
            "context": 0 if guild else 1,
        }  # fmt: skip
        if guild is not None:
            payload.update(guild_id=str(guild), guild_locale="en-US", app_permissions=str(self._perms(guild, BOT_ID)))
            payload["guild"] = {"id": str(guild), "locale": "en-US", "features": []}
            payload["member"] = {**self._member(guild, user), "permissions": str(self._perms(guild, user))}
        else:
            payload.update(user=self.users[user], app_permissions=str(EVERYONE_PERMISSIONS))
        if message is not None:
            payload["message"] = message
        self.interactions[interaction_id] = _Interaction(payload, created)
        self._tokens[token] = interaction_id
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    # --- channel messages ---

    async def _channel_post(
        self, channel: int, body: dict[str, Any], uploads: list[tuple[int, str, bytes]]
    ) -> web.Response:
        if channel not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        if channel in self.read_only:
            return _error(403, 50013, "Missing Permissions")
        reference = body.get("message_reference")
        if (
            reference
            and int(reference["message_id"]) not in self.messages
            and reference.get("fail_if_not_exists", True)
        ):
            return _error(400, 50035, "Invalid Form Body (message_reference: Unknown message)")
        if (too_big := self._too_big(uploads)) is not None:
            return too_big
        message = self._bot_message(channel, body, uploads, None)
        await self._echo("MESSAGE_CREATE", message)
        return _json(message)

    async def _channel_message(
        self, method: str, channel: int, message_id: int, body: Any, uploads: list[tuple[int, str, bytes]]
    ) -> web.Response:  # fmt: skip
        message = self.messages.get(message_id)
        if message is None or int(message["channel_id"]) != channel or message["flags"] & EPHEMERAL:
            return _error(404, 10008, "Unknown Message")
        if method == "GET":
            return _json(message)
        if method == "DELETE":
            return await self._delete(message)
        if method == "PATCH":
            if int(message["author"]["id"]) != BOT_ID:
                return _error(403, 50005, "Cannot edit a message authored by another user")
            if (too_big := self._too_big(uploads)) is not None:
                return too_big
            self._edit(message, body, uploads)
            await self._echo("MESSAGE_UPDATE", message)
            return _json(message)
        return _error(405, 0, "405: Method Not Allowed")

    async def _delete(self, message: dict[str, Any]) -> web.Response:
        del self.messages[int(message["id"])]
        if not message["flags"] & EPHEMERAL:
            deleted = {"id": message["id"], "channel_id": message["channel_id"], "guild_id": message.get("guild_id")}
            await self._echo("MESSAGE_DELETE", deleted)
        return web.Response(status=204)

    def _too_big(self, uploads: list[tuple[int, str, bytes]]) -> web.Response | None:
        if sum(len(data) for _, _, data in uploads) > self.upload_limit:
            return _error(413, 40005, "Request entity too large")
        return None

    def _bot_message(
        self, channel: int, body: dict[str, Any], uploads: list[tuple[int, str, bytes]], record: _Interaction | None
    ) -> dict[str, Any]:  # fmt: skip
        """A message the bot made: through the channel, or an interaction's response or follow-up."""
        message = self._message(channel, self.bot_user, "")
        if record is not None:
            payload = record.payload
            invoker = payload.get("member", {}).get("user") or payload.get("user")
            command = payload["type"] == APPLICATION_COMMAND
            metadata = {"id": payload["id"], "type": payload["type"], "user": invoker,
                        "authorizing_integration_owners": payload["authorizing_integration_owners"]}  # fmt: skip
            message.update(
                type=(23 if payload["data"].get("type") == 3 else 20) if command else 0, interaction_metadata=metadata,
                webhook_id=str(self.application_id), application_id=str(self.application_id),
                interaction_id=int(payload["id"]),
            )  # fmt: skip
        reference = body.get("message_reference")
        if reference and int(reference["message_id"]) in self.messages:
            message.update(type=19, referenced_message=self.messages[int(reference["message_id"])])
            message["message_reference"] = {"type": 0, "channel_id": str(channel), **reference,
                                            "message_id": str(reference["message_id"])}  # fmt: skip
        message["flags"] = body.get("flags") or 0
        self._edit(message, {"attachments": [], **body}, uploads, creating=True)
        self.messages[int(message["id"])] = message
        return message

    def _edit(
        self, message: dict[str, Any], body: dict[str, Any], uploads: list[tuple[int, str, bytes]], *,
        creating: bool = False,
    ) -> None:  # fmt: skip
        """Apply a create or edit body: the fields it names replace the message's."""
        for key in ("content", "embeds", "components", "allowed_mentions", "tts", "poll"):
            if key in body:
                message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "attachments" in body or uploads:
            by_index = {index: (name, data) for index, name, data in uploads}
            kept = {a["id"]: a for a in message["attachments"]}
            listed = body.get("attachments")
            if listed is None:
                listed = [{"id": index} for index in by_index]
            attachments = []
            for item in listed:
                if str(item["id"]) in kept and int(item["id"]) not in by_index:
                    attachments.append(kept[str(item["id"])])
                elif int(item["id"]) in by_index:
                    name, data = by_index[int(item["id"])]
                    filename = item.get("filename") or name
                    stored = self._store_file(data, filename, self._guess_type(filename), int(message["channel_id"]))
                    attachments.append(
                        {**stored, **({"description": item["description"]} if "description" in item else {})}
                    )
            message["attachments"] = attachments
        if not creating:
            message["flags"] &= ~LOADING  # the first edit of a deferred response ends "is thinking..."
            if "flags" in body:  # an edit may only change SUPPRESS_EMBEDS
                message["flags"] = message["flags"] & ~SUPPRESS_EMBEDS | (body["flags"] or 0) & SUPPRESS_EMBEDS
            message["edited_timestamp"] = _now_iso()
        pings = self._pings(message.get("content") or "", message.get("allowed_mentions"), message)
        message.update(pings)
        self._versions.setdefault(int(message["id"]), []).append(dict(message))

    def _pings(self, content: str, allowed: dict[str, Any] | None, message: dict[str, Any]) -> dict[str, Any]:
        """Who the message really notifies, as Discord applies allowed_mentions (absent: everyone it names)."""
        users, roles = [int(u) for u in MENTION.findall(content)], ROLE_MENTION.findall(content)
        everyone = "@everyone" in content or "@here" in content
        if allowed is not None:
            parse = allowed.get("parse", [])
            users = [u for u in users if "users" in parse or str(u) in map(str, allowed.get("users", []))]
            roles = [r for r in roles if "roles" in parse or r in map(str, allowed.get("roles", []))]
            everyone = everyone and "everyone" in parse
        replied = message.get("referenced_message")
        if replied and (allowed is None or allowed.get("replied_user")):
            users.append(int(replied["author"]["id"]))
        mentions = [self.users[u] for u in dict.fromkeys(users) if u in self.users]
        return {"mentions": mentions, "mention_roles": roles, "mention_everyone": everyone}

    def _message(self, channel: int, author: dict[str, Any], content: str) -> dict[str, Any]:
        guild = self._guild_of(channel)
        return {
            "id": str(self._snowflake()), "channel_id": str(channel), "author": author, "content": content,
            "timestamp": _now_iso(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [], "mention_roles": [], "attachments": [], "embeds": [], "components": [], "pinned": False,
            "type": 0, "flags": 0, **({"guild_id": str(guild)} if guild else {}),
        }  # fmt: skip

    async def _echo(self, event: str, message: dict[str, Any]) -> None:
        """A message event, if the bot's intents let it see it, with content as Discord shows it."""
        intents = (self.identify or {}).get("intents", 0)
        if message.get("flags", 0) & EPHEMERAL or not intents & (
            GUILD_MESSAGES if message.get("guild_id") else DIRECT_MESSAGES
        ):
            return
        if event == "MESSAGE_DELETE":
            await self.dispatch(event, message)
            return
        seen = self._as_seen(message, intents)
        guild = message.get("guild_id")
        if guild and int(message["author"]["id"]) in self._members.get(int(guild), {}):
            seen["member"] = {
                k: v for k, v in self._member(int(guild), int(message["author"]["id"])).items() if k != "user"
            }
        await self.dispatch(event, seen)

    def _as_seen(self, message: dict[str, Any], intents: int) -> dict[str, Any]:
        """Without the Message Content intent the bot gets no content, unless it is the author, named or in a DM."""
        seen = {k: v for k, v in message.items() if k not in ("allowed_mentions", "interaction_id")}
        if message.get("referenced_message"):
            seen["referenced_message"] = self._as_seen(message["referenced_message"], intents)
        visible = (
            intents & MESSAGE_CONTENT or not message.get("guild_id") or int(message["author"]["id"]) == BOT_ID
            or any(int(u["id"]) == BOT_ID for u in message.get("mentions", []))
        )  # fmt: skip
        if not visible:
            seen.update(content="", embeds=[], attachments=[], components=[])
        return seen

    # --- the CDN ---

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.calls.append(Call("GET", path, None, {}, time.monotonic(), dict(request.query)))
        stored = self._files.get(int(request.match_info["id"]))
        if stored is None or stored[0] != request.match_info["filename"]:
            self.calls[-1].status = 404
            return web.Response(status=404, text="Not Found")
        self.calls[-1].status = 200
        return web.Response(body=stored[2], headers={"Content-Type": stored[1]})

    def _store_file(self, data: bytes, filename: str, content_type: str, channel: int) -> dict[str, Any]:
        attachment_id = self._snowflake()
        self._files[attachment_id] = (filename, content_type, data)
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
    def _guess_type(filename: str) -> str:
        return mimetypes.guess_type(filename)[0] or "application/octet-stream"

    # --- model helpers ---

    def _snowflake(self, at: float | None = None) -> int:
        """An id whose timestamp is `at` (now by default), as discord.utils.snowflake_time reads it."""
        ms = int((time.time() if at is None else at) * 1000)
        return ((ms - DISCORD_EPOCH_MS) << 22) | (next(self._increment) & 0x3FFFFF)

    @staticmethod
    def _user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
        return {
            "id": str(user_id), "username": name, "global_name": name, "discriminator": "0", "avatar": None,
            "bot": bot, "system": False, "public_flags": 0, "flags": 0, "banner": None, "accent_color": None,
        }  # fmt: skip

    def _member(self, guild: int, user: int) -> dict[str, Any]:
        known = self._members[guild][user]
        return {
            "user": self.users[user], "roles": [str(r) for r in known["roles"]], "joined_at": known["joined_at"],
            "nick": None, "avatar": None, "banner": None, "premium_since": None, "deaf": False, "mute": False,
            "pending": False, "flags": 0, "communication_disabled_until": None,
        }  # fmt: skip

    def _mention(self, guild: int | None, user: int) -> dict[str, Any]:
        if guild is None or user not in self._members[guild]:
            return self.users[user]
        member = {k: v for k, v in self._member(guild, user).items() if k != "user"}
        return {**self.users[user], "member": member}

    def _perms(self, guild: int, user: int) -> int:
        """A member's guild permissions: @everyone and their roles; everything for the owner or an administrator."""
        if self.guilds[guild]["owner_id"] == user:
            return ALL_PERMISSIONS
        bits = int(self._roles[guild][guild]["permissions"])
        for role in self._members[guild][user]["roles"]:
            bits |= int(self._roles[guild][role]["permissions"])
        return ALL_PERMISSIONS if bits & ADMINISTRATOR else bits

    def _guild_of(self, channel: int) -> int | None:
        guild = self.channels[channel].get("guild_id") if channel in self.channels else None
        return int(guild) if guild else None
