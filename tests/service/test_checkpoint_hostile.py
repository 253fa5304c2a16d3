"""Hostile checkpoint files: each is listed invalid and fails only the jobs that use it, with a sentence."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from engine.config import load_settings
from engine.errors import UserError
from engine.pipeline import Pipeline
from engine.service import checkpoints as checkpoints_module
from engine.service.checkpoints import MAX_HEADER_BYTES, CheckpointRegistry
from tests.service.api_world import ADMIN_AUTH, FINAL, assert_error, events, get_json, run, submit
from tests.service.queue_contract import write_checkpoint

GOOD_TENSOR = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


def framed(header: bytes, data: bytes = b"") -> bytes:
    """A file laid out as safetensors: 8-byte little-endian header length, header, data."""
    return struct.pack("<Q", len(header)) + header + data


def tensor(**entry: Any) -> bytes:
    """A header of one tensor `w` (8 bytes of data follow it), with `entry` replacing its fields."""
    return framed(json.dumps({"w": {**GOOD_TENSOR["w"], **entry}}).encode(), bytes(8))


def _write(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def _truncated(path: Path) -> None:
    write_checkpoint(path.parent, "whole")
    whole = path.parent / "whole.safetensors"
    path.write_bytes(whole.read_bytes()[:-10])
    whole.unlink()


def _escaping_link(path: Path) -> None:
    write_checkpoint(path.parent.parent / "elsewhere", "secret")
    path.symlink_to(path.parent.parent / "elsewhere" / "secret.safetensors")


# name -> (how to make the file at `path`, words of the reason it is listed with)
HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "deep-json": (_write(framed(b"[" * 5000 + b"]" * 5000)), "nested too deeply"),
    "deep-object": (_write(framed(b'{"a":' * 40 + b"1" + b"}" * 40)), "nested too deeply"),
    "huge-length": (_write(struct.pack("<Q", 2**64 - 1) + b"{}"), "header length"),
    "over-the-cap": (_write(framed(b" " * (MAX_HEADER_BYTES + 1))), "header length"),
    "longer-than-file": (_write(struct.pack("<Q", 1000) + b'{"w": 1}'), "header length"),
    "too-short": (_write(b"\x01\x00"), "too short"),
    "not-json": (_write(framed(b"not json at all")), "valid JSON"),
    "not-an-object": (_write(framed(b"[1, 2, 3]")), "JSON object"),
    "not-utf8": (_write(framed(b'{"\xff\xfe": 1}')), "UTF-8"),
    # json.loads(bytes) would take UTF-16; safetensors (and so the registry) reads UTF-8 only.
    "utf16": (_write(framed(json.dumps(GOOD_TENSOR).encode("utf-16-le"), bytes(8))), "valid JSON"),
    "dtype-a-list": (_write(tensor(dtype=["F32"])), "unknown dtype"),
    "shape-of-bools": (_write(tensor(shape=[True, True])), "bad shape"),
    "shape-too-big": (_write(tensor(shape=[10**18] * 5000)), "wrong for its shape"),
    "offsets-not-numbers": (_write(tensor(data_offsets=["0", "8"])), "bad data offsets"),
    "offsets-past-the-end": (_write(tensor(data_offsets=[0, 8 * 10**12])), "outside the file"),
    "metadata-not-strings": (_write(framed(b'{"__metadata__": {"rank": [2]}}')), "metadata"),
    "long-key": (_write(framed(json.dumps({"k" * 100_000: 1}).encode())), "has no description"),
    "truncated": (_truncated, "truncated"),
    "a-folder": (lambda path: path.mkdir(), "folder"),
    "a-fifo": (lambda path: os.mkfifo(path), "pipe"),
    "escaping-link": (_escaping_link, "outside the checkpoint folder"),
    "dangling-link": (lambda path: path.symlink_to(path.parent / "nothing.safetensors"), "link to nothing"),
    "link-loop": (lambda path: path.symlink_to(path), "symlink loop"),
}


def plant(directory: Path, names: list[str] | None = None) -> None:
    """A sound checkpoint `good` among the hostile files (all of them, or `names`)."""
    write_checkpoint(directory, "good")
    for name in HOSTILE if names is None else names:
        HOSTILE[name][0](directory / f"{name}.safetensors")


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_file_is_listed_invalid_and_refused_with_a_sentence(tmp_path: Path, name: str) -> None:
    directory = tmp_path / "checkpoints"
    plant(directory, [name])
    registry = CheckpointRegistry(directory)
    listed = {c.name: c for c in registry.checkpoints()}
    assert set(listed) == {"good", name} and listed["good"].valid
    hostile = listed[name]
    assert not hostile.valid and hostile.tensors == 0 and HOSTILE[name][1] in (hostile.problem or "")
    assert len(hostile.problem or "") < 120 and str(tmp_path) not in (hostile.problem or "")
    for pick in (registry.resolve, registry.choose):  # a job start, an admin's activation
        with pytest.raises(UserError) as caught:
            pick(name)
        assert caught.value.code == "invalid_checkpoint" and caught.value.message.endswith(".")
        assert caught.value.message.startswith(f"The checkpoint {name} can't be used: {hostile.problem}")


def test_a_header_of_exactly_the_cap_is_read(tmp_path: Path) -> None:
    header = json.dumps(GOOD_TENSOR).encode()
    (tmp_path / "padded.safetensors").write_bytes(framed(header.ljust(MAX_HEADER_BYTES), bytes(8)))
    assert CheckpointRegistry(tmp_path).resolve("padded") == tmp_path / "padded.safetensors"


def test_a_file_name_that_is_not_utf8_is_listed_as_text(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, "good")
    (tmp_path / os.fsdecode(b"caf\xe9.safetensors")).write_bytes((tmp_path / "good.safetensors").read_bytes())
    odd = [c for c in CheckpointRegistry(tmp_path).checkpoints() if c.name != "good"]
    assert [c.name for c in odd] == ["caf\ufffd"] and "name" in (odd[0].problem or "")
    json.dumps(odd[0].name).encode("utf-8")  # what the API sends: no lone surrogate left to fail on


def test_a_job_start_reads_only_the_active_checkpoints_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plant(tmp_path)
    parsed: list[str] = []
    real_parse = checkpoints_module._parse
    monkeypatch.setattr(checkpoints_module, "_parse", lambda target: parsed.append(target.name) or real_parse(target))
    registry = CheckpointRegistry(tmp_path)
    assert registry.resolve("good") == tmp_path / "good.safetensors"
    assert parsed == ["good.safetensors"]
    with pytest.raises(UserError):
        registry.resolve("deep-json")
    assert parsed == ["good.safetensors", "deep-json.safetensors"]


def test_headers_are_parsed_once_per_file_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plant(tmp_path, ["deep-json", "not-json"])
    parsed: list[str] = []
    real_parse = checkpoints_module._parse
    monkeypatch.setattr(checkpoints_module, "_parse", lambda target: parsed.append(target.name) or real_parse(target))
    registry = CheckpointRegistry(tmp_path)
    first = registry.checkpoints()
    assert registry.checkpoints() == first and sorted(parsed) == sorted(c.path.name for c in first)


def test_a_file_replaced_after_it_was_checked_is_checked_again(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, "style")
    path = tmp_path / "style.safetensors"
    registry = CheckpointRegistry(tmp_path)
    assert registry.resolve("style") == path
    before = path.stat()
    # Same size and modification time, another file renamed over it: only its identity tells them apart.
    replacement = tmp_path / "incoming.tmp"
    replacement.write_bytes(framed(b"[" * 100 + b"]" * 100).ljust(before.st_size, b" "))
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, path)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(UserError) as caught:
        registry.resolve("style")
    assert caught.value.code == "invalid_checkpoint" and "nested too deeply" in caught.value.message


# --- the service: the real app, the local queue and the CPU pipeline at tiny settings -----------------


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    """The real CPU pipeline, built once for this module's apps."""
    return Pipeline(load_settings())


