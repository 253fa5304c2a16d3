"""A plain discord.py client with a few commands, to prove the fake of Discord with (no project bot code)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route
from PIL import Image

from tests.fakes import discord as fd

TOKEN = "fake-discord-token"
NONE = discord.AllowedMentions.none()
HANG_S = 600.0  # a whole scenario: only a guard against a hang, larger than any one wait in it


def png(width: int = 40, height: int = 30) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


class Buttons(discord.ui.View):
    """A persistent view: one namespaced button that rewrites its message."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id="probe:again:job1")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[Buttons]) -> None:
        await interaction.response.edit_message(content=f"again by {interaction.user.id}", view=self)


class Why(discord.ui.Modal, title="Why?"):
    """A one-field modal."""

    why: discord.ui.TextInput[Why] = discord.ui.TextInput(label="Why", custom_id="why")

    def __init__(self, target: discord.abc.User) -> None:
        super().__init__()
        self.target = target

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"banned {self.target.id} for {self.why.value}", allowed_mentions=NONE)


class Probe(discord.Client):
    """A plain client with a few commands that record what they saw in `seen`."""

    def __init__(self, *, intents: discord.Intents | None = None, **options: Any) -> None:
        options.setdefault("chunk_guilds_at_startup", False)
        # discord.py waits this long after the last GUILD_CREATE before `ready` (2 s by default)
        super().__init__(intents=intents or discord.Intents.default(), guild_ready_timeout=0.05, **options)
        self.tree = app_commands.CommandTree(self)
        self.seen: dict[str, Any] = {}
        self.messages: list[discord.Message] = []
        self.resumed = asyncio.Event()
        self._commands()

    def _commands(self) -> None:
        @self.tree.command(name="animate", description="Animate an image")
        async def animate(interaction: discord.Interaction, image: discord.Attachment, prompt: str = "") -> None:
            deferred = await interaction.response.defer(thinking=True)
            self.seen["deferred"] = deferred
            await interaction.edit_original_response(content="Queued", allowed_mentions=NONE)
            data = await image.read()
            self.seen["image"] = (data, interaction.filesize_limit, interaction.user.id, prompt)
            out = discord.File(io.BytesIO(data[::-1]), "out.gif")
            sent = await interaction.followup.send(
                f"done <@{fd.ALICE}> @everyone", file=out, allowed_mentions=NONE, view=Buttons(), wait=True
            )
            self.seen["followup"] = sent

        @self.tree.command(name="slow", description="Answer late")
        async def slow(interaction: discord.Interaction, wait: float = 0.0) -> None:
            try:
                await interaction.response.defer()
                await asyncio.sleep(wait)
                await interaction.edit_original_response(content="late")
            except discord.HTTPException as error:
                self.seen["slow"] = error

        @self.tree.command(name="ping", description="Pong")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("pong", ephemeral=True)

        lora = app_commands.Group(
            name="lora", description="LoRA checkpoints", default_permissions=discord.Permissions(manage_guild=True)
        )

        @lora.command(name="use", description="Use one")
        async def lora_use(interaction: discord.Interaction, name: str) -> None:
            assert isinstance(interaction.user, discord.Member)
            self.seen["lora"] = (name, interaction.user.guild_permissions.manage_guild)
            await interaction.response.send_message(f"using {name}")

        @lora_use.autocomplete("name")
        async def names(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=n, value=n) for n in ("pixel", "clay") if n.startswith(current)]

        self.tree.add_command(lora)

        @self.tree.command(name="ban", description="Ban someone")
        async def ban(interaction: discord.Interaction, user: discord.Member) -> None:
            await interaction.response.send_modal(Why(user))

        @self.tree.context_menu(name="Animate meme")
        async def animate_message(interaction: discord.Interaction, message: discord.Message) -> None:
            data = await message.attachments[0].read()
            await interaction.response.send_message(f"{len(data)} bytes from {message.id}", ephemeral=True)

    async def setup_hook(self) -> None:
        self.add_view(Buttons())
        guild = discord.Object(fd.GUILD)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)

    async def on_message(self, message: discord.Message) -> None:
        self.messages.append(message)
        if message.author != self.user and self.user in message.mentions:
            await message.reply("on it", mention_author=False, allowed_mentions=NONE)

    async def on_resumed(self) -> None:
        self.resumed.set()


@contextlib.asynccontextmanager
async def running(client: discord.Client, timeout: float = fd.WAIT_S) -> AsyncIterator[discord.Client]:
    """The client started and ready inside the block; what stopped it is raised if it never got ready."""
    task = asyncio.create_task(client.start(TOKEN))
    ready = asyncio.create_task(client.wait_until_ready())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        assert ready in done, f"the client wasn't ready within {timeout} s"
        yield client
    finally:
        ready.cancel()
        await client.close()
        with contextlib.suppress(asyncio.CancelledError, discord.DiscordException):
            await asyncio.wait_for(task, timeout=fd.WAIT_S)


def run(
    scenario: Callable[[fd.FakeDiscord, Probe], Awaitable[None]], *, client: Callable[[], Probe] = Probe,
    **fake_options: Any,
) -> None:  # fmt: skip
    """A fresh fake with the default guild, discord.py pointed at it, and a ready client around `scenario`."""

    async def main() -> None:
        fake = fd.FakeDiscord(TOKEN, **fake_options)
        await fake.start()
        fake.setup_default()
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = fake.api_base_url, yarl.URL(fake.gateway_url)
        try:
            async with running(client()) as probe:
                assert isinstance(probe, Probe)
                await scenario(fake, probe)
        finally:
            await fake.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=HANG_S))


def calls_to(fake: fd.FakeDiscord, method: str, fragment: str) -> list[fd.Call]:
    return [c for c in fake.calls if c.method == method and fragment in c.path]
