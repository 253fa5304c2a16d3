"""bot.core.pending: typed jobs in flight survive a restart, a corrupt file, a bad entry and a crash mid-write."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from bot.core.options import AnimateRequest
from bot.core.pending import PendingJob, PendingJobs

JOB = PendingJob(
    key="tg:-100123:5", user_id=7, chat_id=-100123, request=AnimateRequest("wave", camera="orbit", seed=1),
    poster="Zoë", image="file-1", filename="meme.png", status_id=6, status_text="Queued — #1", at=1000.0,
    reply_to=5,
)  # fmt: skip


def job(**changes: Any) -> PendingJob:
    return dataclasses.replace(JOB, **changes)


def test_round_trip_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "pending.json"
    store = PendingJobs(path)
    store.add("a" * 32, JOB)
    store.add("b" * 32, job(key="dc:9", source=(3, 4), token="t", app_id=8, token_expires=2000.5))
    changed = store.update("b" * 32, status_id=9, delivered=True)
    store.remove("a" * 32)
    store.remove("never-added")
    again = PendingJobs(path)
    assert again.all() == {"b" * 32: changed} and changed.status_id == 9 and changed.source == (3, 4)
    assert "b" * 32 in again and len(again) == 1 and again.get("a" * 32) is None
    again.add("a" * 32, JOB)
    assert PendingJobs(path).get("a" * 32) == JOB


def test_the_file_keeps_the_request_as_the_engines_options(tmp_path: Path) -> None:
    path = tmp_path / "pending.json"
    PendingJobs(path).add("j", JOB)
    kept = json.loads(path.read_text())
    assert kept["version"] == 2
    assert kept["jobs"]["j"]["request"] == {"prompt": "wave", "camera": "orbit", "seed": 1}


def test_lookups_by_key_in_flight_and_forgetting_the_oldest_delivered(tmp_path: Path) -> None:
    store = PendingJobs(tmp_path / "p.json")
    for n in range(5):
        store.add(f"j{n}", job(key=f"k{n}", at=float(n), delivered=n < 4))
    assert store.find("k2") == "j2" and store.find("nope") is None
    assert store.in_flight() == ["j4"]
    store.forget_old(keep=2)
    assert sorted(PendingJobs(tmp_path / "p.json").all()) == ["j2", "j3", "j4"], "the 2 newest delivered and j4"


@pytest.mark.parametrize("content", ["{not json", "[]", '{"jobs": 3}', '{"version": 9, "jobs": {}}', ""])
def test_a_corrupt_file_starts_empty_with_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pending.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="bot.core.pending"):
        store = PendingJobs(path)
    assert store.all() == {} and "unreadable" in caplog.text
    store.add("j", JOB)
    assert list(json.loads(path.read_text())["jobs"]) == ["j"]


@pytest.mark.parametrize(
    "change",
    [
        {"user_id": "7"}, {"user_id": True}, {"status_id": 1.5}, {"at": "now"}, {"source": [1]},
        {"request": {"motion": "wild"}}, {"request": "motion=high"}, {"speed": 2}, {"key": None},
    ],
)  # fmt: skip
def test_one_bad_entry_is_dropped_and_named_the_others_stay(
    tmp_path: Path, change: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pending.json"
    PendingJobs(path).add("good", JOB)
    data = json.loads(path.read_text())
    data["jobs"]["bad"] = {**data["jobs"]["good"], **change}
    data["jobs"]["missing"] = {k: v for k, v in data["jobs"]["good"].items() if k != "chat_id"}
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="bot.core.pending"):
        store = PendingJobs(path)
    assert store.all() == {"good": JOB}
    assert "job bad is unreadable" in caplog.text and "chat_id is missing" in caplog.text


def test_a_version_1_file_from_either_bot_is_read(tmp_path: Path) -> None:
    telegram = {
        "key": "tg:1:2", "chat_id": 1, "user_id": 3, "poster": None, "reply_to": 2, "file_id": "f", "filename": "a.png",
        "options": {"motion": "high"}, "status_message_id": 4, "status_text": "Queued — #1", "at": 5.0,
        "sending": True,
    }  # fmt: skip
    discord = {
        "key": "dc:9", "user_id": 3, "channel_id": 6, "poster": "Bo", "options": {},
        "image": {"url": "https://cdn/x.png", "filename": "x.png"}, "source": [6, 7], "status_id": 8,
        "status_text": "", "at": 5, "token": "tok", "app_id": 10, "token_expires": 905.0, "delivered": True,
        "seed": 11, "result_message_id": 12,
    }  # fmt: skip
    path = tmp_path / "pending.json"
    path.write_text(json.dumps({"version": 1, "jobs": {"t": telegram, "d": discord}}))
    store = PendingJobs(path)
    t, d = store.get("t"), store.get("d")
    assert t == PendingJob(
        key="tg:1:2", user_id=3, chat_id=1, request=AnimateRequest(motion="high"), poster=None, image="f",
        filename="a.png", status_id=4, status_text="Queued — #1", at=5.0, reply_to=2, sending=True,
    )  # fmt: skip
    assert d is not None
    assert (d.chat_id, d.image, d.filename, d.source, d.result_id) == (6, "https://cdn/x.png", "x.png", (6, 7), 12)
    assert d.delivered and d.token == "tok" and d.request == AnimateRequest()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pending.json"
    store = PendingJobs(path)
    store.add("j", JOB)
    before = path.read_bytes()
    replaced: list[tuple[str, str]] = []

    def crash(src: str, dst: str) -> None:
        replaced.append((src, dst))
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.add("k", job(key="k"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pending.json"]
    src, dst = replaced[0]
    assert Path(src).parent == tmp_path and Path(dst) == path  # written beside the file, then renamed over it
