"""The Discord bot: discord.py application commands, buttons and the reply trigger over the engine API."""
