"""bot.core.messages: the sentences users see — plain, short, no tracebacks, retry times in human units."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.core import formatting, messages
from bot.core.errors import EngineError, EngineUnavailable, OptionError
from bot.core.models import Ban, Checkpoint, Checkpoints, Job, Limits, Quota, Stats
from bot.core.options import parse_animate

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_importing_bot_core_pulls_in_no_heavy_library() -> None:
    code = (
        "import sys, bot.core.engine_client, bot.core.options, bot.core.messages, bot.core.formatting\n"
        "import bot.core.throttle\n"
        "import bot.core.pending\n"
        "heavy = {'torch', 'sqlalchemy', 'cv2', 'rapidocr', 'numpy', 'storage', 'PIL'}\n"
        "loaded = heavy & {name.split('.')[0] for name in sys.modules}\n"
        "assert not loaded, loaded\n"
        "engine = {name for name in sys.modules if name.split('.')[0] == 'engine'}\n"
        "assert engine <= {'engine', 'engine.vocabulary', 'engine.units', 'engine.errors', 'engine.safejson'}, engine\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("seconds", "phrase"),
    [(None, "in a minute"), (5, "in a minute"), (45, "in a minute"), (60, "in a minute"), (61, "in 2 minutes"),
     (420, "in 7 minutes"), (89 * 60, "in 89 minutes"), (3 * 3600, "in 3 hours"), (3 * 86400, "in 3 days")],
)  # fmt: skip
def test_in_time(seconds: float | None, phrase: str) -> None:
    assert formatting.in_time(seconds) == phrase


def test_rate_limit_says_when_to_retry() -> None:
    assert messages.error_text(EngineError(429, "rate_limited", "Slow down.", 45)).endswith("try again in a minute.")
    assert messages.error_text(EngineError(429, "rate_limited", "Slow down.", 420)).endswith("try again in 7 minutes.")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (EngineError(415, "not_an_image", "That file is PDF, not an image."), "That file is PDF, not an image."),
        ("not_an_image", "isn't an image"),
        (EngineError(413, "too_large", "That file is too large (30 MB; the limit is 20 MB)."), "the limit is 20 MB"),
        ("banned", "can't use this bot"),
        (EngineUnavailable(messages.ENGINE_OFFLINE), "try again in a minute."),
        (EngineError(500, "internal", "Something went wrong inside the engine."), "try again in a minute."),
        (EngineError(503, "queue_full", "The queue is full."), "try again in a minute."),
        (EngineError(503, "busy", "I'm decoding too many images right now."), "try again in a moment."),
        (EngineError(404, "job_not_found", "There is no job with that id."), "can't find that animation"),
        (EngineError(401, "unauthorized", "That needs the engine's bearer token."), "admin needs to check"),
        (Job("a" * 32, "failed", error_code="failed", error_message="The model ran out of memory."), "out of memory"),
        (Job("a" * 32, "cancelled"), "Cancelled."),
        (OptionError("fps=0 isn't valid; use fps= a whole number from 1 to 50."), "Example: /animate"),
        (RuntimeError("Traceback (most recent call last): boom"), "went wrong on my side"),
    ],
)
def test_error_catalogue(error: BaseException | Job | str, expected: str) -> None:
    said = messages.error_text(error)
    assert expected in said and "Traceback" not in said and "boom" not in said


def test_too_large_names_the_limit_when_the_adapter_knows_it() -> None:
    assert (
        messages.error_text("too_large", limit_bytes=20 * 1024 * 1024) == "That file is too large (the limit is 20 MB)."
    )


def test_internal_errors_carry_the_job_id() -> None:
    assert "(job 0123456789ab)" in messages.error_text(KeyError("x"), job_id="0123456789abcdef")


def test_progress_lines() -> None:
    assert messages.status_text(Job("j", "queued", position=3)) == "Queued — #3"
    assert messages.status_text(Job("j", "queued")) == "Queued"
    lines = {stage: messages.stage_text(stage, 0.4) for stage in ("intake", "ocr", "detext", "caption", "synthesize")}
    assert lines["intake"] == lines["ocr"] == lines["detext"] == "Reading the meme…"
    assert lines["caption"] == "Looking at the picture…" and lines["synthesize"] == "Writing the motion…"
    assert messages.status_text(Job("j", "running", stage="generate", fraction=0.4)) == "Animating 40%…"
    assert messages.stage_text("postprocess", 0.9) == "Putting the caption back…"
    assert messages.stage_text("encode", 0.9) == "Encoding…"
    assert messages.stage_text(None, 0) == "Starting…"


def test_result_caption_credits_the_poster_and_is_capped() -> None:
    assert messages.result_caption("Zoë", "the cat slowly zooms in") == "Meme by Zoë · “the cat slowly zooms in”"
    assert messages.result_caption(None, "wave") == "“wave”"
    assert messages.result_caption("Zoë", None) == "Meme by Zoë"
    long = messages.result_caption("N" * 300, "word " * 300)
    assert len(long) <= messages.CAPTION_MAX and long.startswith("Meme by NNN") and "…" in long


def test_prompt_text() -> None:
    script = {"description": "a cat on a sofa", "meme_text": "MONDAY", "emotion": "dread", "camera": "zoom-in",
              "motion_prompt": "the cat sinks slowly", "explanation": "Mondays weigh."}  # fmt: skip
    said = messages.prompt_text(script)
    assert "a cat on a sofa" in said and "the cat sinks slowly" in said and "Mondays weigh." in said
    assert messages.prompt_text(None) == messages.NO_PROMPT
    assert len(messages.prompt_text({"description": "x" * 5000, "explanation": "y" * 5000})) <= messages.PROMPT_TEXT_MAX


def test_history_and_quota() -> None:
    jobs = [
        Job("a", "done", script={"motion_prompt": "he nods"}, created_at=NOW - timedelta(minutes=5)),
        Job("b", "queued", position=2, created_at=NOW),
    ]
    said = messages.history_text(jobs, NOW)
    assert "5 min ago — done — he nods" in said and "queued — #2" in said
    assert messages.history_text([], NOW) == messages.NO_HISTORY
    quota = Quota(3, 5, 600, 2, 2, refills_at=NOW + timedelta(minutes=3, seconds=30))
    assert messages.quota_text(quota, NOW) == "3 of 5 left; refills in 4 minutes."
    assert messages.quota_text(Quota(5, 5, 600, 2, 2, None), NOW) == "5 of 5 left."


def test_admin_texts() -> None:
    listing = Checkpoints(
        (
            Checkpoint("memes-v1", 2_000_000, True, None, True),
            Checkpoint("broken", 10, False, "not safetensors", False),
        ),
        "memes-v1",
    )
    said = messages.checkpoints_text(listing)
    assert "▶ memes-v1" in said and "  broken" in said and "not safetensors" in said
    assert "base model" in messages.checkpoints_text(Checkpoints((), None))
    assert "memes-v1" in messages.checkpoint_activated_text(
        "memes-v1"
    ) and "base model" in messages.checkpoint_activated_text(None)
    stats = Stats({"done": 4, "failed": 1}, 2, 5, 3, 1, None, 2.25)
    assert "2 waiting" in messages.stats_text(stats) and "2.2 s" in messages.stats_text(stats)
    assert messages.ban_text(Ban("telegram", "42", "spam", NOW)) == "Banned 42 on telegram (spam)."
    assert "Lifted" in messages.unban_text("telegram", "42", True) and "isn't banned" in messages.unban_text(
        "telegram", "42", False
    )
    limits = messages.limits_text(Limits(5, 600, 2, 30, 600, 200), changed=True)
    assert limits.startswith("Limits now in force") and "queue_max" in limits
    assert messages.ONLY_ADMINS == "Only admins can do that."


def test_help_lists_commands_options_and_examples() -> None:
    public, admin = messages.help_text(), messages.help_text(is_admin=True)
    assert "/animate" in public and "camera=" in public and "Examples" in public and "/ban" not in public
    assert "/ban" in admin and "/lora" in admin and "/lora" not in public
    for example in [line.strip() for line in public.splitlines() if line.strip().startswith("/animate")]:
        parse_animate(example.removeprefix("/animate"))  # every example parses
    assert "/animate" in messages.start_text()


def test_defuse_mentions() -> None:
    said = formatting.defuse_mentions("hi @everyone and @HERE, <@123>, <@!456>, <@&789>, mail a@b.c")
    assert "@everyone" not in said and "@HERE" not in said and "<@1" not in said and "<@!" not in said
    assert "<@&" not in said and "a@b.c" in said
    assert said.replace(formatting.ZWSP, "") == "hi @everyone and @HERE, <@123>, <@!456>, <@&789>, mail a@b.c"


def test_buttons_and_usage_lines() -> None:
    assert [action for action, _ in messages.RESULT_BUTTONS] == ["again", "more", "prompt", "del"]
    assert all(len(label) <= 20 for _, label in messages.RESULT_BUTTONS) and messages.ANIMATE_BUTTON
    for usage in (
        messages.LORA_USAGE,
        messages.BAN_USAGE,
        messages.UNBAN_USAGE,
        messages.NOTHING_TO_CANCEL,
        messages.OFFER_TEXT,
    ):
        assert usage.endswith((".", "?")) and "\n" not in usage
    assert all(name.isascii() and name.islower() and len(what) <= 256 for name, what, _ in messages.COMMANDS)
