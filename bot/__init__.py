"""The chat bots: what both platforms share (bot.core) and one thin adapter per platform."""
