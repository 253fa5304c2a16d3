"""Tiny random video models, saved like the real ones, so the t2v and i2v chains run on a CPU in seconds.

Each builder writes a folder that the production `from_pretrained` path loads exactly as it loads
the hub's models: the same pipeline classes, components and tokenizer files, only a few thousand
seeded random weights. The tokenizers are built in code (a byte-level BPE for CLIP, a Unigram
vocabulary for T5/UMT5), because nothing may be downloaded. Their output is noise, by design.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

# A pipeline's sample size and the LoRA files' rank: small enough to run in milliseconds per step.
SAMPLE = 32
LORA_RANK = 2
T5_WIDTH = 16
CLIP_WIDTH = 16


def make_tiny_t2v(directory: str | Path, *, seed: int = 0) -> Path:
    """A TextToVideoSDPipeline folder: 3D UNet, KL VAE, CLIP text encoder and tokenizer, DDIM."""
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet3DConditionModel(
        block_out_channels=(8, 8), layers_per_block=1, sample_size=SAMPLE // 2, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=CLIP_WIDTH, attention_head_dim=4, norm_num_groups=2,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(8, 8), in_channels=3, out_channels=3, latent_channels=4, sample_size=SAMPLE,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=2,
    )  # fmt: skip
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False, set_alpha_to_one=False
    )
    tokenizer = clip_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=CLIP_WIDTH,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=1,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            projection_dim=CLIP_WIDTH,
        )  # fmt: skip
    )
    pipe = TextToVideoSDPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler
    )
    return _save(pipe, directory)


def make_tiny_ltx(directory: str | Path, *, seed: int = 0) -> Path:
    """An LTXConditionPipeline folder: LTX transformer and VAE, T5 encoder and tokenizer, flow matching."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, num_layers=1, caption_channels=T5_WIDTH,
    )  # fmt: skip
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, timestep_conditioning=False,
        patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )  # fmt: skip
    tokenizer = t5_tokenizer()
    pipe = LTXConditionPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=_t5(tokenizer, umt5=False),
        tokenizer=tokenizer, transformer=transformer,
    )  # fmt: skip
    return _save(pipe, directory)


def make_tiny_wan(directory: str | Path, *, seed: int = 0) -> Path:
    """A Wan 2.2 TI2V-style WanImageToVideoPipeline folder: no image encoder, the first frame as latent condition."""
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=16, out_channels=16,
        text_dim=T5_WIDTH, freq_dim=32, ffn_dim=16, num_layers=1, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    )  # fmt: skip
    tokenizer = t5_tokenizer()
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=_t5(tokenizer, umt5=True), vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0), transformer=transformer, expand_timesteps=True,
    )  # fmt: skip
    return _save(pipe, directory)


def make_tiny_lora(path: str | Path, base: str, *, seed: int, scale: float = 0.5) -> Path:
    """A LoRA `.safetensors` file for a tiny model (base "t2v", "ltx" or "wan"), in diffusers' PEFT key format."""
    targets = {"t2v": "unet", "ltx": "transformer", "wan": "transformer"}
    if base not in targets:
        raise ValueError(f"base must be one of {tuple(targets)}, got {base!r}")
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for module, (out_dim, in_dim) in _attention_projections(base).items():
        prefix = f"{targets[base]}.{module}"
        tensors[f"{prefix}.lora_A.weight"] = torch.randn(LORA_RANK, in_dim, generator=generator) * scale
        tensors[f"{prefix}.lora_B.weight"] = torch.randn(out_dim, LORA_RANK, generator=generator) * scale
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt", "base_model": f"makeitmove-tiny-{base}"})
    return path


def _attention_projections(base: str) -> dict[str, tuple[int, int]]:
    """The tiny model's attention projections (module path -> (out, in)) that the LoRA files adapt."""
    if base == "t2v":
        from diffusers import UNet3DConditionModel

        model: Any = UNet3DConditionModel(
            block_out_channels=(8, 8), layers_per_block=1, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), cross_attention_dim=CLIP_WIDTH,
            attention_head_dim=4, norm_num_groups=2,
        )  # fmt: skip
    elif base == "ltx":
        from diffusers import LTXVideoTransformer3DModel

        model = LTXVideoTransformer3DModel(
            in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
            num_layers=1, caption_channels=T5_WIDTH,
        )  # fmt: skip
    else:
        from diffusers import WanTransformer3DModel

        model = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=16, out_channels=16,
            text_dim=T5_WIDTH, freq_dim=32, ffn_dim=16, num_layers=1, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
        )  # fmt: skip
    found: dict[str, tuple[int, int]] = {}
    for name, layer in model.named_modules():
        if isinstance(layer, torch.nn.Linear) and name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v"):
            found[name] = (layer.out_features, layer.in_features)
    return found


def clip_tokenizer() -> Any:
    """A byte-level BPE CLIP tokenizer: every byte a token (with and without the end-of-word mark), no merges."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(symbol, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def t5_tokenizer() -> Any:
    """A Unigram T5 tokenizer over letters, digits and a few words (what T5TokenizerFast and UMT5 load)."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    words = ["the", "a", "cat", "dog", "man", "video", "camera", "zoom", "pan", "smooth", "high", "quality"]
    pieces += [("\u2581" + w, -3.0) for w in words]
    pieces += [(c, -5.0) for c in string.ascii_lowercase + string.digits + string.punctuation]
    pieces += [("\u2581" + c, -4.0) for c in string.ascii_lowercase]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=128)


def _t5(tokenizer: Any, *, umt5: bool) -> Any:
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    size = len(tokenizer)
    values: dict[str, Any] = dict(
        vocab_size=size, d_model=T5_WIDTH, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    if umt5:
        return UMT5EncoderModel(UMT5Config(**values))
    return T5EncoderModel(T5Config(**values))


def _save(pipe: Any, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(directory, safe_serialization=True)
    # Saved unchanged, so the folder reads like the hub's; say what it is for whoever finds it.
    note = {"makeitmove": "tiny random model for tests and demos; its frames are noise"}
    (directory / "TINY.json").write_text(json.dumps(note) + "\n", "utf-8")
    return directory
