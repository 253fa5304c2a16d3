"""The checkpoint registry: real tiny LoRA files, names that try to escape, files that lie."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.service.checkpoints import CheckpointRegistry, read_header
from tests.service.queue_contract import write_checkpoint


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    folder = tmp_path / "checkpoints"
    write_checkpoint(folder, "anime-v1")
    write_checkpoint(folder, "clay_2.1")
    return folder


def test_lists_the_safetensors_files_with_size_and_time(directory: Path) -> None:
    (directory / "notes.txt").write_text("not a checkpoint")
    (directory / "nested").mkdir()
    write_checkpoint(directory / "nested", "hidden")
    found = CheckpointRegistry(directory).checkpoints()
    assert [c.name for c in found] == ["anime-v1", "clay_2.1"]
    first = found[0]
    assert first.valid and first.tensors == 2 and first.size == (directory / "anime-v1.safetensors").stat().st_size
    assert first.modified.tzinfo is not None and abs(first.modified.timestamp() - os.path.getmtime(first.path)) < 1


def test_a_missing_directory_is_an_empty_registry(tmp_path: Path) -> None:
    registry = CheckpointRegistry(tmp_path / "nowhere")
    assert registry.checkpoints() == []
    with pytest.raises(UserError) as caught:
        registry.resolve("anime-v1")
    assert caught.value.code == "unknown_checkpoint"


def test_resolves_a_bare_name_to_its_file(directory: Path) -> None:
    registry = CheckpointRegistry(directory)
    assert registry.resolve("clay_2.1") == directory / "clay_2.1.safetensors"


@pytest.mark.parametrize(
    "name",
    [
        "../x", "/etc/passwd", "a/b", "a\\b", "x.safetensors/..", "..", ".", "", "a" * 101, "anime-v1/",
        "anime-v1\n", " anime-v1", ".hidden", "-rf", "anime..v1", "ani\u2215me", "anime\uff0fv1",
        "\u0430nime-v1",  # Cyrillic a
        "anime-v1\x00", "C:\\x", "~root", "\u0661\u0662",  # Arabic-Indic digits
    ],
)  # fmt: skip
def test_refuses_anything_but_a_bare_name(directory: Path, name: str) -> None:
    with pytest.raises(UserError) as caught:
        CheckpointRegistry(directory).resolve(name)
    assert caught.value.code == "bad_checkpoint_name" and caught.value.message.endswith(".")


def test_refuses_extension_games(directory: Path) -> None:
    registry = CheckpointRegistry(directory)
    for name in ("anime-v1.safetensors", "anime-v1.SAFETENSORS"):
        with pytest.raises(UserError, match="without .safetensors") as caught:
            registry.resolve(name)
        assert caught.value.code == "bad_checkpoint_name"
    (directory / "weights.bin").write_bytes((directory / "anime-v1.safetensors").read_bytes())
    with pytest.raises(UserError) as caught:
        registry.choose("weights")
    assert caught.value.code == "unknown_checkpoint" and "anime-v1" in caught.value.message


def test_an_unknown_name_lists_the_ones_there_are(directory: Path) -> None:
    with pytest.raises(UserError) as caught:
        CheckpointRegistry(directory).choose("anime-v2")
    assert caught.value.code == "unknown_checkpoint"
    assert caught.value.message == "There is no checkpoint called anime-v2 (available: anime-v1, clay_2.1)."


def test_a_job_start_names_the_missing_checkpoint_without_listing_the_others(directory: Path) -> None:
    with pytest.raises(UserError) as caught:
        CheckpointRegistry(directory).resolve("anime-v2")
    assert caught.value.code == "unknown_checkpoint"
    assert caught.value.message == "The checkpoint anime-v2 is no longer there; ask an admin to choose another."


def test_symlinks_may_not_leave_the_directory(directory: Path, tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "elsewhere", "secret")
    (directory / "escape.safetensors").symlink_to(tmp_path / "elsewhere" / "secret.safetensors")
    (directory / "alias.safetensors").symlink_to(directory / "anime-v1.safetensors")
    registry = CheckpointRegistry(directory)
    assert [c.name for c in registry.checkpoints() if c.valid] == ["alias", "anime-v1", "clay_2.1"]
    escape = registry.get("escape")
    assert escape is not None and escape.problem == "it is a link to a file outside the checkpoint folder"
    for pick in (registry.resolve, registry.choose):
        with pytest.raises(UserError) as caught:
            pick("escape")
        assert caught.value.code == "invalid_checkpoint" and "secret" not in caught.value.message


def framed(header: bytes, data: bytes = b"") -> bytes:
    """A file laid out as safetensors: header length, header, data."""
    return struct.pack("<Q", len(header)) + header + data


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "too short"),
        (b"PK\x03\x04 a zip file, say", "header length"),
        (framed(b"not json!!!!"), "valid JSON"),
        (framed(b"[]"), "JSON object"),
        (framed(b"{}"), "no tensors"),
        (framed(b'{"__metadata__": {"rank": 2}}'), "metadata"),
        (framed(b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'), "outside"),
        (framed(b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}', bytes(16)), "for its shape"),
        (framed(b'{"w": {"dtype": "Q4", "shape": [16], "data_offsets": [0, 16]}}', bytes(16)), "unknown dtype"),
        (framed(b'{"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 16]}}', bytes(16)), "bad shape"),
    ],
)  # fmt: skip
def test_a_corrupt_file_is_listed_invalid_and_cannot_be_chosen(directory: Path, content: bytes, problem: str) -> None:
    (directory / "broken.safetensors").write_bytes(content)
    registry = CheckpointRegistry(directory)
    broken = registry.get("broken")
    assert broken is not None and not broken.valid and problem in (broken.problem or "")
    assert [c.name for c in registry.checkpoints() if c.valid] == ["anime-v1", "clay_2.1"]
    with pytest.raises(UserError) as caught:
        registry.resolve("broken")
    assert caught.value.code == "invalid_checkpoint" and "broken" in caught.value.message


def test_a_truncated_real_file_is_invalid(directory: Path) -> None:
    whole = (directory / "anime-v1.safetensors").read_bytes()
    (directory / "cut.safetensors").write_bytes(whole[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_header(directory / "cut.safetensors")
    assert read_header(directory / "anime-v1.safetensors")[0] == 2


def test_a_file_rewritten_in_place_is_checked_again(directory: Path) -> None:
    registry = CheckpointRegistry(directory)
    path = directory / "anime-v1.safetensors"
    assert registry.get("anime-v1").valid
    path.write_bytes(b"garbage that is long enough")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert not registry.get("anime-v1").valid


def test_a_file_whose_name_cannot_be_typed_is_listed_invalid(directory: Path) -> None:
    whole = (directory / "anime-v1.safetensors").read_bytes()
    for odd in ("has space.safetensors", "double.safetensors.safetensors", "caf\u00e9.safetensors"):
        (directory / odd).write_bytes(whole)
    registry = CheckpointRegistry(directory)
    odd_ones = [c for c in registry.checkpoints() if not c.valid]
    assert sorted(c.name for c in odd_ones) == ["caf\u00e9", "double.safetensors", "has space"]
    assert all("name" in (c.problem or "") for c in odd_ones)
