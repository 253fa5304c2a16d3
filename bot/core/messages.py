"""Every sentence the bots send, for both platforms: plain text, no markup, callers send it as-is.

The catalogue of fixed sentences, the sentences built from engine data, and the engine codes mapped
to them; the units and cuts inside them come from formatting.py.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bot.core.errors import BotError, EngineError, EngineUnavailable, OptionError
from bot.core.formatting import ago, cut, cut_lines, in_time
from bot.core.models import Ban, Checkpoints, Job, Limits, Quota, Stats, Training
from engine.units import human_bytes
from engine.vocabulary import CAMERAS, FPS, MOTION_LEVELS, SEED

BOT_NAME = "Make It Move"
CAPTION_MAX = 200  # a result's caption: short enough for every platform's attachment caption
PROMPT_TEXT_MAX = 1500  # the 📝 Prompt answer: under Discord's 2000 and Telegram's 4096 characters
LIST_TEXT_MAX = 1900  # /lora's list: one message on Discord (2000) and Telegram (4096)
HISTORY_PROMPT_MAX = 60

# (command, what it does, admin only) — the adapters register these, and /help lists them.
COMMANDS: tuple[tuple[str, str, bool], ...] = (
    ("animate", "turn the meme you reply to (or attach) into a GIF", False),
    ("remix", "the GIF you reply to, moving the same way with a new subject: /remix a sloth is surfing", False),
    ("cancel", "stop your animation that is still running", False),
    ("history", "your last animations", False),
    ("quota", "how many animations you have left", False),
    ("help", "commands, options and examples", False),
    (
        "lora",
        "list the LoRA checkpoints; /lora use NAME switches, /lora off goes back to the base model, "
        "/lora tune NAME [prompt] in reply to a GIF makes one",
        True,
    ),
    ("stats", "queue and usage numbers", True),
    ("ban", "ban a user: /ban USER_ID [reason]", True),
    ("unban", "lift a ban: /unban USER_ID", True),
    ("limits", "show the rate limits, or change them: /limits user_jobs=10", True),
)

OPTIONS_HELP = (
    "Options (anywhere after /animate; everything else is your prompt):\n"
    "  motion=" + " or motion=".join(MOTION_LEVELS) + "\n"
    f"  camera={'|'.join(CAMERAS)}\n"
    f"  seed=0..{SEED[1]} (same seed, same GIF)\n"
    f"  fps={FPS[0]}..{FPS[1]}"
)
EXAMPLES = (
    "Examples:\n"
    "  /animate\n"
    "  /animate the cat slowly turns its head\n"
    "  /animate motion=high camera=shake everyone panics"
)

ONLY_ADMINS = "Only admins can do that."
NEED_IMAGE = "Reply to a meme with /animate, or send the meme with /animate as its caption."
ENGINE_OFFLINE = "The animation engine is offline or restarting; please try again in a minute."
MISCONFIGURED = "I can't talk to the animation engine right now (an admin needs to check my setup)."
UNKNOWN_JOB = "I can't find that animation any more; please make it again."
CANCELLED = "Cancelled."
NOT_CANCELLABLE = "That animation has already finished."
NOT_YOUR_JOB = "Only the person who asked for this animation can do that."
BANNED = "You can't use this bot any more."
QUEUE_FULL = "Too many animations are waiting right now; please try again in a minute."
BUSY = "Lots of memes are arriving at once; please try again in a moment."
RESULT_EXPIRED = "That animation is no longer kept; please make it again."
NO_HISTORY = "You haven't animated anything yet."
NO_PROMPT = "I don't have the prompt for that animation any more."
NOTHING_TO_CANCEL = "You have no animation queued or running."
# Put above a result's caption when a restart came between sending it and recording that it went out.
SENT_AGAIN = "Here is your animation again (I restarted while sending it; ignore a copy you already have)."
LORA_USAGE = (
    "Use /lora to list the checkpoints, /lora use NAME to switch, /lora off for the base model, or /lora tune NAME "
    "[what happens in it] in reply to a GIF to make one."
)
NEED_CLIP = "Reply to a GIF or video with /remix and what it should show instead, e.g. /remix a sloth is surfing."
TUNE_NEED_CLIP = "Reply to a GIF or video with /lora tune NAME [what happens in it] to tune a checkpoint on it."
BAN_USAGE = "Use /ban USER_ID [reason], with the user's numeric id."
UNBAN_USAGE = "Use /unban USER_ID, with the user's numeric id."
# Discord: where the meme comes from is an option, a context-menu target or a reply, never a caption.
DISCORD_NEED_IMAGE = "Attach a meme to /animate, use Apps → Animate meme on a message with an image, or reply to one."
DISCORD_NO_IMAGE_IN_MESSAGE = "That message has no image I can animate (PNG, JPEG, WebP or GIF)."
DISCORD_CANT_SEE_REPLY = (
    "I can't see the image in the message you replied to (this server hasn't given me the Message Content "
    "intent); use Apps → Animate meme on that message instead."
)
DISCORD_NEED_CLIP = "Reply to a GIF or video with “@me remix” and what it should show instead, or use /remix."
DISCORD_CANT_SEE_REPLIED_CLIP = (
    "I can't see the GIF in the message you replied to (this server hasn't given me the Message Content intent); "
    "use /remix with the GIF attached instead."
)
DISCORD_NOT_A_CLIP = "That file isn't a GIF or video I can learn the motion of (GIF, MP4, WebM or WebP)."
DISCORD_NO_CLIP_FOUND = (
    "I found no GIF or video in this channel's recent messages; attach one with the gif option (or reply to one "
    "with “@me remix” and the new subject)."
)
DOWNLOAD_FAILED = "I couldn't download that image; please try again."
TELEGRAM_FILE_TOO_BIG = "That file is too large for me to fetch (Telegram gives bots files up to 20 MB)."
IMAGE_GONE = "I can't get that image any more (it was deleted or its link expired); please post it again."
DISCORD_SEE_BELOW = "Done — your animation is below."
DISCORD_CANT_POST = "I made the animation but couldn't post it in this channel (I may lack the permission)."
DISCORD_NO_UPLOAD = "I made the animation but couldn't upload it here (it's too large for this channel)."
ANIMATE_BUTTON = "✨ Animate"
OFFER_TEXT = "Want me to animate this meme? Tap the button (or send it with /animate and a prompt)."
# (action, label) of the buttons under a result; adapters put the action in the button's id.
RESULT_BUTTONS: tuple[tuple[str, str], ...] = (
    ("again", "🔁 Again"),
    ("more", "⚡ More motion"),
    ("prompt", "📝 Prompt"),
    ("del", "🗑 Delete"),
)
REMIX_BUTTONS: tuple[tuple[str, str], ...] = (("again", "🔁 Again"), ("del", "🗑 Delete"))  # no motion, no script
# Under a result the engine lets its requester share ([gallery] public), on a row of its own; pressed, it says so.
SHARE_BUTTON, SHARED_BUTTON = ("share", "🌐 Share"), ("shared", "🌐 Shared")
SHARED = "Shared to the gallery 🌐"
ALREADY_SHARED = "Already shared."
NOT_REQUESTER = "Only the person who asked for this animation can share it."

STAGE_LINES = {
    "intake": "Reading the meme…",
    "ocr": "Reading the meme…",
    "detext": "Reading the meme…",
    "caption": "Looking at the picture…",
    "synthesize": "Writing the motion…",
    "postprocess": "Putting the caption back…",
    "encode": "Encoding…",
    "done": "Encoding…",
    "preparing": "Reading the clip…",
    "saving": "Saving the checkpoint…",
}
# Stages long enough to show how far along they are, each with its percentage of the whole job.
STAGE_PERCENT = {"generate": "Animating", "tuning": "Learning the GIF's motion", "sampling": "Remixing",
                 "training": "Training"}  # fmt: skip
# Engine codes whose own message is already the sentence to show (intake's refusals, option checks).
ENGINE_WORDED = frozenset(
    {"not_an_image", "unsupported_format", "empty", "damaged", "too_small", "bad_aspect", "too_large",
     "too_many_pixels", "bad_option", "bad_options", "no_result", "not_ready", "needs_gpu_backend", "not_a_clip",
     "training_busy"}
)  # fmt: skip


def start_text() -> str:
    """The /start greeting."""
    return (
        f"Hi! I'm {BOT_NAME}: I turn a meme into a short animated GIF that keeps its joke and its caption.\n"
        "Reply to a meme with /animate to try it, or see /help."
    )


def help_text(*, is_admin: bool = False) -> str:
    """The /help text: commands (admin ones for admins), options and examples."""
    lines = [f"{BOT_NAME} turns a meme into an animated GIF.", "", "Commands:"]
    lines += [f"  /{name} — {what}" for name, what, admin in COMMANDS if is_admin or not admin]
    return "\n".join(lines) + "\n\n" + OPTIONS_HELP + "\n\n" + EXAMPLES


def queued_text(position: int | None) -> str:
    """A queued job: "Queued — #3", or "Queued" when the place is unknown."""
    return f"Queued — #{position}" if position else "Queued"


def stage_text(stage: str | None, fraction: float) -> str:
    """A running job's line: what it is doing now, with the percentage while animating."""
    if stage in STAGE_PERCENT:
        return f"{STAGE_PERCENT[stage]} {min(99, max(0, round(fraction * 100)))}%…"
    return STAGE_LINES.get(stage or "", "Starting…")


