"""The fake's gateway websocket: HELLO, IDENTIFY, READY and GUILD_CREATE, heartbeats, RESUME, member chunks, events."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord.constants import (
    BOT_ID,
    DIRECT_MESSAGES,
    EPHEMERAL,
    GUILD_MEMBERS,
    GUILD_MESSAGES,
    MESSAGE_CONTENT,
)
from tests.fakes.discord.state import World, now_iso


class Gateway:
    """One bot's gateway session: it survives a dropped socket, and a RESUME replays what the bot missed."""

    def __init__(self, world: World, *, message_content_intent_allowed: bool = True) -> None:
        self.world = world
        self.message_content_intent_allowed = message_content_intent_allowed
        self.identify: dict[str, Any] | None = None  # the last IDENTIFY's "d"
        self.connections = self.resumes = 0
        self._ws: web.WebSocketResponse | None = None
        self._session_id = ""
        self._live = False  # the current socket identified or resumed: events go out at once
        self._seq = 0
        self._events: list[dict[str, Any]] = []  # this session's dispatches, replayed on RESUME
        self._ready = asyncio.Event()

    @property
    def sequence(self) -> int:
        """The "s" of the last event sent (or waiting for a RESUME) in this session."""
        return self._seq

    async def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Wait until the bot identified and got READY and its guilds (or was refused); returns the IDENTIFY."""
        await asyncio.wait_for(self._ready.wait(), timeout)
        assert self.identify is not None
        return self.identify

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send an event; while the socket is down it waits in the session for a RESUME."""
        self._seq += 1
        payload = {"op": 0, "t": event, "s": self._seq, "d": data}
        self._events.append(payload)
        if self._ws is not None and not self._ws.closed and self._live:
            await self._ws.send_str(json.dumps(payload))

    async def drop(self, code: int) -> None:
        """Close the bot's socket as Discord does on trouble."""
        assert self._ws is not None, "the bot has no gateway connection"
        await self._ws.close(code=code)

    async def close(self) -> None:
        """Close the socket, if any, as the server goes away."""
        if self._ws is not None:
            await self._ws.close(code=1001)

    async def echo(self, event: str, message: dict[str, Any]) -> None:
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
        if guild and int(message["author"]["id"]) in self.world.members.get(int(guild), {}):
            seen["member"] = {
                k: v for k, v in self.world.member(int(guild), int(message["author"]["id"])).items() if k != "user"
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

    # --- the socket ---

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """GET /gateway: one websocket connection, until it closes."""
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
        if data.get("token") != self.world.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            self._ready.set()
            return
        if data.get("intents", 0) & MESSAGE_CONTENT and not self.message_content_intent_allowed:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            self._ready.set()
            return
        self._session_id, self._seq, self._events, self._live = secrets.token_hex(16), 0, [], True
        ready = {
            "v": 10, "user": self.world.bot_user, "session_id": self._session_id, "session_type": "normal",
            "resume_gateway_url": f"ws://127.0.0.1:{self.world.port}/gateway-resume/", "shard": [0, 1],
            "guilds": [{"id": str(g), "unavailable": True} for g in self.world.guilds],
            "application": {"id": str(self.world.application_id), "flags": 1 << 19},  # Message Content intent flag
            "private_channels": [], "relationships": [], "presences": [], "guild_join_requests": [],
        }  # fmt: skip
        await self.dispatch("READY", ready)
        for guild_id in self.world.guilds:
            await self.dispatch("GUILD_CREATE", self._guild_create(guild_id, data.get("intents", 0)))
        self._ready.set()

    async def _resumed(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        if data.get("session_id") != self._session_id or data.get("token") != self.world.token:
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
        members = [self.world.member(guild, u) for u in self.world.members[guild] if not wanted or u in wanted]
        chunk = {"guild_id": str(guild), "members": members, "chunk_index": 0, "chunk_count": 1}
        await self.dispatch("GUILD_MEMBERS_CHUNK", {**chunk, **({"nonce": data["nonce"]} if "nonce" in data else {})})

    def _guild_create(self, guild_id: int, intents: int) -> dict[str, Any]:
        world, guild = self.world, self.world.guilds[guild_id]
        # without the Guild Members intent Discord sends only the bot's own member
        listed = world.members[guild_id] if intents & GUILD_MEMBERS else [BOT_ID]
        return {
            "id": str(guild_id), "name": guild["name"], "owner_id": str(guild["owner_id"]), "icon": None,
            "splash": None, "discovery_splash": None, "banner": None, "description": None, "afk_channel_id": None,
            "afk_timeout": 300, "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0, "premium_tier": 0,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None,
            "preferred_locale": "en-US", "features": [], "emojis": [], "stickers": [], "threads": [],
            "voice_states": [], "presences": [], "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": [], "large": False, "unavailable": False, "joined_at": now_iso(),
            "member_count": len(world.members[guild_id]), "roles": list(world.roles[guild_id].values()),
            "channels": [c for c in world.channels.values() if c.get("guild_id") == str(guild_id)],
            "members": [world.member(guild_id, u) for u in listed],
        }  # fmt: skip
