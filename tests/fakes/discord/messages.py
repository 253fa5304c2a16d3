"""The bot's messages as Discord makes them: created, edited, their uploads stored, who they ping, every version."""

from __future__ import annotations

from typing import Any

from tests.fakes.discord.constants import APPLICATION_COMMAND, LOADING, MENTION, ROLE_MENTION, SUPPRESS_EMBEDS
from tests.fakes.discord.state import Interaction, World, now_iso

Uploads = list[tuple[int, str, bytes]]  # (index of files[n], filename, bytes)


def bot_message(
    world: World, channel: int, body: dict[str, Any], uploads: Uploads, record: Interaction | None
) -> dict[str, Any]:
    """A message the bot made: through the channel, or an interaction's response or follow-up. Stored."""
    message = world.new_message(channel, world.bot_user, "")
    if record is not None:
        payload = record.payload
        invoker = payload.get("member", {}).get("user") or payload.get("user")
        command = payload["type"] == APPLICATION_COMMAND
        metadata = {"id": payload["id"], "type": payload["type"], "user": invoker,
                    "authorizing_integration_owners": payload["authorizing_integration_owners"]}  # fmt: skip
        message.update(
            type=(23 if payload["data"].get("type") == 3 else 20) if command else 0, interaction_metadata=metadata,
            webhook_id=str(world.application_id), application_id=str(world.application_id),
            interaction_id=int(payload["id"]),
        )  # fmt: skip
    reference = body.get("message_reference")
    if reference and int(reference["message_id"]) in world.messages:
        message.update(type=19, referenced_message=world.messages[int(reference["message_id"])])
        message["message_reference"] = {"type": 0, "channel_id": str(channel), **reference,
                                        "message_id": str(reference["message_id"])}  # fmt: skip
    message["flags"] = body.get("flags") or 0
    edit(world, message, {"attachments": [], **body}, uploads, creating=True)
    world.messages[int(message["id"])] = message
    return message


def edit(
    world: World, message: dict[str, Any], body: dict[str, Any], uploads: Uploads, *, creating: bool = False
) -> None:
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
                stored = world.store_file(data, filename, world.guess_type(filename), int(message["channel_id"]))
                attachments.append(
                    {**stored, **({"description": item["description"]} if "description" in item else {})}
                )
        message["attachments"] = attachments
    if not creating:
        message["flags"] &= ~LOADING  # the first edit of a deferred response ends "is thinking..."
        if "flags" in body:  # an edit may only change SUPPRESS_EMBEDS
            message["flags"] = message["flags"] & ~SUPPRESS_EMBEDS | (body["flags"] or 0) & SUPPRESS_EMBEDS
        message["edited_timestamp"] = now_iso()
    message.update(pings(world, message.get("content") or "", message.get("allowed_mentions"), message))
    world.versions.setdefault(int(message["id"]), []).append(dict(message))


def pings(world: World, content: str, allowed: dict[str, Any] | None, message: dict[str, Any]) -> dict[str, Any]:
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
    mentions = [world.users[u] for u in dict.fromkeys(users) if u in world.users]
    return {"mentions": mentions, "mention_roles": roles, "mention_everyone": everyone}
