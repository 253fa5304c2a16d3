"""The fake's fixed world and Discord's numbers: ids, permission bits, intents, message flags, interaction types."""

from __future__ import annotations

import re

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
WAIT_S = 90.0  # how long a wait may take before the test fails: only a guard against a hang, never a speed limit
