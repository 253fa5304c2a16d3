"""The three model families a LoRA is trained for: loading, encoding a clip and its caption, and the loss.

t2v (ModelScope's 3D UNet): epsilon prediction on latents noised by the pipeline's own schedule, as a DDPM.
ltx and wan (transformers): flow matching, x_t = (1 - σ) x0 + σ n with target n - x0 and timestep σ * 1000,
as their pipelines call them. Both image-to-video pipelines keep the first latent frame clean (the picture)
while they denoise the rest, so training does the same: that frame goes in clean at timestep 0 (LTX's
conditioning mask, Wan 2.2's expand_timesteps) and is left out of the loss.
The VAE, tokenizer and text encoder come from the same pipeline classes production loads, without the denoiser.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.backends.video.resident import DENOISER, model_fingerprint
from engine.config import Settings
from engine.errors import ConfigError, UserError
from engine.runtime.gpu import model_path, quiet_loading

FAMILIES = ("t2v", "ltx", "wan")
PREFIX = DENOISER  # the denoiser's subfolder and its LoRA keys' prefix: "unet" or "transformer"
_PROJECTIONS = r"attn[12]\.(?:to_q|to_k|to_v|to_out\.0)"
TARGETS = {
    ("t2v", "all"): re.compile(
        rf"(?:^|\.)(?:attentions|temp_attentions)\.\d+\.transformer_blocks\.\d+\.{_PROJECTIONS}$"
    ),
    ("t2v", "temporal"): re.compile(rf"(?:^|\.)temp_attentions\.\d+\.transformer_blocks\.\d+\.{_PROJECTIONS}$"),
    ("ltx", "all"): re.compile(rf"^transformer_blocks\.\d+\.{_PROJECTIONS}$"),
    ("wan", "all"): re.compile(rf"^blocks\.\d+\.{_PROJECTIONS}$"),
}
TEXT_TOKENS = {"ltx": 256, "wan": 512}  # the pipelines' max_sequence_length defaults
VAE_FRAMES = 8  # t2v encodes frame by frame: this many at a time


def family_of_base(settings: Settings, base: str) -> tuple[str, str]:
    """(family, model folder) of the configured t2v or i2v model."""
    from engine.backends.video.i2v import family_of

    if base == "t2v":
        return "t2v", model_path(settings.generate.t2v_model, key="generate.t2v_model")
    if base != "i2v":
        raise ValueError(f"base must be 't2v' or 'i2v', got {base!r}")
    path = model_path(settings.generate.i2v_model, key="generate.i2v_model")
    return family_of(path, settings.generate.i2v_family), path


def base_fingerprint(path: str | Path, family: str | None = None) -> str:
    """The base model's short fingerprint, as the resident video model checks it before loading a LoRA.

    Over the denoiser's config.json (its architecture): the module names and shapes the LoRA adapts follow
    from it, so a file for another base (or another size of the same one) is told apart without any weight read.
    """
    if family is None:
        family = "t2v" if (Path(path) / PREFIX["t2v"]).is_dir() else "ltx"  # ltx and wan share the subfolder
    fingerprint = model_fingerprint(path, family)
    if not fingerprint:
        raise ConfigError(f"cannot read the denoiser's config.json in the model folder {path}")
    return fingerprint


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return value


class Family:
    """One model family in one folder: what training needs from each of its components."""

    def __init__(self, name: str, path: str) -> None:
        if name not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {name!r}")
        self.name, self.path = name, path
        self.denoiser_config = _read_json(Path(path) / PREFIX[name] / "config.json")
        self.scheduler_config = _read_json(Path(path) / "scheduler" / "scheduler_config.json")
        if name == "wan" and not _read_json(Path(path) / "model_index.json").get("expand_timesteps"):
            raise UserError(
                "Training supports Wan 2.2 TI2V (first-frame latent conditioning) only; this Wan model conditions "
                "on the picture another way.",
                code="unsupported_model",
            )  # fmt: skip
        self._ddpm: Any = None
        if name == "t2v":
            from diffusers import DDPMScheduler

            self._ddpm = DDPMScheduler.from_config(self.scheduler_config)

    # 1. components
    def load_encoders(self, device: torch.device, dtype: torch.dtype) -> Any:
        """The family's pipeline without its denoiser (VAE, tokenizer, text encoder), on `device`, frozen."""
        quiet_loading()
        from diffusers import LTXConditionPipeline, TextToVideoSDPipeline, WanImageToVideoPipeline

        classes: dict[str, Any] = {"t2v": TextToVideoSDPipeline, "ltx": LTXConditionPipeline}
        pipe = classes.get(self.name, WanImageToVideoPipeline).from_pretrained(
            self.path, **{PREFIX[self.name]: None}, dtype=dtype
        )
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                component.requires_grad_(False)
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)

    def load_denoiser(self, dtype: torch.dtype) -> Any:
        """The UNet or transformer, with diffusers' PEFT adapter methods, in `dtype` on the CPU."""
        quiet_loading()
        if self.name == "t2v":
            from engine.backends.video.t2v import lora_unet_class

            model_class: Any = lora_unet_class()
        elif self.name == "ltx":
            from diffusers import LTXVideoTransformer3DModel as model_class
        else:
            from diffusers import WanTransformer3DModel as model_class
        return model_class.from_pretrained(self.path, subfolder=PREFIX[self.name], dtype=dtype)

    def check_which(self, which: str) -> re.Pattern[str]:
        """The pattern of the layers `which` names ("all" or "temporal"), or a sentence when the family lacks them."""
        if which not in ("all", "temporal"):
            raise ValueError(f"which must be 'all' or 'temporal', got {which!r}")
        pattern = TARGETS.get((self.name, which))
        if pattern is None:
            raise UserError(
                f"Only the t2v model has temporal attention to tune on its own; the {self.name} model trains "
                "all its attention.",
                code="unsupported_model",
            )  # fmt: skip
        return pattern

    def targets(self, denoiser: Any, which: str = "all") -> list[str]:
        """The exact names of the Linear layers a LoRA adapts: attention projections ("temporal": t2v's only)."""
        pattern = self.check_which(which)
        names = [n for n, m in denoiser.named_modules() if isinstance(m, torch.nn.Linear) and pattern.search(n)]
        if not names:
            raise UserError(
                f"The {self.name} model has no attention layers a LoRA can adapt.", code="unsupported_model"
            )
        return names

    # 2. encoding, once per clip (cached by the trainer)
    @torch.no_grad()
    def encode(self, pipe: Any, clip: np.ndarray, caption: str, fps: float, label: str) -> dict[str, torch.Tensor]:
        """A clip (N, H, W, 3) uint8 and its caption -> the latents and text tensors one training step needs."""
        self._check(pipe, clip, label)
        device, dtype = pipe.vae.device, pipe.vae.dtype
        pixels = torch.from_numpy(np.ascontiguousarray(clip)).to(device).permute(0, 3, 1, 2).to(dtype) / 127.5 - 1
        out: dict[str, torch.Tensor] = {}
        if self.name == "t2v":
            latents = torch.cat([pipe.vae.encode(chunk).latent_dist.mean for chunk in pixels.split(VAE_FRAMES)])
            out["latents"] = (latents * pipe.vae.config.scaling_factor).permute(1, 0, 2, 3)[None]
            out["embeds"] = pipe.encode_prompt(caption, device, 1, False)[0]
        elif self.name == "ltx":
            latents = pipe.vae.encode(pixels.permute(1, 0, 2, 3)[None]).latent_dist.mode()
            out["latents"] = pipe._normalize_latents(
                latents, pipe.vae.latents_mean, pipe.vae.latents_std, pipe.vae.config.scaling_factor
            )
            out["embeds"], out["mask"], _, _ = pipe.encode_prompt(
                caption, do_classifier_free_guidance=False, max_sequence_length=TEXT_TOKENS["ltx"], device=device,
                dtype=dtype,
            )  # fmt: skip
            out["coords"] = self._ltx_coords(pipe, out["latents"].shape, fps, device)
        else:
            latents = pipe.vae.encode(pixels.permute(1, 0, 2, 3)[None]).latent_dist.mode()
            config = pipe.vae.config
            mean = torch.tensor(config.latents_mean, device=device, dtype=latents.dtype).view(1, -1, 1, 1, 1)
            std = torch.tensor(config.latents_std, device=device, dtype=latents.dtype).view(1, -1, 1, 1, 1)
            out["latents"] = (latents - mean) / std
            embeds = pipe.encode_prompt(
                caption, do_classifier_free_guidance=False, max_sequence_length=TEXT_TOKENS["wan"], device=device,
                dtype=dtype,
            )[0]  # fmt: skip
            # zero-padded to 512 tokens by the pipeline: stored without the padding, put back at training time
            used = int(embeds[0].abs().sum(-1).nonzero().max().item()) + 1 if embeds.abs().sum() > 0 else 1
            out["embeds"] = embeds[:, :used]
        out["latents"] = out["latents"].float()
        return {key: value.cpu().contiguous() for key, value in out.items()}

    def _check(self, pipe: Any, clip: np.ndarray, label: str) -> None:
        """Refuse a clip whose frame count or size the family's VAE and patches can't take, with a sentence."""
        if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
            raise UserError(f"The clip {label} isn't (frames, height, width, 3) uint8 RGB.", code="bad_dataset")
        frames, height, width = clip.shape[:3]
        if self.name == "t2v":
            multiple, temporal = pipe.vae_scale_factor, 1  # the 3D UNet pads odd latent sizes itself
        elif self.name == "ltx":
            multiple = pipe.vae_spatial_compression_ratio * self.denoiser_config["patch_size"]
            temporal = pipe.vae_temporal_compression_ratio
        else:
            multiple = pipe.vae_scale_factor_spatial * self.denoiser_config["patch_size"][1]
            temporal = pipe.vae_scale_factor_temporal
        if height % multiple or width % multiple or (frames - 1) % temporal:
            frames_rule = f"{temporal}k+1 frames and " if temporal > 1 else ""
            raise UserError(
                f"The clip {label} is {frames} frames of {width}x{height}, but the {self.name} model needs "
                f"{frames_rule}sides that are multiples of {multiple}; build the dataset for this model.",
                code="bad_dataset",
            )

    def _ltx_coords(self, pipe: Any, shape: torch.Size, fps: float, device: torch.device) -> torch.Tensor:
        """The token positions LTXConditionPipeline gives the transformer: pixel units, seconds in time."""
        _, _, frames, height, width = shape
        ids = pipe._prepare_video_ids(
            1, frames, height, width, patch_size=self.denoiser_config["patch_size"],
            patch_size_t=self.denoiser_config["patch_size_t"], device=device,
        )  # fmt: skip
        coords = pipe._scale_video_ids(
            ids, scale_factor=pipe.vae_spatial_compression_ratio, scale_factor_t=pipe.vae_temporal_compression_ratio,
            frame_index=0, device=device,
        ).float()  # fmt: skip
        coords[:, 0] = coords[:, 0] * (1.0 / fps)
        return coords

    # 3. the loss
    def draw(self, generator: torch.Generator) -> float:
        """A noise level in (0, 1): uniform DDPM timesteps (t2v); logit-normal σ, shifted as the scheduler is."""
        if self.name == "t2v":
            return float(torch.rand((), generator=generator))
        sigma = float(torch.sigmoid(torch.randn((), generator=generator)))
        shift = float(self.scheduler_config.get("shift", 1.0))
        if not self.scheduler_config.get("use_dynamic_shifting", False) and shift != 1.0:
            sigma = shift * sigma / (1 + (shift - 1) * sigma)
        return sigma

    def loss(self, denoiser: Any, sample: dict[str, torch.Tensor], noise: torch.Tensor, level: float) -> torch.Tensor:
        """The training loss of one clip (tensors on the denoiser's device) at noise `level` from draw()."""
        if self.name == "t2v":
            return self._epsilon_loss(denoiser, sample, noise, level)
        return self._flow_loss(denoiser, sample, noise, level)

    def _epsilon_loss(self, unet: Any, sample: dict[str, torch.Tensor], noise: torch.Tensor, level: float) -> Any:
        ddpm = self._ddpm
        count = ddpm.config.num_train_timesteps
        x0 = sample["latents"]
        timestep = torch.tensor([min(count - 1, int(level * count))], device=x0.device)
        noisy = ddpm.add_noise(x0, noise, timestep)
        pred = unet(noisy.to(unet.dtype), timestep, encoder_hidden_states=sample["embeds"].to(unet.dtype)).sample
        target = noise if ddpm.config.prediction_type == "epsilon" else ddpm.get_velocity(x0, noise, timestep)
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    def _flow_loss(self, model: Any, sample: dict[str, torch.Tensor], noise: torch.Tensor, sigma: float) -> Any:
        x0 = sample["latents"]
        _, channels, frames, height, width = x0.shape
        noisy = (1 - sigma) * x0 + sigma * noise
        target = noise - x0
        moving = torch.ones(1, 1, frames, height, width, device=x0.device)  # 0 on the clean first latent frame
        moving[:, :, 0] = 0
        noisy = moving * noisy + (1 - moving) * x0
        embeds = sample["embeds"].to(model.dtype)
        if self.name == "ltx":
            from diffusers import LTXConditionPipeline

            size, size_t = self.denoiser_config["patch_size"], self.denoiser_config["patch_size_t"]
            tokens = LTXConditionPipeline._pack_latents(noisy, size, size_t)
            target = LTXConditionPipeline._pack_latents(target, size, size_t)
            weight = LTXConditionPipeline._pack_latents(moving, size, size_t)[..., 0]  # (1, tokens)
            pred = model(
                hidden_states=tokens.to(model.dtype), encoder_hidden_states=embeds, timestep=weight * sigma * 1000.0,
                encoder_attention_mask=sample["mask"], video_coords=sample["coords"], return_dict=False,
            )[0]  # fmt: skip
            errors = (pred.float() - target.float()).pow(2).mean(-1)
            return (errors * weight).sum() / weight.sum().clamp(min=1)
        _, size_h, size_w = self.denoiser_config["patch_size"]
        padded = torch.zeros(1, TEXT_TOKENS["wan"], embeds.shape[-1], device=embeds.device, dtype=embeds.dtype)
        padded[:, : embeds.shape[1]] = embeds[:, : TEXT_TOKENS["wan"]]
        timestep = (moving[0, 0][:, ::size_h, ::size_w] * sigma * 1000.0).flatten()[None]
        pred = model(
            hidden_states=noisy.to(model.dtype), timestep=timestep, encoder_hidden_states=padded, return_dict=False
        )[0]  # fmt: skip
        errors = (pred.float() - target.float()).pow(2) * moving
        return errors.sum() / (moving.sum() * channels).clamp(min=1)
