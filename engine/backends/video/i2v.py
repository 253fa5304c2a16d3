"""The i2v backend: an image-to-video model animates the de-texted meme itself, so the result looks like it.

LTX-Video (a distilled checkpoint: few steps) by default, or Wan 2.2 TI2V. Both condition on the
picture as the first frame; the request's motion level and the script's camera move become prompt
phrases, and for LTX the motion level also sets how much noise the picture's conditioning gets
(more noise, more freedom to move away from it).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import cv2
from PIL import Image

from engine.backends.video.prompts import CAMERA_PHRASES, MOTION_PHRASES, prompt_for
from engine.backends.video.resident import (
    Resident,
    StepProgress,
    generation_size,
    generator,
    loaded_key,
    prepare,
    resize_frames,
    run_guarded,
    to_frames,
)  # fmt: skip
from engine.config import GenerateSettings, RuntimeSettings
from engine.errors import ConfigError
from engine.geometry import output_size
from engine.runtime.gpu import model_path, quiet_loading, require_torch, torch_device, torch_dtype
from engine.runtime.models import ModelPool
from engine.types import CleanImage, Frames, ResolvedOptions, SceneInfo, Script

log = logging.getLogger(__name__)


# Each family's own defaults: (steps, guidance, longer side in px), used where the config says 0.
DEFAULTS = {"ltx": (8, 1.0, 768), "wan": (40, 5.0, 1280)}
LTX_SIZE_MULTIPLE = 32  # LTXConditionPipeline refuses other sizes
LTX_CONDITION_NOISE = {"low": 0.025, "high": 0.15}  # noise on the picture's conditioning latents
LTX_DECODE_TIMESTEP = 0.05  # the distilled checkpoints' VAE decodes at this timestep


def family_of(path: str, configured: str) -> str:
    """ "ltx" or "wan": as configured, or read from the model folder's model_index.json."""
    if configured != "auto":
        return configured
    index = Path(path) / "model_index.json"
    try:
        name = str(json.loads(index.read_text("utf-8")).get("_class_name", ""))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {index} to tell the i2v model's family: {exc}") from None
    if name.startswith("LTX"):
        return "ltx"
    if name.startswith("Wan"):
        return "wan"
    raise ConfigError(
        f"the i2v model at {path} is a {name or 'unknown pipeline'}, neither LTX-Video nor Wan; "
        "set generate.i2v_family if it is one of them"
    )


def animate(
    settings: GenerateSettings, runtime: RuntimeSettings, resident: Resident, clean: CleanImage, script: Script,
    options: ResolvedOptions, progress: StepProgress | None = None,
) -> Frames:  # fmt: skip
    """Animate the clean picture with the image-to-video model, at the picture's aspect and the output size."""

    # 1. the resident model, with the job's LoRA checkpoint (or none)
    path = model_path(settings.i2v_model, key="generate.i2v_model")
    family = family_of(path, settings.i2v_family)
    pipe = resident.get(loaded_key(family, path, runtime), lambda: load(family, path, runtime))
    resident.use_checkpoint(options.checkpoint, settings.lora_weight)

    # 2. sizes the model needs: spatial multiples near the picture's aspect, 1 + a multiple of its
    #    temporal compression in frames (the extra frames are dropped)
    steps, guidance, side = DEFAULTS[family]
    steps, guidance, side = settings.steps or steps, settings.guidance or guidance, settings.max_side or side
    if family == "ltx":
        multiple = max(LTX_SIZE_MULTIPLE, pipe.vae_spatial_compression_ratio * pipe.transformer_spatial_patch_size)
        temporal = pipe.vae_temporal_compression_ratio
    else:
        multiple = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
        temporal = pipe.vae_scale_factor_temporal
    count = temporal * math.ceil((options.frames - 1) / temporal) + 1
    height, width = clean.pixels.shape[:2]
    gen_w, gen_h = generation_size(width, height, side, multiple)
    image = Image.fromarray(cv2.resize(clean.pixels, (gen_w, gen_h), interpolation=cv2.INTER_AREA))
    prompt = prompt_for(
        script.motion_prompt, settings.quality_phrases, MOTION_PHRASES[options.motion],
        CAMERA_PHRASES.get(script.camera, ""), tokenizer=getattr(pipe, "tokenizer", None),
    )  # fmt: skip

    # 3. denoise; the progress callback may raise to cancel between steps
    def step_done(_pipe: Any, step: int, _timestep: Any, _tensors: dict[str, Any]) -> dict[str, Any]:
        if progress is not None:
            progress((step + 1) / steps)
        return {}

    common = dict(
        image=image, prompt=prompt, negative_prompt=settings.negative_prompt or None, height=gen_h, width=gen_w,
        num_frames=count, num_inference_steps=steps, guidance_scale=guidance, generator=generator(options.seed),
        output_type="np", callback_on_step_end=step_done,
    )  # fmt: skip
    if family == "ltx":
        common.update(
            frame_rate=options.fps, image_cond_noise_scale=LTX_CONDITION_NOISE[options.motion],
            decode_timestep=LTX_DECODE_TIMESTEP,
        )  # fmt: skip
    log.info("i2v %s: %d frames at %dx%d, %d steps: %r", family, count, gen_w, gen_h, steps, prompt)
    video = run_guarded(lambda: pipe(**common).frames, f"i2v {family}")

    # 4. the asked-for frames at the output size and the picture's aspect
    frames = to_frames(video)[: options.frames]
    out_w, out_h = output_size(width, height, options.size)
    return Frames(frames=resize_frames(frames, out_w, out_h), fps=float(options.fps), motion=f"i2v-{family}")


def load(family: str, path: str, runtime: RuntimeSettings) -> Any:
    """The family's image-to-video pipeline from `path`, placed as [runtime] says."""
    from diffusers import LTXConditionPipeline, WanImageToVideoPipeline

    quiet_loading()
    device = torch_device(runtime)
    pipeline_class: Any = LTXConditionPipeline if family == "ltx" else WanImageToVideoPipeline
    pipe = pipeline_class.from_pretrained(path, dtype=torch_dtype(runtime, device))
    return prepare(pipe, runtime)


class ImageToVideo:
    """generate = "i2v": an image-to-video model (LTX-Video or Wan 2.2) animates the de-texted meme."""

    def __init__(self, settings: GenerateSettings, models: ModelPool) -> None:
        # Checked when the pipeline is built, as the caption models are: a missing model stops `serve`
        # at start with the `hf download` sentence, instead of failing every job with a traceback.
        require_torch("i2v generate backend")
        model_path(settings.i2v_model, key="generate.i2v_model")
        self.settings = settings
        self.runtime = models.runtime
        self.resident = models.shared("video", Resident)  # one video model per process, shared with the other

    def __call__(
        self, clean: CleanImage, scene: SceneInfo, script: Script, options: ResolvedOptions,
        progress: StepProgress | None = None,
    ) -> Frames:  # fmt: skip
        """The frames for the script, at the output size and the picture's aspect."""
        return animate(self.settings, self.runtime, self.resident, clean, script, options, progress)
