"""The fake's REST API under /api/v10: users, the application, command sync, interaction callbacks and webhooks,
channel messages, rate limits and Discord's errors."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from aiohttp import web

from tests.fakes.discord.constants import (
    ADMIN,
    BOT_ID,
    BOT_NAME,
    EPHEMERAL,
    LOADING,
    MESSAGE_COMPONENT,
    MIB,
    MODAL_SUBMIT,
)
from tests.fakes.discord.gateway import Gateway
from tests.fakes.discord.messages import Uploads, bot_message, edit
from tests.fakes.discord.state import Call, World


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # exactly "application/json": discord.py parses a body as JSON only then (aiohttp would add "; charset=utf-8")
    return web.Response(
        body=json.dumps(body).encode(), status=status, headers={"Content-Type": "application/json", **(headers or {})}
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"code": code, "message": message}, status)


class Rest:
    """Answers the bot's HTTP requests from the world, records each as a Call and sends the events they cause."""

    def __init__(self, world: World, gateway: Gateway) -> None:
        self.world = world
        self.gateway = gateway
        self.token_lifetime_s = 900.0  # an interaction token's life (Discord: 15 minutes)
        self.callback_window_s = 3.0  # time to send the first interaction callback
        self.upload_limit = 10 * MIB  # per message, as Discord checks a bot's upload without boosts
        self._rate_limits: list[tuple[str, float]] = []

    def rate_limit_next(self, path_substring: str, retry_after: float) -> None:
        """The next request whose path contains this gets one 429 (not global) telling it to wait retry_after s."""
        self._rate_limits.append((path_substring, retry_after))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Any request under /api/v10."""
        body, uploads = await self._read(request)
        path = "/" + request.match_info["tail"]
        call = Call(request.method, path, body, {name: data for _, name, data in uploads}, time.monotonic(),
                    dict(request.query))  # fmt: skip
        self.world.calls.append(call)
        try:
            response = self._rate_limited(path) or await self._route(request, path, body, uploads)
        except (ValueError, KeyError, TypeError) as error:  # a malformed request: a 500 would make discord.py retry
            response = _error(400, 50035, f"Invalid Form Body ({error!r})")
        call.status = response.status
        return response

    async def _read(self, request: web.Request) -> tuple[Any, Uploads]:
        """The JSON body (or payload_json) and the uploads as (index of files[n], filename, bytes)."""
        uploads: Uploads = []
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

    async def _route(self, request: web.Request, path: str, body: Any, uploads: Uploads) -> web.Response:
        method, parts = request.method, path.strip("/").split("/")
        world, app_id = self.world, str(self.world.application_id)
        authorized = parts[0] not in ("users", "oauth2", "gateway", "applications", "channels")  # token-less routes
        if not authorized and request.headers.get("Authorization") != f"Bot {world.token}":
            return _error(401, 0, "401: Unauthorized")
        match parts:
            case ["users", "@me"] if method == "GET":
                return _json(world.bot_user)
            case ["oauth2", "applications", "@me"] if method == "GET":
                return _json(self._application())
            case ["gateway"] if method == "GET":
                return _json({"url": world.gateway_url.rstrip("/")})
            case ["gateway", "bot"] if method == "GET":
                limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
                return _json({"url": world.gateway_url.rstrip("/"), "shards": 1, "session_start_limit": limit})
            case ["applications", app, "commands"] if app == app_id:
                return self._sync(None, method, body)
            case ["applications", app, "guilds", guild, "commands"] if app == app_id:
                return self._sync(int(guild), method, body)
            case ["interactions", interaction_id, token, "callback"] if method == "POST":
                return await self._callback(int(interaction_id), token, body, uploads, request.query)
            case ["webhooks", app, token, *rest] if app == app_id:
                return await self._webhook(method, token, rest, body, uploads, request.query)
            case ["channels", channel] if method == "GET" and int(channel) in world.channels:
                return _json(world.channels[int(channel)])
            case ["channels", channel, "typing"] if method == "POST":
                return web.Response(status=204)
            case ["channels", channel, "messages"] if method == "POST":
                return await self._channel_post(int(channel), body, uploads)
            case ["channels", channel, "messages"] if method == "GET":
                return self._history(int(channel), request.query)
            case ["channels", channel, "messages", message_id]:
                return await self._channel_message(method, int(channel), int(message_id), body, uploads)
        return _error(404, 0, "404: Not Found")

    def _application(self) -> dict[str, Any]:
        world = self.world
        return {
            "id": str(world.application_id), "name": BOT_NAME, "description": "", "icon": None, "bot_public": True,
            "bot_require_code_grant": False, "owner": world.user(ADMIN, "admin"), "verify_key": "0" * 64,
            "flags": 1 << 19, "team": None, "summary": "", "bot": world.bot_user, "tags": [],
            "interactions_endpoint_url": None, "redirect_uris": [], "approximate_guild_count": len(world.guilds),
        }  # fmt: skip

    def _sync(self, guild: int | None, method: str, body: Any) -> web.Response:
        world = self.world
        if method == "GET":
            return _json(world.synced.get(guild, []))
        if method != "PUT":
            return _error(405, 0, "405: Method Not Allowed")
        known = {(c["name"], c.get("type", 1)): c["id"] for c in world.synced.get(guild, [])}
        synced = []
        for command in body:
            kind = command.get("type", 1)
            synced.append({
                "description": "", "options": [], "default_member_permissions": None, "nsfw": False,
                "contexts": None, "integration_types": [0], **command, "type": kind, "version": str(world.snowflake()),
                "id": known.get((command["name"], kind)) or str(world.snowflake()),
                "application_id": str(world.application_id), **({"guild_id": str(guild)} if guild else {}),
            })  # fmt: skip
        for command in synced:  # Discord answers permission bits as a string, whatever the request sent
            bits = command["default_member_permissions"]
            command["default_member_permissions"] = None if bits is None else str(bits)
        world.synced[guild] = synced
        return _json(synced)

    # --- interaction callbacks and webhooks ---

    async def _callback(
        self, interaction_id: int, token: str, body: dict[str, Any], uploads: Uploads, query: Any
    ) -> web.Response:
        world = self.world
        record = world.interactions.get(interaction_id)
        if record is None or record.payload["token"] != token or record.age() > self.callback_window_s:
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
            message = bot_message(world, channel, data, uploads, record)
        elif kind == 5:
            message = bot_message(world, channel, {"flags": LOADING | (data.get("flags", 0) & EPHEMERAL)}, [], record)
        elif kind in (6, 7):
            message = world.messages[int(record.payload["message"]["id"])]
            if kind == 7:
                if (too_big := self._too_big(uploads)) is not None:
                    return too_big
                edit(world, message, data, uploads)
        elif kind == 9:
            record.modal = data
        record.responses.append(body)
        if message is not None:
            record.original_id = int(message["id"])
            await self.gateway.echo("MESSAGE_CREATE" if kind in (4, 5) else "MESSAGE_UPDATE", message)
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
        self, method: str, token: str, rest: list[str], body: Any, uploads: Uploads, query: Any
    ) -> web.Response:
        world = self.world
        record = world.interactions.get(world.tokens.get(token, 0))
        if record is None or record.age() > self.token_lifetime_s:
            return _error(401, 50027, "Invalid Webhook Token")
        if not rest and method == "POST":  # a follow-up
            if not record.responses:
                return _error(404, 10015, "Unknown Webhook")
            if (too_big := self._too_big(uploads)) is not None:
                return too_big
            message = bot_message(world, int(record.payload["channel_id"]), body, uploads, record)
            await self.gateway.echo("MESSAGE_CREATE", message)
            return _json(message) if query.get("wait", "").lower() in ("1", "true") else web.Response(status=204)
        if len(rest) != 2 or rest[0] != "messages":
            return _error(404, 0, "404: Not Found")
        message_id = record.original_id if rest[1] == "@original" else int(rest[1])
        message = world.messages.get(message_id) if message_id is not None else None
        mine = message is not None and (
            message.get("interaction_id") == int(record.payload["id"]) or message_id == record.original_id
        )
        if message is None or not mine:
            return _error(404, 10008, "Unknown Message")
        return await self._message_verb(method, message, body, uploads)

    # --- channel messages ---

    async def _channel_post(self, channel: int, body: dict[str, Any], uploads: Uploads) -> web.Response:
        world = self.world
        if channel not in world.channels:
            return _error(404, 10003, "Unknown Channel")
        if channel in world.read_only:
            return _error(403, 50013, "Missing Permissions")
        reference = body.get("message_reference")
        if (
            reference
            and int(reference["message_id"]) not in world.messages
            and reference.get("fail_if_not_exists", True)
        ):
            return _error(400, 50035, "Invalid Form Body (message_reference: Unknown message)")
        if (too_big := self._too_big(uploads)) is not None:
            return too_big
        message = bot_message(world, channel, body, uploads, None)
        await self.gateway.echo("MESSAGE_CREATE", message)
        return _json(message)

    def _history(self, channel: int, query: Any) -> web.Response:
        """The channel's messages newest first, `limit` of them (at most 100), older than `before` when given."""
        if channel not in self.world.channels:
            return _error(404, 10003, "Unknown Channel")
        before = int(query.get("before") or 0)
        found = [
            m for m in self.world.messages.values()
            if int(m["channel_id"]) == channel and not m["flags"] & EPHEMERAL and (not before or int(m["id"]) < before)
        ]  # fmt: skip
        found.sort(key=lambda m: int(m["id"]), reverse=True)
        return _json(found[: min(int(query.get("limit") or 50), 100)])

    async def _channel_message(
        self, method: str, channel: int, message_id: int, body: Any, uploads: Uploads
    ) -> web.Response:
        message = self.world.messages.get(message_id)
        if message is None or int(message["channel_id"]) != channel or message["flags"] & EPHEMERAL:
            return _error(404, 10008, "Unknown Message")
        if method == "PATCH" and int(message["author"]["id"]) != BOT_ID:
            return _error(403, 50005, "Cannot edit a message authored by another user")
        return await self._message_verb(method, message, body, uploads)

    async def _message_verb(self, method: str, message: dict[str, Any], body: Any, uploads: Uploads) -> web.Response:
        """GET, DELETE or PATCH one message the bot may see (a channel's, or an interaction's own)."""
        if method == "GET":
            return _json(message)
        if method == "DELETE":
            return await self._delete(message)
        if method == "PATCH":
            if (too_big := self._too_big(uploads)) is not None:
                return too_big
            edit(self.world, message, body, uploads)
            await self.gateway.echo("MESSAGE_UPDATE", message)
            return _json(message)
        return _error(405, 0, "405: Method Not Allowed")

    async def _delete(self, message: dict[str, Any]) -> web.Response:
        del self.world.messages[int(message["id"])]
        if not message["flags"] & EPHEMERAL:
            deleted = {"id": message["id"], "channel_id": message["channel_id"], "guild_id": message.get("guild_id")}
            await self.gateway.echo("MESSAGE_DELETE", deleted)
        return web.Response(status=204)

    def _too_big(self, uploads: Uploads) -> web.Response | None:
        if sum(len(data) for _, _, data in uploads) > self.upload_limit:
            return _error(413, 40005, "Request entity too large")
        return None