def status_text(job: Job) -> str:
    """The status message for a job in flight (final jobs get a result or error_text instead)."""
    if job.status == "queued":
        return queued_text(job.position)
    if job.status == "running":
        return stage_text(job.stage, job.fraction)
    if job.status == "cancelled":
        return CANCELLED
    if job.status == "failed":
        return error_text(job)
    return "Done."


def result_caption(poster_name: str | None, motion_prompt: str | None) -> str:
    """The result's caption: credit to who posted the meme and the motion prompt, at most CAPTION_MAX chars."""
    credit = f"Meme by {cut(poster_name, 48)}" if poster_name and poster_name.strip() else ""
    if not motion_prompt or not motion_prompt.strip():
        return credit or BOT_NAME
    room = CAPTION_MAX - len(credit) - (5 if credit else 2)  # the quotes and " · "
    quoted = f"“{cut(motion_prompt, room)}”"
    return f"{credit} · {quoted}" if credit else quoted


def remix_caption(poster_name: str | None, prompt: str | None) -> str:
    """A remix's caption: credit to who posted the GIF and the new subject, at most CAPTION_MAX chars."""
    credit = f"GIF by {cut(poster_name, 48)}" if poster_name and poster_name.strip() else ""
    if not prompt or not prompt.strip():
        return credit or BOT_NAME
    room = CAPTION_MAX - len(credit) - (5 if credit else 2)
    quoted = f"“{cut(prompt, room)}”"
    return f"{credit} · {quoted}" if credit else quoted


