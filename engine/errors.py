"""The engine's one small error hierarchy."""

from __future__ import annotations


class MakeItMoveError(Exception):
    """Base class for every error the engine raises on purpose."""


class UserError(MakeItMoveError):
    """A problem with the user's input; its message is a sentence a chat user can read as-is."""

    def __init__(self, message: str, *, code: str = "bad_input") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ConfigError(MakeItMoveError):
    """The configuration is invalid; the message names the key."""


class ScriptWriterError(MakeItMoveError):
    """A script writer (the LLM) gave no usable script; the message is a short reason ("timeout", "HTTP 500")."""
