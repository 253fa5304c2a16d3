"""The Telegram adapter: python-telegram-bot handlers around bot.core and the engine."""