async def put_active(client: TestClient, name: str | None) -> tuple[int, Any]:
    """What `/lora use NAME` and `/lora off` send."""
    async with client.put("/v1/admin/checkpoints/active", json={"name": name}, headers=ADMIN_AUTH) as response:
        return response.status, await response.json()


async def animate(client: TestClient, user: str) -> dict[str, Any]:
    """Submit a small job and follow its events to its end."""
    status, body, _ = await submit(client, user=user)
    assert status == 202, body
    seen = await events(client, body["id"])
    assert seen and seen[-1]["status"] in FINAL, seen
    return seen[-1]


def test_the_listing_answers_with_every_hostile_file_marked(tmp_path: Path, pipeline: Pipeline) -> None:
    plant(tmp_path / "ckpt")

    async def scenario(client: TestClient) -> None:
        status, listing = await get_json(client, "/v1/admin/checkpoints", headers=ADMIN_AUTH)
        assert status == 200, listing
        by_name = {c["name"]: c for c in listing["checkpoints"]}
        assert set(by_name) == {"good", *HOSTILE}
        assert by_name["good"]["valid"] and by_name["good"]["problem"] is None
        for name, (_, words) in HOSTILE.items():
            assert not by_name[name]["valid"] and words in by_name[name]["problem"], by_name[name]
            status, body = await put_active(client, name)
            assert_error(status, body, 400, "invalid_checkpoint")
            assert name in body["message"] and words in body["message"]
        status, listing = await get_json(client, "/v1/admin/checkpoints", headers=ADMIN_AUTH)
        assert status == 200 and listing["active"] is None

    run(tmp_path, pipeline, scenario)


