"""Typed, frozen settings read once from config.toml and passed down."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_type_hints

import tomllib

from engine.errors import ConfigError
from engine.types import CAMERAS, MOTION_LEVELS


@dataclass(frozen=True)
class IntakeSettings:
    """Safe-decoding caps."""

    max_bytes: int
    max_pixels: int
    min_side: int
    max_aspect: float
    working_side: int
    formats: tuple[str, ...]


@dataclass(frozen=True)
class OcrSettings:
    """OCR backend and filters."""

    backend: str
    min_confidence: float
    min_height: int
    florence2_model: str
    max_new_tokens: int


@dataclass(frozen=True)
class DetextSettings:
    """Text removal."""

    widen_px: int
    inpaint_radius: int
    method: str


@dataclass(frozen=True)
class CaptionSettings:
    """Scene understanding backend."""

    backend: str
    blip2_model: str
    florence2_model: str
    questions: tuple[str, ...]
    max_new_tokens: int


@dataclass(frozen=True)
class SynthesizeSettings:
    """Script writer backend; the openai backend's key comes from OPENAI_API_KEY."""

    backend: str
    base_url: str
    model: str
    timeout_s: float


@dataclass(frozen=True)
class GenerateSettings:
    """Frame generator backend and defaults."""

    backend: str
    frames: int
    fps: int
    motion: str
    camera: str
    t2v_model: str
    i2v_model: str
    i2v_family: str
    steps: int
    guidance: float
    negative_prompt: str
    quality_phrases: tuple[str, ...]
    lora_weight: float
    watermark_band: float
    max_side: int


@dataclass(frozen=True)
class PostprocessSettings:
    """Caption restoring."""

    restore_caption: bool


@dataclass(frozen=True)
class EncodeSettings:
    """Output format and budget."""

    format: str
    size: int
    max_bytes: int
    colors: int


@dataclass(frozen=True)
class RuntimeSettings:
    """Where and how the model-backed stages run (read by engine.gpu)."""

    device: str
    dtype: str
    cpu_offload: bool
    vae_slicing: bool
    vae_tiling: bool


@dataclass(frozen=True)
class EngineSettings:
    """The HTTP service."""

    url: str
    host: str
    port: int
    max_body_bytes: int
    sse_keepalive_s: float


@dataclass(frozen=True)
class TelegramSettings:
    """The Telegram bot (`makeitmove bot telegram`); its token comes from TELEGRAM_TOKEN."""

    admins: tuple[int, ...]
    api_base_url: str
    file_base_url: str
    webhook_url: str
    webhook_listen: str
    webhook_port: int
    edits_per_minute: int
    state_file: str


@dataclass(frozen=True)
class DiscordSettings:
    """The Discord bot (`makeitmove bot discord`); its token comes from DISCORD_TOKEN."""

    admins: tuple[int, ...]
    dev_guild: int
    reply_trigger: bool
    edit_interval_s: float
    state_file: str
    api_base_url: str
    gateway_url: str


@dataclass(frozen=True)
class StorageSettings:
    """Where history, limits and results live."""

    url: str
    retention_days: float
    sweep_interval_s: float


@dataclass(frozen=True)
class QueueSettings:
    """Job delivery: in this process (local) or through Procrastinate to `makeitmove worker` processes."""

    backend: str
    max_attempts: int
    heartbeat_s: float
    stalled_after_s: float


@dataclass(frozen=True)
class UserLimits:
    """Per-user rate limits."""

    jobs: int
    window_s: int
    concurrent: int


@dataclass(frozen=True)
class ChatLimits:
    """Per-chat rate limits."""

    jobs: int
    window_s: int


@dataclass(frozen=True)
class LimitsSettings:
    """Rate limits; admins are exempt."""

    queue_max: int
    user: UserLimits
    chat: ChatLimits


@dataclass(frozen=True)
class CheckpointSettings:
    """The LoRA checkpoint registry."""

    dir: str