def tune_ready_text(name: str) -> str:
    """A finished tune: the checkpoint is in the registry, and how to use it."""
    name = cut(name, 100)
    return f"Checkpoint {name} is ready; /lora use {name} makes the next jobs use it."


def prompt_text(script: dict[str, Any] | None) -> str:
    """The 📝 Prompt answer: what the engine saw, the motion prompt and why, capped for every platform."""
    if not script:
        return NO_PROMPT
    parts = [
        ("What I saw", script.get("description")),
        ("Meme text", script.get("meme_text")),
        ("Motion", script.get("motion_prompt")),
        ("Camera", script.get("camera")),
        ("Why", script.get("explanation")),
    ]
    lines = [f"{label}: {cut(str(value), 500)}" for label, value in parts if value]
    return cut_lines("\n".join(lines) or NO_PROMPT, PROMPT_TEXT_MAX)


def history_line(job: Job, now: datetime | None = None) -> str:
    """One job in /history: when, how it ended and its motion prompt."""
    now = now or datetime.now(timezone.utc)
    what = (job.script or {}).get("motion_prompt") or ""
    state = {"queued": queued_text(job.position).lower(), "running": "running"}.get(job.status, job.status)
    kind = f" ({job.kind})" if job.kind != "animate" else ""
    line = f"• {ago(job.created_at, now)} — {state}{kind}"
    return f"{line} — {cut(str(what), HISTORY_PROMPT_MAX)}" if what else line


