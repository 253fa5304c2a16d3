"""Typed, frozen settings read once from config.toml and passed down, every field checked at load by its type.

`Literal[...]` lists the allowed values, `Annotated[..., Range(low, high)]` bounds a number, `Camera | None` lets
"" mean "none"; nothing downstream checks a setting again. Standard library only: the bots load their sections
of the same file with `read_config` and `build`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import tomllib

from engine.errors import ConfigError
from engine.typedtoml import POSITIVE, Range, build, merge
from engine.vocabulary import FPS, FRAMES, SIZE, Camera, Format, Motion

Positive = Annotated[int, POSITIVE]
PositiveFloat = Annotated[float, POSITIVE]
Share = Annotated[float, Range(0.0, 1.0)]

OcrBackend = Literal["rapidocr", "none", "florence2"]
CaptionBackend = Literal["none", "blip2", "florence2"]
SynthesizeBackend = Literal["template", "openai"]
GenerateBackend = Literal["acting", "procedural", "t2v", "i2v", "clipguided"]
ClipPreset = Literal["fast", "quality"]
TrainBase = Literal["t2v", "i2v"]
I2vFamily = Literal["auto", "ltx", "wan"]
QueueBackend = Literal["local", "procrastinate"]
Device = Literal["auto", "cuda", "cpu"]
Dtype = Literal["auto", "bf16", "fp16", "fp32"]
MAX_WATERMARK_BAND = 0.5


@dataclass(frozen=True)
class IntakeSettings:
    """Safe-decoding caps."""

    max_bytes: Positive
    max_pixels: Positive
    min_side: Positive
    max_aspect: PositiveFloat
    working_side: Positive
    formats: tuple[str, ...]


@dataclass(frozen=True)
class OcrSettings:
    """OCR backend and filters."""

    backend: OcrBackend
    min_confidence: Share
    min_height: Annotated[int, Range(0)]
    florence2_model: str
    max_new_tokens: Positive


@dataclass(frozen=True)
class DetextSettings:
    """Text removal."""

    widen_px: Annotated[int, Range(0)]
    inpaint_radius: Positive
    method: Literal["ns", "telea"]


@dataclass(frozen=True)
class CaptionSettings:
    """Scene understanding backend."""

    backend: CaptionBackend
    blip2_model: str
    florence2_model: str
    questions: tuple[str, ...]
    max_new_tokens: Positive


@dataclass(frozen=True)
class SynthesizeSettings:
    """Script writer backend; the openai backend's key comes from OPENAI_API_KEY."""

    backend: SynthesizeBackend
    base_url: str
    model: str
    timeout_s: PositiveFloat


@dataclass(frozen=True)
class GenerateSettings:
    """Frame generator backend and defaults."""

    backend: GenerateBackend
    frames: Annotated[int, Range(*FRAMES)]
    fps: Annotated[int, Range(*FPS)]
    motion: Motion
    camera: Camera | None  # "" in the file: the script chooses
    t2v_model: str
    i2v_model: str
    i2v_family: I2vFamily
    steps: Annotated[int, Range(0)]  # 0: the model's own
    guidance: Annotated[float, Range(0.0)]  # 0: the model's own
    negative_prompt: str
    quality_phrases: tuple[str, ...]
    lora_weight: Annotated[float, Range(0.0)]
    watermark_band: Annotated[float, Range(0.0, MAX_WATERMARK_BAND)]
    max_side: Annotated[int, Range(0)]  # 0: the model's own
    clip_model: str  # clipguided: a CLIPModel (hub id in the local cache, or a folder)
    clip_model2: str  # clipguided: "" or a second CLIPModel, alternated per iteration
    clip_preset: ClipPreset
    clip_temperature: Annotated[float, Range(0.0, 100.0)]  # stability weight 4 - 4T/100 and the noise between frames
    clip_negative_prompt: str  # pushed away from ("Words and text." suits memes)
    clip_anchor: Annotated[float, Range(0.0)]  # L1 to the meme itself, so the subject stays itself
    clip_side: Annotated[int, Range(0)]  # px: the canvas's longer side while optimising; 0: the preset's


@dataclass(frozen=True)
class PostprocessSettings:
    """Caption restoring."""

    restore_caption: bool


@dataclass(frozen=True)
class EncodeSettings:
    """Output format and budget."""

    format: Format
    size: Annotated[int, Range(*SIZE)]
    max_bytes: Positive
    colors: Annotated[int, Range(2, 256)]


