"""bot.core for /remix and /lora tune: the requests, their place in the state file, the sentences, the client.

The client's calls go to the real engine app on a loopback port, with the default CPU config: no GPU video
backend, so the engine's refusals are what a bot gets (the jobs themselves run in the bots' tests).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from bot.core import messages
from bot.core.engine_client import EngineClient
from bot.core.errors import EngineError, OptionError
from bot.core.models import Checkpoint, Checkpoints, Job, Training
from bot.core.options import (
    NO_REMIX_PROMPT,
    AnimateRequest,
    RemixRequest,
    TuneRequest,
    parse_remix,
    parse_tune,
    request_of,
    rerun,
)
from bot.core.pending import PendingJob, PendingJobs
from engine.config import load_settings, replace
from engine.pipeline import Pipeline
from engine.service.api.handlers.making import needs_gpu
from engine.service.app import create_app
from engine.service.keys import Tokens
from tests.bot.clips import gif_clip

TOKEN, ADMIN = "bot-test-token", "admin-test-token"
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc)


# --- the requests ---


def test_remix_takes_all_its_words_as_the_prompt() -> None:
    assert parse_remix("  a sloth\n is   surfing motion=high ") == RemixRequest("a sloth is surfing motion=high")
    assert RemixRequest("x", seed=3).options == {"prompt": "x", "seed": 3}
    for empty in ("", "   \n"):
        with pytest.raises(OptionError) as caught:
            parse_remix(empty)
        assert caught.value.message == NO_REMIX_PROMPT
    with pytest.raises(OptionError, match="too long"):
        parse_remix("a" * 501)
    with pytest.raises(OptionError, match="motion"):
        RemixRequest.from_options({"prompt": "x", "motion": "high"})
    with pytest.raises(OptionError, match="seed"):
        RemixRequest.from_options({"prompt": "x", "seed": -1})


def test_tune_takes_a_registry_name_then_what_happens() -> None:
    assert parse_tune(["wobble"]) == TuneRequest("wobble")
    assert parse_tune(["v1.2_cat-dance", "a", " cat", "dances"]) == TuneRequest("v1.2_cat-dance", "a cat dances")
    assert TuneRequest("w", "x").options == {"name": "w", "prompt": "x"} and TuneRequest("w").options == {"name": "w"}
    with pytest.raises(OptionError, match="Give the checkpoint a name"):
        parse_tune([])
    for bad in ("../evil", ".hidden", "-x", "a/b", "é", "a" * 101, "@everyone"):
        with pytest.raises(OptionError, match="can't be a checkpoint's name"):
            parse_tune([bad])
    with pytest.raises(OptionError) as caught:
        parse_tune(["x" * 500])
    assert len(caught.value.message) < 200, "a pasted essay is not echoed back"


def test_again_and_more_motion_per_kind() -> None:
    animation = AnimateRequest("wave", seed=5)
    assert rerun(animation, 9, more=False) == AnimateRequest("wave")
    assert rerun(animation, 9, more=True) == AnimateRequest("wave", motion="high", seed=9)
    assert rerun(RemixRequest("a sloth", seed=5), 9, more=False) == RemixRequest("a sloth")
    assert rerun(RemixRequest("a sloth"), 9, more=True) is None, "a remix has no motion to raise"
    assert rerun(TuneRequest("w"), None, more=False) is None
    assert request_of("remix", {"prompt": "a", "seed": 1}) == RemixRequest("a", 1)
    assert request_of("tune", {"name": "w"}) == TuneRequest("w")
    with pytest.raises(OptionError):
        request_of("train", {})


# --- the state file ---


def kept(request: AnimateRequest | RemixRequest | TuneRequest) -> PendingJob:
    return PendingJob(
        key="tg:1:2", user_id=3, chat_id=1, request=request, poster=None, image="file-1", filename="clip.mp4",
        status_id=4, status_text="Queued — #1", at=1000.0, reply_to=2,
    )  # fmt: skip


def test_the_state_file_keeps_each_jobs_kind(tmp_path: Path) -> None:
    path = tmp_path / "pending.json"
    store = PendingJobs(path)
    jobs = {"a": kept(AnimateRequest("wave")), "r": kept(RemixRequest("a sloth", 7)), "t": kept(TuneRequest("w", "x"))}
    for job_id, job in jobs.items():
        store.add(job_id, job)
    assert PendingJobs(path).all() == jobs
    raw = json.loads(path.read_text())["jobs"]
    assert {job_id: entry["kind"] for job_id, entry in raw.items()} == {"a": "animate", "r": "remix", "t": "tune"}
    assert raw["r"]["request"] == {"prompt": "a sloth", "seed": 7}


def test_a_file_without_kinds_holds_animations_and_a_bad_kind_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pending.json"
    PendingJobs(path).add("a", kept(AnimateRequest("wave")))
    data = json.loads(path.read_text())
    entry = data["jobs"]["a"]
    del entry["kind"]  # as a bot older than /remix wrote it
    data["jobs"].update(b={**entry, "kind": "train"}, c={**entry, "kind": 3}, d={**entry, "kind": "tune"})
    path.write_text(json.dumps(data))
    assert list(PendingJobs(path).all()) == ["a"]
    assert PendingJobs(path).all()["a"].request == AnimateRequest("wave")
    assert caplog.text.count("dropped") >= 3


# --- what the engine says ---


def test_jobs_say_their_kind_and_what_they_made() -> None:
    done = Job.from_json({"id": "j", "status": "done", "kind": "tune", "made": "wobble", "progress": {}})
    assert (done.kind, done.made) == ("tune", "wobble")
    old = Job.from_json({"id": "j", "status": "queued", "position": 2})
    assert (old.kind, old.made) == ("animate", None), "an engine older than remixes: animations"


def test_training_info_is_read_field_by_field_whatever_the_file_says() -> None:
    info = Training.from_json({
        "kind": "train", "family": "ltx", "base_model": "Lightricks/LTX-Video", "rank": 32, "alpha": 32,
        "steps": 2000, "dataset_sha256": "ab" * 32, "trigger": "mimeme", "examples": ["a cat dances", 3, None],
    })  # fmt: skip
    assert info.rank == 32 and info.examples == ("a cat dances",)
    odd = Training.from_json({"kind": 1, "rank": "4", "steps": True, "examples": "not a list"})
    assert (odd.kind, odd.rank, odd.steps, odd.examples) == (None, None, None, ())
    listing = Checkpoints.from_json({"active": None, "checkpoints": [
        {"name": "w", "size_bytes": 10, "valid": True, "problem": None, "active": False, "training": None},
        {"name": "t", "size_bytes": 10, "valid": True, "active": False, "training": {"kind": "tune", "steps": 4}},
    ]})  # fmt: skip
    assert listing.checkpoints[0].training is None and listing.checkpoints[1].training == Training(
        "tune", None, None, None, None, 4, None, None, ()
    )


# --- the sentences ---


def test_progress_of_remixes_and_tunes() -> None:
    assert messages.stage_text("tuning", 0.3) == "Learning the GIF's motion 30%…"
    assert messages.stage_text("sampling", 0.8) == "Remixing 80%…"
    assert messages.stage_text("training", 1.0) == "Training 99%…"
    assert messages.stage_text("preparing", 0.0) == "Reading the clip…"
    assert messages.stage_text("saving", 0.99) == "Saving the checkpoint…"
    assert messages.stage_text("encode", 0.97) == "Encoding…"


def test_lora_list_says_briefly_how_each_checkpoint_was_made() -> None:
    tuned = Training("tune", "t2v", "base", 4, 4, 200, "cd" * 32, None, ("a cat\ndances",))
    trained = Training("train", "ltx", "base", 32, 32, 2000, "ab" * 32, "mimeme", ())
    text = messages.checkpoints_text(Checkpoints((
        Checkpoint("wiggle", 2048, True, None, True, tuned),
        Checkpoint("memes", 4096, True, None, False, trained),
        Checkpoint("plain", 1024, True, None, False),
    ), "wiggle"))  # fmt: skip
    lines = text.splitlines()
    assert lines[1] == "▶ wiggle (2 KB) — tuned on a GIF, t2v, rank 4, 200 steps, e.g. “a cat dances”"
    assert lines[2] == "  memes (4 KB) — trained on a dataset (abababab), ltx, rank 32, 2000 steps, trigger “mimeme”"
    assert lines[3] == "  plain (1 KB)"


def test_lora_list_stays_one_line_per_checkpoint_and_one_message() -> None:
    hostile = Training("tune", "t2v\n▶ fake", None, 4, None, 4, None, "x" * 500, ("y" * 5000,))
    many = tuple(Checkpoint(f"c{n}", 1, True, None, False, hostile) for n in range(40))
    text = messages.checkpoints_text(Checkpoints(many, None))
    assert len(text) <= messages.LIST_TEXT_MAX and text.endswith("…")
    assert all(line.startswith(("Checkpoints", "  c")) for line in text.splitlines()), "no line of the file's text"


def test_remix_caption_tune_ready_and_history() -> None:
    assert messages.remix_caption("Zoë", "a sloth is surfing") == "GIF by Zoë · “a sloth is surfing”"
    assert (
        messages.remix_caption(None, "a" * 500).endswith("…”") and len(messages.remix_caption(None, "a" * 500)) <= 200
    )
    assert (
        messages.tune_ready_text("wobble") == "Checkpoint wobble is ready; /lora use wobble makes the next jobs use it."
    )
    remix = Job("j", "done", kind="remix", created_at=NOW - timedelta(minutes=3))
    assert messages.history_line(remix, NOW) == "• 3 min ago — done (remix)"
    assert "/remix" in messages.help_text() and "/lora tune" in messages.help_text(is_admin=True)
    assert "/lora tune" not in messages.help_text()


# --- the client against the engine ---


def run(tmp_path: Path, scenario: Callable[[EngineClient], Awaitable[None]]) -> None:
    """The real engine (default CPU config) on a loopback port, and a client with both tokens."""
    settings = replace(
        load_settings(),
        storage={"url": f"sqlite:///{tmp_path / 'engine.db'}"}, checkpoints={"dir": str(tmp_path / "ckpt")},
    )  # fmt: skip
    pipeline = Pipeline(settings)

    async def main() -> None:
        app = create_app(settings, tokens=Tokens(TOKEN, ADMIN), pipeline_factory=lambda _: pipeline)
        async with TestServer(app) as server:
            url = str(server.make_url("")).rstrip("/")
            async with EngineClient(url, TOKEN, admin_token=ADMIN) as client:
                await scenario(client)

    asyncio.run(main())


def test_remix_and_tune_without_a_gpu_backend_get_the_engines_sentence(tmp_path: Path) -> None:
    settings = load_settings()
    who = {"platform": "test", "user_id": "u1", "chat_id": "c1"}

    async def scenario(client: EngineClient) -> None:
        with pytest.raises(EngineError) as caught:
            await client.make(RemixRequest("a sloth"), gif_clip(), filename="a.gif", output={"format": "gif"}, **who)
        assert (caught.value.status, caught.value.code) == (409, "needs_gpu_backend")
        assert messages.error_text(caught.value) == needs_gpu(settings, "Remixing")
        with pytest.raises(EngineError) as caught:
            await client.make(TuneRequest("w"), gif_clip(), filename="a.gif", output={"format": "gif"}, **who)
        assert messages.error_text(caught.value) == needs_gpu(settings, "Tuning")
        bot_only = EngineClient(client.base_url, TOKEN)
        async with bot_only:
            with pytest.raises(EngineError) as caught:
                await bot_only.tune(gif_clip(), filename="a.gif", options={"name": "w"}, **who)
        assert messages.error_text(caught.value) == messages.MISCONFIGURED, "tuning needs the admin token"

    run(tmp_path, scenario)
