"""The container files, linted where no Docker engine runs: compose.yaml, Dockerfile, config and README agree.

Each compose command is parsed by the real CLI parser, each extra the Dockerfile installs exists in
pyproject.toml, each build target exists, and the mounted config loads and selects the scale-out queue.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import tomllib

from engine.cli import build_parser
from engine.config import load_settings

REPO = Path(__file__).resolve().parents[1]
yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def test_every_service_runs_a_real_cli_command(compose: dict[str, Any]) -> None:
    parser = build_parser()
    commands = {name: service["command"] for name, service in compose["services"].items() if "command" in service}
    assert set(commands) == {"engine", "worker", "telegram", "discord"}
    for name, command in commands.items():
        args = parser.parse_args(command)  # exits (status 2) on anything the CLI does not know
        assert args.handler.__name__.endswith("_command"), name
    handlers = {name: parser.parse_args(command).handler.__name__ for name, command in commands.items()}
    assert handlers == {
        "engine": "serve_command", "worker": "worker_command",
        "telegram": "bot_telegram_command", "discord": "bot_discord_command",
    }  # fmt: skip


def test_the_services_build_targets_the_dockerfile_has(compose: dict[str, Any], dockerfile: str) -> None:
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, flags=re.MULTILINE))
    assert {"engine", "bot", "cpu"} <= stages
    targets = {name: service["build"]["target"] for name, service in compose["services"].items() if "build" in service}
    assert targets == {"engine": "engine", "worker": "engine", "telegram": "bot", "discord": "bot"}
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in compose["services"]["engine"], "the API replica never runs the pipeline: no GPU"


def test_every_extra_the_dockerfile_installs_exists(dockerfile: str) -> None:
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    installed = re.findall(r"pip install[^\n]*'\.\[([a-z0-9_,-]+)\]'", dockerfile)
    assert installed, "the Dockerfile installs no extras"
    named = {extra for group in installed for extra in group.split(",")}
    assert named <= extras, named - extras
    assert {"gpu", "postgres", "telegram", "discord"} <= named
    bot_stage = dockerfile.split("AS bot", 1)[1].split("\nFROM ", 1)[0]
    assert "gpu" not in bot_stage and "torch" not in bot_stage, "the bot image stays slim"


def test_the_mounted_config_selects_procrastinate_on_the_compose_postgres(compose: dict[str, Any]) -> None:
    for anchor in ("x-engine", "x-bot"):
        assert "./deploy/config.toml:/etc/makeitmove/config.toml:ro" in compose[anchor]["volumes"], anchor
    settings = load_settings(REPO / "deploy" / "config.toml")
    assert settings.queue.backend == "procrastinate"
    assert settings.storage.url.startswith("postgresql://") and "@postgres:5432/" in settings.storage.url
    assert ":" not in settings.storage.url.split("//", 1)[1].split("@", 1)[0], "the password comes from PGPASSWORD"
    assert settings.engine.url == "http://engine:8750" and settings.engine.port == 8750
    for name in ("engine", "worker", "telegram", "discord"):
        command = compose["services"][name]["command"]
        assert command[-2:] == ["--config", "/etc/makeitmove/config.toml"], name


def test_the_readme_shows_the_commands_the_files_need() -> None:
    readme = (REPO / "README.md").read_text()
    assert "## Running at scale" in readme
    section = readme.split("## Running at scale", 1)[1].split("\n## ", 1)[0]
    for needed in ("docker compose up", "makeitmove worker", "makeitmove db upgrade", ".env", "POSTGRES_PASSWORD",
                   "backend = \"procrastinate\"", "pip install"):  # fmt: skip
        assert needed in section, needed
