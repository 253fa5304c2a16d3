"""bot.core.pending: the jobs-in-flight file survives a restart, a corrupt file and a crash mid-write."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from bot.core.pending import PendingJobs

INFO = {"chat_id": -100123, "reply_to": 5, "status_message": 6, "requester": "Zoë", "options": {"seed": 1}}


def test_round_trip_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "pending.json"
    store = PendingJobs(path)
    store.add("a" * 32, INFO)
    store.add("b" * 32, {"chat_id": 1})
    store.update("b" * 32, status_message=9)
    store.remove("a" * 32)
    store.remove("never-added")
    again = PendingJobs(path)
    assert again.all() == {"b" * 32: {"chat_id": 1, "status_message": 9}}
    assert "b" * 32 in again and len(again) == 1 and again.get("a" * 32) is None
    again.add("a" * 32, INFO)
    assert PendingJobs(path).get("a" * 32) == INFO


def test_returned_dicts_are_copies(tmp_path: Path) -> None:
    store = PendingJobs(tmp_path / "p.json")
    store.add("j", {"chat_id": 1})
    store.all()["j"]["chat_id"] = 2
    assert store.get("j") == {"chat_id": 1}


@pytest.mark.parametrize("content", ["{not json", "[]", '{"jobs": 3}', '{"jobs": {"x": 1}}', ""])
def test_a_corrupt_file_starts_empty_with_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pending.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="bot.core.pending"):
        store = PendingJobs(path)
    assert store.all() == {} and "unreadable" in caplog.text
    store.add("j", {"chat_id": 1})
    assert json.loads(path.read_text())["jobs"] == {"j": {"chat_id": 1}}


def test_non_json_info_is_refused_before_anything_changes(tmp_path: Path) -> None:
    store = PendingJobs(tmp_path / "p.json")
    store.add("j", {"chat_id": 1})
    with pytest.raises(TypeError):
        store.add("k", {"when": object()})
    assert PendingJobs(tmp_path / "p.json").all() == {"j": {"chat_id": 1}}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pending.json"
    store = PendingJobs(path)
    store.add("j", {"chat_id": 1})
    before = path.read_bytes()
    replaced: list[tuple[str, str]] = []

    def crash(src: str, dst: str) -> None:
        replaced.append((src, dst))
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.add("k", {"chat_id": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pending.json"]
    src, dst = replaced[0]
    assert Path(src).parent == tmp_path and Path(dst) == path  # written beside the file, then renamed over it