def test_jobs_run_beside_hostile_files_with_no_checkpoint_or_a_sound_one(tmp_path: Path, pipeline: Pipeline) -> None:
    plant(tmp_path / "ckpt")

    async def scenario(client: TestClient) -> None:
        job = await animate(client, "u1")
        assert job["status"] == "done" and job["checkpoint"] is None, job
        status, body = await put_active(client, "good")
        assert status == 200 and body["active"] == "good", body
        job = await animate(client, "u2")
        assert job["status"] == "done" and job["checkpoint"] == "good", job

    run(tmp_path, pipeline, scenario)


@pytest.mark.parametrize("spoil", ["deep-json", "a-fifo", "escaping-link", "deleted"])
def test_a_spoilt_active_checkpoint_fails_its_jobs_with_a_sentence_until_it_is_switched_off(
    tmp_path: Path, pipeline: Pipeline, spoil: str
) -> None:
    directory = tmp_path / "ckpt"
    write_checkpoint(directory, "style")

    async def scenario(client: TestClient) -> None:
        status, body = await put_active(client, "style")
        assert status == 200 and body["active"] == "style", body
        path = directory / "style.safetensors"
        path.unlink()  # spoilt after it was chosen: activation would have refused it
        if spoil != "deleted":
            HOSTILE[spoil][0](path)
        failed = await animate(client, "u1")
        assert failed["status"] == "failed" and failed["checkpoint"] == "style", failed
        error = failed["error"]
        expected = "unknown_checkpoint" if spoil == "deleted" else "invalid_checkpoint"
        assert error["code"] == expected and "style" in error["message"], error
        assert error["message"].endswith("ask an admin to choose another."), error
        if spoil != "deleted":
            assert HOSTILE[spoil][1] in error["message"], error
        status, body = await put_active(client, None)  # /lora off
        assert status == 200 and body["active"] is None, body
        job = await animate(client, "u2")
        assert job["status"] == "done" and job["checkpoint"] is None, job

    run(tmp_path, pipeline, scenario)
