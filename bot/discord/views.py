"""The buttons under a result: 🔁 Again, ⚡ More motion, 📝 Prompt, 🗑 Delete (under a remix: 🔁 and 🗑), and 🌐 Share
when the engine lets its requester share it (🌐 Shared, disabled, once shared).

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
    "share": discord.ButtonStyle.success,
    "shared": discord.ButtonStyle.success,
}
TEMPLATE = re.compile(r"mim:(?P<action>again|more|prompt|del|share|shared):(?P<job>[A-Za-z0-9_-]{1,64})")
LABELS = dict((*messages.RESULT_BUTTONS, messages.SHARE_BUTTON, messages.SHARED_BUTTON))
SHARE_ROW = 1  # 🌐 on a row of its own, below the others


class ButtonHandler(Protocol):
    """The client that answers result buttons."""

    async def on_result_button(self, interaction: discord.Interaction, action: str, job_id: str) -> None:
        """Answer one press."""


class ResultButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """One result button; `mim:<action>:<job id>` fits Discord's 100-character custom_id."""

    def __init__(self, action: str, job_id: str) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=LABELS[action], style=STYLES[action], custom_id=f"mim:{action}:{job_id}",
            disabled=action == "shared", row=SHARE_ROW if action in ("share", "shared") else None,
        )  # fmt: skip
        super().__init__(button)
        self.action, self.job_id = action, job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ResultButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await cast(ButtonHandler, interaction.client).on_result_button(interaction, self.action, self.job_id)


def result_view(job_id: str, kind: str = "animate", *, share: bool = False) -> discord.ui.View:
    """The buttons of a result (four, or a remix's two, then 🌐 Share if `share`), persistent (no timeout)."""
    view = discord.ui.View(timeout=None)
    for action, _ in messages.REMIX_BUTTONS if kind == "remix" else messages.RESULT_BUTTONS:
        view.add_item(ResultButton(action, job_id))
    if share:
        view.add_item(ResultButton(messages.SHARE_BUTTON[0], job_id))
    return view


def shared_view(message: discord.Message | None, job_id: str) -> discord.ui.View | None:
    """The message's result buttons with 🌐 Share turned into a disabled 🌐 Shared; None if it has no Share button."""
    found = [
        match for row in (message.components if message is not None else [])
        for item in getattr(row, "children", ())
        if (match := TEMPLATE.fullmatch(getattr(item, "custom_id", None) or "")) and match["job"] == job_id
    ]  # fmt: skip
    actions = [match["action"] for match in found]
    if "share" not in actions:
        return None
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(ResultButton("shared" if action == "share" else action, job_id))
    return view