def history_text(jobs: list[Job], now: datetime | None = None) -> str:
    """The /history answer, newest first."""
    if not jobs:
        return NO_HISTORY
    return "Your last animations:\n" + "\n".join(history_line(job, now) for job in jobs)


def quota_text(quota: Quota, now: datetime | None = None) -> str:
    """The /quota answer: "3 of 5 left; refills in 4 minutes"."""
    text = f"{quota.jobs_left} of {quota.jobs_limit} left"
    if quota.refills_at is not None and quota.jobs_left < quota.jobs_limit:
        seconds = (quota.refills_at - (now or datetime.now(timezone.utc))).total_seconds()
        text += f"; refills {in_time(seconds)}"
    return text + "."


def checkpoints_text(listing: Checkpoints) -> str:
    """The admin's checkpoint list, the active one marked."""
    if not listing.checkpoints:
        return "No checkpoints in the registry; jobs use the base model."
    lines = ["Checkpoints (▶ = active):"]
    for c in listing.checkpoints:
        mark = "▶" if c.active else " "
        problem = f" — can't be used: {cut(c.problem, 200)}" if not c.valid and c.problem else ""
        made = f" — {training_text(c.training)}" if c.training is not None else ""
        lines.append(f"{mark} {cut(c.name, 100)} ({human_bytes(c.size_bytes)}){made}{problem}")
    if listing.active is None:
        lines.append("None is active: jobs use the base model.")
    return cut_lines("\n".join(lines), LIST_TEXT_MAX)


def training_text(training: Training) -> str:
    """How a checkpoint was made, briefly: "tuned on a GIF, t2v, rank 4, 200 steps, e.g. “a cat dances”"."""
    how = {"tune": "tuned on a GIF", "train": "trained on a dataset"}.get(training.kind or "", "trained")
    if training.kind == "train" and training.dataset_sha256:
        how += f" ({cut(training.dataset_sha256[:8], 8)})"
    parts = [how]
    parts += [cut(training.family, 20)] if training.family else []
    parts += [f"rank {training.rank}"] if training.rank is not None else []
    parts += [f"{training.steps} steps"] if training.steps is not None else []
    parts += [f"trigger “{cut(training.trigger, 30)}”"] if training.trigger else []
    parts += [f"e.g. “{cut(training.examples[0], 60)}”"] if training.examples else []
    return ", ".join(parts)


def checkpoint_activated_text(name: str | None) -> str:
    """Confirmation of a checkpoint switch."""
    if name is None:
        return "No checkpoint from the next job on: jobs use the base model."
    return f"Checkpoint {name} is active from the next job on."


