"""Settings: shipped defaults, partial overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from engine.config import load_settings, replace
from engine.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_repo_config() -> None:
    shipped = tomllib.loads((REPO / "config.toml").read_text("utf-8"))
    settings = load_settings()
    assert settings.encode.max_bytes == shipped["encode"]["max_bytes"] == 10 * 1024 * 1024
    assert settings.generate.frames == shipped["generate"]["frames"]
    assert settings.intake.formats == tuple(shipped["intake"]["formats"])


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
        ("[encode]\nsize = -4\n", "'encode.size' must be positive"),
        ("[encode]\nformat = 'avi'\n", "'encode.format' must be one of"),
        ("encode = 3\n", "'encode' must be a table"),
        ("[encode\n", "is not valid TOML"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
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
