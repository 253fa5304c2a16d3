"""Settings: shipped defaults, partial overrides, errors that name the key."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import tomllib

from bot.settings import BotSettings, load_bot_settings
from engine.config import Settings, load_settings, replace
from engine.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_the_file_and_the_settings_types_agree_key_for_key() -> None:
    """Every key of the shipped config.toml is a field of the engine's or the bots' settings, and back."""
    shipped = tomllib.loads((REPO / "config.toml").read_text("utf-8"))

    def keys(table: dict, prefix: str = "") -> set[str]:
        found: set[str] = set()
        for key, value in table.items():
            found |= keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
        return found

    def fields(cls: type, prefix: str = "") -> set[str]:
        found: set[str] = set()
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            nested = dataclasses.is_dataclass(hint)
            found |= fields(hint, f"{prefix}{f.name}.") if nested else {f"{prefix}{f.name}"}
        return found

    bots = fields(BotSettings) - {"engine.url"}  # the bots read the engine's url, which the engine owns
    assert keys(shipped) == fields(Settings) | bots
    assert fields(Settings).isdisjoint(bots)


def test_none_is_spelled_empty_in_the_file_and_none_in_the_settings(tmp_path: Path) -> None:
    assert load_settings().generate.camera is None  # the shipped file says camera = ""
    path = tmp_path / "camera.toml"
    path.write_text('[generate]\ncamera = "orbit"\n')
    assert load_settings(path).generate.camera == "orbit"
    assert replace(load_settings(path), generate={"camera": ""}).generate.camera is None


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "partial.toml"
    path.write_text('[encode]\nsize = 320\nformat = "mp4"\n')
    settings = load_settings(path)
    assert (settings.encode.size, settings.encode.format) == (320, "mp4")
    assert settings.encode.max_bytes == load_settings().encode.max_bytes
    assert settings.generate == load_settings().generate


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[encode]\ncolour = 3\n", "unknown config key 'encode.colour'"),
        ("[telemetry]\nx = 1\n", "unknown config key 'telemetry'"),
        ("[encode]\nsize = 'big'\n", "'encode.size' has the wrong type"),
        ("[encode]\nsize = true\n", "'encode.size' has the wrong type"),
        ("[encode]\nmax_bytes = -4\n", "'encode.max_bytes' must be positive"),
        ("[encode]\nsize = 20\n", "'encode.size' must be between 64 and 1024, not 20"),
        ("[generate]\nwatermark_band = 0.8\n", "'generate.watermark_band' must be between 0 and 0.5"),
        ("[generate]\ncamera = 'spin'\n", "'generate.camera' must be one of 'zoom-in'"),
        ("[discord]\nedit_interval_s = 0\n", None),
        ("[encode]\nformat = 'avi'\n", "'encode.format' must be one of"),
        ("encode = 3\n", "'encode' must be a table"),
        ("[encode\n", "is not valid TOML"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    if message is None:  # a bot's section: the engine leaves it to the bot, which refuses it
        load_settings(path)
        with pytest.raises(ConfigError, match="'discord.edit_interval_s' must be positive"):
            load_bot_settings(path)
        return
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.toml")


def test_settings_are_frozen_and_replace_validates() -> None:
    settings = load_settings()
    with pytest.raises(AttributeError):
        settings.encode.size = 1  # type: ignore[misc]
    assert replace(settings, encode={"size": 256}).encode.size == 256
    with pytest.raises(ConfigError, match="generate.motion"):
        replace(settings, generate={"motion": "wild"})