@dataclass(frozen=True)
class RuntimeSettings:
    """Where and how the model-backed stages run (read by engine.runtime.gpu)."""

    device: Device
    dtype: Dtype
    cpu_offload: bool
    vae_slicing: bool
    vae_tiling: bool


@dataclass(frozen=True)
class EngineSettings:
    """The HTTP service."""

    url: str
    host: str
    port: Annotated[int, Range(1, 65535)]
    max_body_bytes: Positive
    sse_keepalive_s: PositiveFloat
    body_timeout_s: PositiveFloat
    body_min_rate: Positive
    decode_memory_mb: Positive
    decode_wait_s: PositiveFloat


@dataclass(frozen=True)
class StorageSettings:
    """Where history, limits and results live."""

    url: str
    retention_days: PositiveFloat
    sweep_interval_s: PositiveFloat


@dataclass(frozen=True)
class QueueSettings:
    """Job delivery: in this process (local) or through Procrastinate to `makeitmove worker` processes."""

    backend: QueueBackend
    max_attempts: Positive
    heartbeat_s: PositiveFloat
    stalled_after_s: PositiveFloat


@dataclass(frozen=True)
class UserLimits:
    """Per-user rate limits."""

    jobs: Positive
    window_s: Positive
    concurrent: Positive


@dataclass(frozen=True)
class ChatLimits:
    """Per-chat rate limits."""

    jobs: Positive
    window_s: Positive


@dataclass(frozen=True)
class LimitsSettings:
    """Rate limits; admins are exempt."""

    queue_max: Positive
    user: UserLimits
    chat: ChatLimits


@dataclass(frozen=True)
class CheckpointSettings:
    """The LoRA checkpoint registry."""

    dir: str


@dataclass(frozen=True)
class TrainingSettings:
    """Datasets, LoRA training and one-shot tuning (`makeitmove dataset build`, `train`, `tune`, /remix)."""

    work_dir: str  # caches (latents, text embeddings), resumable training states, tuned-GIF checkpoints
    datasets_dir: str  # the API's and bots' trainings name a dataset folder under this, never a path
    fps: Annotated[int, Range(0, FPS[1])]  # clips are re-timed to this; 0: the model's own
    frames: Annotated[int, Range(*FRAMES)]  # frames per training clip (rounded to the family's bucket)
    side: Positive  # px: a training clip's longer side (rounded to the family's multiple)
    trigger: str  # "" or a word put in front of every training caption
    base: TrainBase
    rank: Positive
    alpha: Annotated[int, Range(0)]  # 0: alpha = rank
    steps: Positive
    lr: PositiveFloat
    warmup: Annotated[int, Range(0)]
    checkpoint_every: Positive  # steps between resumable training states
    tune_steps: Positive
    tune_rank: Positive
    tune_frames: Annotated[int, Range(*FRAMES)]
    noise_prior: Share  # /remix: how much of the source clip's inverted noise starts the sampling
    max_clip_frames: Positive  # frames decoded from one clip at most (a longer clip is cut)


@dataclass(frozen=True)
class WebSettings:
    """[web]: the admin dashboard's sign-in and uploads."""

    session_hours: PositiveFloat
    signin_attempts: Positive
    signin_window_s: PositiveFloat
    max_upload_mb: Positive


@dataclass(frozen=True)
class GallerySettings:
    """[gallery]: the results people shared."""

    public: bool
    page_size: Annotated[int, Range(1, 200)]


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
    training: TrainingSettings
    web: WebSettings
    gallery: GallerySettings


def read_config(path: str | Path | None = None) -> dict[str, Any]:
    """The shipped config.toml (every section, the bots' too), with the file at `path` laid over it.

    The file may be partial: keys it lacks keep the shipped values; a key the shipped file lacks is an error.
    """
    raw = tomllib.loads(resources.files("engine").joinpath("config.toml").read_text("utf-8"))
    if path is None:
        return raw
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    try:
        overlay = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return merge(raw, overlay, prefix="")


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the shipped defaults, then overlay the file at `path` (which may be partial)."""
    return build(Settings, read_config(path), prefix="", partial=True)


def replace(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """Return a copy with some keys changed, validated like a config file: replace(s, encode={"size": 320})."""
    raw = merge(as_raw(settings), sections, prefix="")
    return build(Settings, raw, prefix="")


def as_raw(settings: Any) -> dict[str, Any]:
    """Settings back to the shape of the TOML file (None written as "", as the file spells it)."""
    raw = dataclasses.asdict(settings)

    def unnone(table: dict[str, Any]) -> dict[str, Any]:
        return {k: unnone(v) if isinstance(v, dict) else ("" if v is None else v) for k, v in table.items()}

    return unnone(raw)
