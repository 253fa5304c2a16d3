"""The buttons under a result: 🔁 Again, ⚡ More motion, 📝 Prompt, 🗑 Delete (under a remix: 🔁 and 🗑).

Each is a DynamicItem whose custom_id, `mim:<action>:<job id>`, carries all it needs, so buttons on results
sent before a restart keep working: discord.py matches the id against the template, not a live View. What a
press does is the client's `on_result_button` (commands.on_button), so this module needs nothing that sends.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, cast

import discord

from bot.core import messages

STYLES = {
    "again": discord.ButtonStyle.primary,
    "more": discord.ButtonStyle.primary,
    "prompt": discord.ButtonStyle.secondary,
    "del": discord.ButtonStyle.danger,
}
TEMPLATE = re.compile(r"mim:(?P<action>again|more|prompt|del):(?P<job>[A-Za-z0-9_-]{1,64})")


class ButtonHandler(Protocol):
    """The client that answers result buttons."""

    async def on_result_button(self, interaction: discord.Interaction, action: str, job_id: str) -> None:
        """Answer one press."""


class ResultButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """One result button; `mim:<action>:<job id>` fits Discord's 100-character custom_id."""

    def __init__(self, action: str, job_id: str) -> None:
        label = dict(messages.RESULT_BUTTONS)[action]
        super().__init__(discord.ui.Button(label=label, style=STYLES[action], custom_id=f"mim:{action}:{job_id}"))
        self.action, self.job_id = action, job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ResultButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await cast(ButtonHandler, interaction.client).on_result_button(interaction, self.action, self.job_id)


def result_view(job_id: str, kind: str = "animate") -> discord.ui.View:
    """The buttons of a result (four, or a remix's two), persistent (no timeout)."""
    view = discord.ui.View(timeout=None)
    for action, _ in messages.REMIX_BUTTONS if kind == "remix" else messages.RESULT_BUTTONS:
        view.add_item(ResultButton(action, job_id))
    return view
