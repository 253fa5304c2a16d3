"""FakeDiscord: serves the world's REST API, gateway and CDN on loopback, and is the test's handle on all of it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, TypeVar

from aiohttp import web

from tests.fakes.discord.cdn import Cdn
from tests.fakes.discord.constants import (
    ALICE,
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    CHANNEL,
    MENTION,
    MESSAGE_COMPONENT,
    MIB,
    MODAL_SUBMIT,
    ROLE_MENTION,
    WAIT_S,
)
from tests.fakes.discord.gateway import Gateway
from tests.fakes.discord.interactions import command_data, new_interaction
from tests.fakes.discord.rest import Rest
from tests.fakes.discord.state import Call, Interaction, World

T = TypeVar("T")


class _Delegated(Generic[T]):
    """An attribute of FakeDiscord that lives on one of its parts (read and written there)."""

    def __init__(self, part: str) -> None:
        self.part = part

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, fake: Any, owner: type | None = None) -> T:
        return getattr(getattr(fake, self.part), self.name)

    def __set__(self, fake: Any, value: T) -> None:
        setattr(getattr(fake, self.part), self.name, value)


class FakeDiscord:
    """Discord's REST API, gateway, interaction webhooks and CDN for one bot, on a free loopback port."""

    token: _Delegated[str] = _Delegated("world")
    application_id: _Delegated[int] = _Delegated("world")
    bot_user: _Delegated[dict[str, Any]] = _Delegated("world")
    port: _Delegated[int] = _Delegated("world")
    attachment_size_limit: _Delegated[int] = _Delegated("world")  # what interactions announce
    calls: _Delegated[list[Call]] = _Delegated("world")
    messages: _Delegated[dict[int, dict[str, Any]]] = _Delegated("world")
    interactions: _Delegated[dict[int, Interaction]] = _Delegated("world")
    guilds: _Delegated[dict[int, dict[str, Any]]] = _Delegated("world")
    channels: _Delegated[dict[int, dict[str, Any]]] = _Delegated("world")
    users: _Delegated[dict[int, dict[str, Any]]] = _Delegated("world")
    read_only: _Delegated[set[int]] = _Delegated("world")  # channels where the bot's posts get 403 50013
    message_content_intent_allowed: _Delegated[bool] = _Delegated("gateway")
    identify: _Delegated[dict[str, Any] | None] = _Delegated("gateway")  # the last IDENTIFY's "d"
    connections: _Delegated[int] = _Delegated("gateway")
    resumes: _Delegated[int] = _Delegated("gateway")
    token_lifetime_s: _Delegated[float] = _Delegated("rest")  # an interaction token's life (Discord: 15 minutes)
    callback_window_s: _Delegated[float] = _Delegated("rest")  # time to send the first interaction callback
    upload_limit: _Delegated[int] = _Delegated("rest")  # per message, as Discord checks a bot's upload

    def __init__(self, token: str, *, message_content_intent_allowed: bool = True) -> None:
        self.world = World(token)
        self.gateway = Gateway(self.world, message_content_intent_allowed=message_content_intent_allowed)
        self.rest = Rest(self.world, self.gateway)
        self.cdn = Cdn(self.world)
        self._runner: web.AppRunner | None = None

    # --- serving ---

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application(client_max_size=200 * MIB)
        app.router.add_route("*", "/api/v10/{tail:.*}", self.rest.handle)
        app.router.add_get("/cdn/attachments/{channel}/{id}/{filename}", self.cdn.handle)
        app.router.add_get("/gateway{tail:.*}", self.gateway.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.world.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close the gateway and stop listening."""
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base_url(self) -> str:
        """discord.py's Route.BASE."""
        return self.world.api_base_url

    @property
    def gateway_url(self) -> str:
        """discord.py's DiscordWebSocket.DEFAULT_GATEWAY (and what GET /gateway/bot answers)."""
        return self.world.gateway_url

    @property
    def sequence(self) -> int:
        """The "s" of the last gateway event sent in this session (or waiting in it for a RESUME)."""
        return self.gateway.sequence

    @property
    def cdn_base_url(self) -> str:
        """Where attachments are served."""
        return self.world.cdn_base_url

    # --- the world: guilds, roles, members, channels, attachments ---

    def add_guild(self, guild_id: int, name: str, *, owner_id: int) -> None:
        """A guild with its @everyone role; the bot is a member."""
        self.world.add_guild(guild_id, name, owner_id=owner_id)

    def add_role(self, guild_id: int, role_id: int, name: str, permissions: int) -> None:
        """A role with these permission bits."""
        self.world.add_role(guild_id, role_id, name, permissions)

    def add_member(
        self, guild_id: int, user_id: int, name: str, *, roles: Iterable[int] = (), permissions: int | None = None
    ) -> None:
        """A member; `permissions` gives them a role of their own with exactly these bits."""
        self.world.add_member(guild_id, user_id, name, roles=roles, permissions=permissions)

    def add_channel(self, guild_id: int, channel_id: int, name: str) -> None:
        """A text channel."""
        self.world.add_channel(guild_id, channel_id, name)

    def setup_default(self) -> None:
        """GUILD (owned by nobody here) with CHANNEL, ROLE_MODS (Manage Server) and members ADMIN, ALICE, BOB."""
        self.world.setup_default()

    def add_attachment(self, data: bytes, filename: str, content_type: str | None = None) -> dict[str, Any]:
        """Serve bytes on the CDN; returns the Discord attachment object (width and height for an image)."""
        return self.world.store_file(data, filename, content_type or self.world.guess_type(filename), CHANNEL)

    def attachment_bytes(self, attachment: dict[str, Any] | int) -> bytes:
        """The bytes behind an attachment object or id (uploaded by the bot or added by the test)."""
        attachment_id = int(attachment["id"] if isinstance(attachment, dict) else attachment)
        return self.world.files[attachment_id][2]

    def commands(self, guild: int | None = None) -> list[dict[str, Any]]:
        """The commands last synced to a guild, or globally."""
        return list(self.world.synced.get(guild, []))

    # --- driving the bot ---

    async def wait_ready(self, timeout: float = WAIT_S) -> dict[str, Any]:
        """Wait until the bot identified and got READY and its guilds (or was refused); returns the IDENTIFY."""
        return await self.gateway.wait_ready(timeout)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway event; while the socket is down it waits in the session for a RESUME."""
        await self.gateway.dispatch(event, data)

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close the bot's gateway socket as Discord does on trouble; discord.py reconnects and RESUMEs."""
        await self.gateway.drop(code)

    async def slash(
        self, name: str, *, user: int = ALICE, channel: int = CHANNEL, guild: int | None = None,
        options: list[dict[str, Any]] | None = None, attachments: list[dict[str, Any]] | None = None,
        subcommand: str | None = None, created_at: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A user runs /name (subcommand "sub" or "group sub"); attachments fill its attachment options in order.

        Returns the INTERACTION_CREATE payload (its "id" and "token" identify it).
        """
        assert guild in (None, self.world.guild_of(channel)), f"channel {channel} is not in guild {guild}"
        data = command_data(self.world, name, 1, self.world.guild_of(channel), options, attachments, subcommand)
        return await self._interact(APPLICATION_COMMAND, data, user, channel, created_at=created_at)

    async def autocomplete(
        self, name: str, *, focused: str, value: str, user: int = ALICE, channel: int = CHANNEL,
        options: list[dict[str, Any]] | None = None, subcommand: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A user types `value` into option `focused` of /name; the answer is a type-8 callback."""
        typed = [*(options or []), {"name": focused, "value": value, "focused": True}]
        data = command_data(self.world, name, 1, self.world.guild_of(channel), typed, None, subcommand)
        return await self._interact(AUTOCOMPLETE, data, user, channel)

    async def context_menu(
        self, name: str, *, target_message: dict[str, Any], user: int = ALICE, channel: int | None = None,
        guild: int | None = None, created_at: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A user picks Apps → name on a message (content always visible: interactions carry it)."""
        channel = channel or int(target_message["channel_id"])
        assert guild in (None, self.world.guild_of(channel)), f"channel {channel} is not in guild {guild}"
        data = command_data(self.world, name, 3, self.world.guild_of(channel), None, None, None)
        data["target_id"] = str(target_message["id"])
        data["resolved"] = {"messages": {str(target_message["id"]): target_message}}
        return await self._interact(APPLICATION_COMMAND, data, user, channel, created_at=created_at)

    async def click(
        self, message_id: int, custom_id: str, *, user: int = ALICE, values: list[str] | None = None,
        created_at: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A user clicks a button (or picks `values` in a select) on a stored message."""
        message = self.world.messages[int(message_id)]
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
        modal = self.world.record(opened_by).modal
        assert modal is not None, "the bot opened no modal for that interaction"

        def filled(component: dict[str, Any]) -> dict[str, Any]:
            if component["type"] == 1:
                return {"type": 1, "components": [filled(c) for c in component["components"]]}
            if component["type"] == 18:
                return {"type": 18, "component": filled(component["component"])}
            return {"type": component["type"], "custom_id": component.get("custom_id"),
                    "value": values.get(component.get("custom_id", ""), "")}  # fmt: skip

        data = {"custom_id": modal["custom_id"], "components": [filled(c) for c in modal["components"]]}
        payload = self.world.record(opened_by).payload
        return await self._interact(
            MODAL_SUBMIT, data, user, int(payload["channel_id"]), message=payload.get("message")
        )

    async def post_message(
        self, channel: int, user: int, content: str, *, attachments: Iterable[dict[str, Any]] = (),
        embeds: Iterable[dict[str, Any]] = (), reply_to: int | None = None, mentions: Iterable[int] = (),
    ) -> dict[str, Any]:  # fmt: skip
        """A user posts in a channel: stored, and MESSAGE_CREATE as the bot's intents let it see it. Returns it."""
        world = self.world
        guild = world.guild_of(channel)
        mentioned = [*mentions, *(int(m) for m in MENTION.findall(content))]
        assert user in world.users, f"unknown user {user}: add_member first"
        message = world.new_message(channel, world.users[user], content)
        message.update(attachments=list(attachments), embeds=list(embeds))
        if reply_to is not None:
            replied = world.messages[reply_to]
            message.update(type=19, referenced_message=replied)
            message["message_reference"] = {"type": 0, "message_id": str(reply_to), "channel_id": str(channel),
                                            "guild_id": str(guild)}  # fmt: skip
            mentioned.append(int(replied["author"]["id"]))  # a reply pings its author by default
        message["mentions"] = [world.mention(guild, u) for u in dict.fromkeys(mentioned) if u in world.users]
        message["mention_roles"] = ROLE_MENTION.findall(content)
        message["mention_everyone"] = "@everyone" in content or "@here" in content
        world.messages[int(message["id"])] = message
        await self.gateway.echo("MESSAGE_CREATE", message)
        return message

    async def _interact(
        self, kind: int, data: dict[str, Any], user: int, channel: int, *, message: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        payload = new_interaction(self.world, kind, data, user, channel, message=message, created_at=created_at)
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return payload

    # --- looking at what the bot did ---

    def rate_limit_next(self, path_substring: str, retry_after: float = 0.2) -> None:
        """The next request whose path contains this gets one 429 (not global) telling it to wait retry_after s."""
        self.rest.rate_limit_next(path_substring, retry_after)

    def responses_of(self, interaction: dict[str, Any] | int) -> list[dict[str, Any]]:
        """The interaction's callbacks ({"type", "data"}), in order; the fake refuses a second one."""
        return list(self.world.record(interaction).responses)

    def original(self, interaction: dict[str, Any] | int) -> dict[str, Any] | None:
        """The interaction's @original message as it stands now (None before a response or after a delete)."""
        original_id = self.world.record(interaction).original_id
        return self.world.messages.get(original_id) if original_id is not None else None

    def token_age(self, interaction: dict[str, Any] | int) -> float:
        """Seconds since the interaction was created: its token dies when this passes token_lifetime_s."""
        return self.world.record(interaction).age()

    def made_by(self, interaction: dict[str, Any] | int) -> list[dict[str, Any]]:
        """Every live message the interaction's token created (its @original and follow-ups), oldest first."""
        interaction_id = int(self.world.record(interaction).payload["id"])
        return [m for m in self.world.messages.values() if m.get("interaction_id") == interaction_id]

    def versions(self, message: dict[str, Any] | int) -> list[dict[str, Any]]:
        """Every state a bot message had (as created, then after each edit), deleted or not: short-lived ones too."""
        return list(self.world.versions.get(int(message["id"] if isinstance(message, dict) else message), []))

    def messages_in(self, channel_id: int) -> list[dict[str, Any]]:
        """Every live message in a channel (ephemeral ones too: their flags say 64), oldest first."""
        return [m for m in self.world.messages.values() if int(m["channel_id"]) == channel_id]

    async def wait_for(self, predicate: Callable[[Call], bool], timeout: float = WAIT_S) -> Call:
        """The first recorded call that matches, waiting up to `timeout` seconds for it."""
        return await self.wait_until(lambda: next((c for c in self.world.calls if predicate(c)), None), timeout)

    async def wait_until(self, condition: Callable[[], T | None], timeout: float = WAIT_S) -> T:
        """Poll `condition` until it returns something truthy, and return that; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                seen = [(c.method, c.path, c.status) for c in self.world.calls[-12:]]
                raise AssertionError(f"condition not met within {timeout} s; last calls: {seen}")
            await asyncio.sleep(0.02)
