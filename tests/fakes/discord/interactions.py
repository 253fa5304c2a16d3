"""Interactions as Discord builds them when a user acts: command data checked against the synced commands,
resolved users, members, roles and attachments, and the INTERACTION_CREATE payload."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from tests.fakes.discord.constants import BOT_ID, EVERYONE_PERMISSIONS
from tests.fakes.discord.state import Interaction, World


def command_data(
    world: World, name: str, kind: int, guild: int | None, options: list[dict[str, Any]] | None,
    attachments: list[dict[str, Any]] | None, subcommand: str | None,
) -> dict[str, Any]:  # fmt: skip
    """An application command's interaction data, checked against what the bot synced."""
    synced = world.synced
    scope = guild if any(c["name"] == name and c["type"] == kind for c in synced.get(guild, [])) else None
    command = next((c for c in synced.get(scope, []) if c["name"] == name and c["type"] == kind), None)
    if command is None:
        names = {g: [c["name"] for c in cs] for g, cs in synced.items()}
        raise AssertionError(f"command {name!r} (type {kind}) was never synced; synced: {names}")
    schema, path = command, (subcommand or "").split()
    for step in path:
        schema = next(o for o in schema.get("options", []) if o["name"] == step)
    declared = {o["name"]: o for o in schema.get("options", [])}
    filled = [{"type": declared[o["name"]]["type"], **o} if o["name"] in declared else o for o in options or []]
    free = [o["name"] for o in declared.values() if o["type"] == 11 and o["name"] not in {f["name"] for f in filled}]
    for attachment, option in zip(attachments or [], free, strict=False):
        filled.append({"name": option, "type": 11, "value": str(attachment["id"])})
    resolved = _resolved(world, guild, filled, attachments or [])
    for depth, step in reversed(list(enumerate(path))):
        filled = [{"name": step, "type": 2 if depth < len(path) - 1 else 1, "options": filled}]
    data: dict[str, Any] = {"id": command["id"], "name": name, "type": kind}
    if kind == 1:
        data.update(options=filled, resolved=resolved)
    return {**data, **({"guild_id": str(scope)} if scope else {})}


def _resolved(
    world: World, guild: int | None, options: list[dict[str, Any]], attachments: list[dict[str, Any]]
) -> dict:
    resolved: dict[str, dict[str, Any]] = {"attachments": {str(a["id"]): a for a in attachments}}
    for option in options:
        if option.get("type") == 6:
            user = int(option["value"])
            resolved.setdefault("users", {})[str(user)] = world.users[user]
            if guild is not None and user in world.members[guild]:
                member = {k: v for k, v in world.member(guild, user).items() if k != "user"}
                resolved.setdefault("members", {})[str(user)] = {**member, "permissions": str(world.perms(guild, user))}
        elif option.get("type") == 8 and guild is not None:
            resolved.setdefault("roles", {})[str(option["value"])] = world.roles[guild][int(option["value"])]
    return resolved


def new_interaction(
    world: World, kind: int, data: dict[str, Any], user: int, channel: int, *, message: dict[str, Any] | None,
    created_at: datetime | None,
) -> dict[str, Any]:  # fmt: skip
    """Record an interaction by `user` in `channel` (its token now valid); returns its INTERACTION_CREATE payload."""
    created = (created_at or datetime.now(timezone.utc)).timestamp()
    interaction_id, token = world.snowflake(created), f"itok.{secrets.token_urlsafe(24)}"
    guild = world.guild_of(channel)
    payload: dict[str, Any] = {
        "id": str(interaction_id), "application_id": str(world.application_id), "type": kind, "data": data,
        "token": token, "version": 1, "channel_id": str(channel), "channel": world.channels[channel],
        "locale": "en-US", "entitlements": [], "attachment_size_limit": world.attachment_size_limit,
        "authorizing_integration_owners": {"0": str(guild)} if guild else {"1": str(user)},
        "context": 0 if guild else 1,
    }  # fmt: skip
    if guild is not None:
        payload.update(guild_id=str(guild), guild_locale="en-US", app_permissions=str(world.perms(guild, BOT_ID)))
        payload["guild"] = {"id": str(guild), "locale": "en-US", "features": []}
        payload["member"] = {**world.member(guild, user), "permissions": str(world.perms(guild, user))}
    else:
        payload.update(user=world.users[user], app_permissions=str(EVERYONE_PERMISSIONS))
    if message is not None:
        payload["message"] = message
    world.interactions[interaction_id] = Interaction(payload, created)
    world.tokens[token] = interaction_id
    return payload
