"""The bots' errors: a bad command, an engine that said no, an engine that can't be reached."""

from __future__ import annotations


class BotError(Exception):
    """Base of the bots' own errors; `message` is a sentence a chat user can read as-is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class OptionError(BotError):
    """A command's options are not valid; the message names the option and the allowed values."""


class EngineError(BotError):
    """The engine answered with an error: its HTTP status, machine code and user-readable sentence."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after

    def __repr__(self) -> str:
        return f"EngineError({self.status}, {self.code!r}, {self.message!r}, retry_after={self.retry_after!r})"


class EngineUnavailable(BotError):
    """The engine could not be reached (refused, timed out or 5xx after a few tries); the job may be fine."""