@dataclass(frozen=True)
class Settings:
    """Every setting of the engine, one frozen object."""

    intake: IntakeSettings
    ocr: OcrSettings
    detext: DetextSettings
    caption: CaptionSettings
    synthesize: SynthesizeSettings
    generate: GenerateSettings
    postprocess: PostprocessSettings
    encode: EncodeSettings
    runtime: RuntimeSettings
    engine: EngineSettings
    storage: StorageSettings
    queue: QueueSettings
    limits: LimitsSettings
    checkpoints: CheckpointSettings
    telegram: TelegramSettings
    discord: DiscordSettings


CHOICES: dict[str, tuple[str, ...]] = {
    "ocr.backend": ("rapidocr", "none", "florence2"),
    "detext.method": ("ns", "telea"),
    "caption.backend": ("none", "blip2", "florence2"),
    "synthesize.backend": ("template", "openai"),
    "generate.backend": ("procedural", "t2v", "i2v"),
    "generate.i2v_family": ("auto", "ltx", "wan"),
    "generate.motion": MOTION_LEVELS,
    "generate.camera": ("",) + CAMERAS,
    "encode.format": ("gif", "mp4", "webp"),
    "queue.backend": ("local", "procrastinate"),
    "runtime.device": ("auto", "cuda", "cpu"),
    "runtime.dtype": ("auto", "bf16", "fp16", "fp32"),
}
POSITIVE = (
    "intake.max_bytes", "intake.max_pixels", "intake.min_side", "intake.max_aspect",
    "intake.working_side", "generate.frames", "generate.fps", "encode.size", "encode.max_bytes",
    "detext.inpaint_radius", "encode.colors", "engine.port", "engine.max_body_bytes", "engine.sse_keepalive_s",
    "storage.retention_days", "storage.sweep_interval_s", "queue.max_attempts", "limits.queue_max",
    "telegram.webhook_port", "telegram.edits_per_minute", "limits.user.jobs", "limits.user.window_s",
    "limits.user.concurrent", "limits.chat.jobs", "limits.chat.window_s", "discord.edit_interval_s",
    "queue.heartbeat_s", "queue.stalled_after_s",
    "ocr.max_new_tokens", "caption.max_new_tokens", "synthesize.timeout_s",
)  # fmt: skip


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the shipped defaults, then overlay the file at `path` (which may be partial)."""
    raw = tomllib.loads(resources.files("engine").joinpath("config.toml").read_text("utf-8"))
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            overlay = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        raw = _merge(raw, overlay, prefix="")
    return _build(Settings, raw, prefix="")


def replace(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """Return a copy with some keys changed, validated like a config file: replace(s, encode={"size": 320})."""
    raw = dataclasses.asdict(settings)
    raw = _merge(raw, sections, prefix="")
    return _build(Settings, raw, prefix="")


def _merge(base: dict[str, Any], overlay: dict[str, Any], prefix: str) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"unknown config key '{name}'")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{name}' must be a table")
            merged[key] = _merge(base[key], value, prefix=f"{name}.")
        else:
            merged[key] = value
    return merged


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if f.name not in raw:
            raise ConfigError(f"config key '{name}' is missing")
        values[f.name] = _coerce(hints[f.name], raw[f.name], name)
    extra = set(raw) - set(values)
    if extra:
        raise ConfigError(f"unknown config key '{prefix}{sorted(extra)[0]}'")
    return cls(**values)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{name}' must be a table")
        return _build(hint, value, prefix=f"{name}.")
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:  # tuple[str, ...] or tuple[int, ...]
        item = get_args(hint)[0]
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    if not ok:
        raise ConfigError(f"config key '{name}' has the wrong type: {value!r}")
    if name in CHOICES and value not in CHOICES[name]:
        raise ConfigError(f"config key '{name}' must be one of {', '.join(map(repr, CHOICES[name]))}, not {value!r}")
    if name in POSITIVE and value <= 0:
        raise ConfigError(f"config key '{name}' must be positive, not {value!r}")
    return value