def stats_text(stats: Stats) -> str:
    """The admin's /stats answer."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(stats.jobs_by_status.items())) or "none"
    mean = f"{stats.mean_seconds_last_100:.1f} s" if stats.mean_seconds_last_100 is not None else "n/a"
    return "\n".join(
        [
            f"Queue: {stats.queue_depth} waiting",
            f"Last 24 h: {stats.jobs_last_24h} jobs from {stats.users_last_24h} users",
            f"All jobs: {counts}",
            f"Mean time (last 100): {mean}",
            f"Bans: {stats.bans}",
            f"Checkpoint: {stats.active_checkpoint or 'none (base model)'}",
        ]
    )


def ban_text(ban: Ban) -> str:
    """Confirmation of a ban."""
    reason = f" ({cut(ban.reason, 100)})" if ban.reason else ""
    return f"Banned {ban.user_id} on {ban.platform}{reason}."


def unban_text(platform: str, user_id: str, lifted: bool) -> str:
    """Confirmation of a lifted ban, or that there was none."""
    return f"Lifted the ban on {user_id}." if lifted else f"{user_id} isn't banned on {platform}."


def limits_text(limits: Limits, *, changed: bool = False) -> str:
    """The limits in force (after a change, say so)."""
    head = "Limits now in force:" if changed else "Limits in force:"
    return (
        f"{head}\n"
        f"  per user: {limits.user_jobs} jobs per {limits.user_window_s} s (user_jobs, user_window_s), "
        f"{limits.user_concurrent} at once (user_concurrent)\n"
        f"  per chat: {limits.chat_jobs} jobs per {limits.chat_window_s} s (chat_jobs, chat_window_s)\n"
        f"  queue: {limits.queue_max} waiting at most (queue_max)"
    )


def error_text(error: BaseException | Job | str, *, limit_bytes: int | None = None, job_id: str | None = None) -> str:
    """One calm sentence for an error, an engine code or a failed/cancelled job; never a traceback."""
    if isinstance(error, Job):
        if error.status == "cancelled":
            return CANCELLED
        return error.error_message or _internal(error.id)
    if isinstance(error, OptionError):
        return f"{error.message}\nExample: /animate motion=high camera=zoom-in he finally gets it"
    if isinstance(error, EngineUnavailable):
        return ENGINE_OFFLINE
    if isinstance(error, EngineError):
        return _engine_error(error.status, error.code, error.message, error.retry_after, limit_bytes, job_id)
    if isinstance(error, BotError):
        return error.message
    if isinstance(error, str):
        return _engine_error(0, error, None, None, limit_bytes, job_id)
    return _internal(job_id)


def _engine_error(
    status: int, code: str, message: str | None, retry_after: float | None, limit_bytes: int | None, job_id: str | None
) -> str:
    if code == "too_large" and limit_bytes is not None:
        return f"That file is too large (the limit is {human_bytes(limit_bytes)})."
    if code in ENGINE_WORDED and message:
        return message
    known = {
        "not_an_image": "That file isn't an image I can read; please send a PNG, JPEG, WebP or GIF.",
        "too_large": "That file is too large for me.",
        "rate_limited": f"You've made a lot of animations; please try again {in_time(retry_after)}.",
        "banned": BANNED,
        "queue_full": QUEUE_FULL,
        "busy": BUSY,  # the engine's decoding budget is full: a 503, but the engine is up
        "engine_offline": ENGINE_OFFLINE,
        "unauthorized": MISCONFIGURED,
        "admin_disabled": MISCONFIGURED,
        "job_not_found": UNKNOWN_JOB,
        "result_expired": RESULT_EXPIRED,
        "not_your_job": NOT_YOUR_JOB,
        "not_requester": NOT_REQUESTER,
        "cancelled": CANCELLED,
        "need_image": NEED_IMAGE,
        "not_admin": ONLY_ADMINS,
    }
    if code in known:
        return known[code]
    if status >= 500 or code == "internal":
        return ENGINE_OFFLINE
    if message and status and 400 <= status < 500:
        return message  # the engine's refusals are sentences a chat user can read
    return message or _internal(job_id)


def _internal(job_id: str | None) -> str:
    where = f" (job {job_id[:12]})" if job_id else ""
    return f"Something went wrong on my side{where}; please try again."
