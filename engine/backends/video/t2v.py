"""The t2v backend: a text-to-video diffusion model (ModelScope/VideoFusion) writes the motion from the script.

The model sees only words (the script's motion prompt and the configured quality phrases), so the
meme's look comes back in postprocess with its caption; the job's LoRA checkpoint steers the style.
Its training videos carried a stock-footage watermark near the bottom, which it learned to draw: a
configured band there is inpainted once on the frames' temporal median, and each frame gets that
fill plus its own difference from the median, so the watermark (static) goes and the motion stays.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import cv2
import numpy as np

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
from engine.geometry import output_size
from engine.runtime.gpu import model_path, quiet_loading, require_torch, torch_device, torch_dtype
from engine.runtime.models import ModelPool
from engine.types import CleanImage, Frames, ResolvedOptions, SceneInfo, Script

log = logging.getLogger(__name__)

DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 9.0
DEFAULT_SIDE = 256  # the model was trained on 256 x 256 clips
SIZE_MULTIPLE = 8  # TextToVideoSDPipeline refuses other sizes
FEATHER_ROWS = 4  # the fill fades into the frame over this many rows above the band


def animate(
    settings: GenerateSettings, runtime: RuntimeSettings, resident: Resident, clean: CleanImage, script: Script,
    options: ResolvedOptions, progress: StepProgress | None = None,
) -> Frames:  # fmt: skip
    """Generate the script's motion with the text-to-video model, at the picture's aspect and the output size."""
    # 1. the resident model, with the job's LoRA checkpoint (or none)
    path = model_path(settings.t2v_model, key="generate.t2v_model")
    pipe = resident.get(loaded_key("t2v", path, runtime), lambda: load(path, runtime))
    resident.use_checkpoint(options.checkpoint, settings.lora_weight)

    # 2. the size the model needs, near the picture's aspect
    height, width = clean.pixels.shape[:2]
    # the UNet halves the latents once per block after the first; the pipeline also wants multiples of 8
    multiple = max(SIZE_MULTIPLE, pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1))
    gen_w, gen_h = generation_size(width, height, settings.max_side or DEFAULT_SIDE, multiple)
    steps = settings.steps or DEFAULT_STEPS
    prompt = prompt_for(
        script.motion_prompt, settings.quality_phrases, MOTION_PHRASES[options.motion],
        CAMERA_PHRASES.get(script.camera, ""), tokenizer=getattr(pipe, "tokenizer", None),
    )  # fmt: skip

    # 3. denoise; the progress callback may raise to cancel between steps
    def step_done(step: int, _timestep: Any, _latents: Any) -> None:
        if progress is not None:
            progress((step + 1) / steps)

    log.info("t2v: %d frames at %dx%d, %d steps: %r", options.frames, gen_w, gen_h, steps, prompt)
    video = run_guarded(
        lambda: pipe(
            prompt=prompt, negative_prompt=settings.negative_prompt or None, height=gen_h, width=gen_w,
            num_frames=options.frames, num_inference_steps=steps, guidance_scale=settings.guidance or DEFAULT_GUIDANCE,
            generator=generator(options.seed), output_type="np", callback=step_done,
        ).frames,
        "t2v",
    )  # fmt: skip

    # 4. watermark out, then the output size at the picture's aspect
    frames = remove_watermark(to_frames(video), settings.watermark_band)
    out_w, out_h = output_size(width, height, options.size)
    return Frames(frames=resize_frames(frames, out_w, out_h), fps=float(options.fps), motion="t2v")


def load(path: str, runtime: RuntimeSettings) -> Any:
    """The TextToVideoSDPipeline in `path`, its UNet able to take LoRA adapters, placed as [runtime] says."""
    from diffusers import TextToVideoSDPipeline

    quiet_loading()
    device = torch_device(runtime)
    dtype = torch_dtype(runtime, device)
    unet = lora_unet_class().from_pretrained(path, subfolder="unet", dtype=dtype)
    pipe = TextToVideoSDPipeline.from_pretrained(path, unet=unet, dtype=dtype)
    return prepare(pipe, runtime)


@functools.cache
def lora_unet_class() -> Any:
    """UNet3DConditionModel with diffusers' PEFT adapter methods, which it lacks since diffusers 0.32.

    Without them `load_lora_weights` fails on this UNet; the 2D UNet has the same mixin.
    """
    from diffusers import UNet3DConditionModel
    from diffusers.loaders import PeftAdapterMixin

    class LoraUNet3DConditionModel(UNet3DConditionModel, PeftAdapterMixin):
        """The 3D UNet with load_lora_adapter, set_adapters and unload_lora."""

    return LoraUNet3DConditionModel


def remove_watermark(frames: np.ndarray, band: float) -> np.ndarray:
    """Inpaint the bottom `band` of the frames the same way on every frame, keeping each frame's own motion."""
    if band <= 0:
        return frames
    count, height, width, _ = frames.shape
    rows = max(1, round(band * height))
    top = height - rows
    mask = np.zeros((height, width), np.uint8)
    mask[top:] = 255
    median = np.median(frames, axis=0).astype(np.uint8)
    fill = cv2.inpaint(median, mask, 3, cv2.INPAINT_TELEA).astype(np.int16)
    # the watermark is static, so it lives in the median; what moves is in each frame's difference from it
    motion = frames[:, top:].astype(np.int16) - median[None, top:].astype(np.int16)
    band_pixels = np.clip(fill[None, top:] + motion, 0, 255)
    out = frames.copy()
    ramp = np.minimum(1.0, (np.arange(rows, dtype=np.float32) + 1) / FEATHER_ROWS)[None, :, None, None]
    out[:, top:] = np.round(band_pixels * ramp + frames[:, top:] * (1 - ramp)).astype(np.uint8)
    log.debug("watermark band of %d rows inpainted on %d frames", rows, count)
    return out


class TextToVideo:
    """generate = "t2v": a text-to-video model (ModelScope/VideoFusion) writes the motion from the script."""

    def __init__(self, settings: GenerateSettings, models: ModelPool) -> None:
        # Checked when the pipeline is built, as the caption models are: a missing model stops `serve`
        # at start with the `hf download` sentence, instead of failing every job with a traceback.
        require_torch("t2v generate backend")
        model_path(settings.t2v_model, key="generate.t2v_model")
        self.settings = settings
        self.runtime = models.runtime
        self.resident = models.shared("video", Resident)  # one video model per process, shared with the other

    def __call__(
        self, clean: CleanImage, scene: SceneInfo, script: Script, options: ResolvedOptions,
        progress: StepProgress | None = None,
    ) -> Frames:  # fmt: skip
        """The frames for the script, at the output size and the picture's aspect."""
        return animate(self.settings, self.runtime, self.resident, clean, script, options, progress)
