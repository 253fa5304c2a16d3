"""Tiny random checkpoints for every model backend, and configs that select them (`makeitmove models make-tiny`).

`makeitmove animate meme.jpg --config DIR/tiny.toml` then runs the whole model chain (BLIP-2 VQA,
text-to-video with a LoRA registry) on a CPU in seconds; DIR/tiny-i2v.toml and DIR/tiny-wan.toml
run Florence-2 and the image-to-video models, and DIR/tiny-clip.toml the clipguided backend on a
tiny CLIP (OpenCV's scene analysis alone for the caption). The frames are noise: this shows the
plumbing works, not what the real models make. torch, transformers and diffusers must be installed
(the gpu extra).
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

LORAS = ("wiggle", "bounce")  # the two checkpoints written into DIR/checkpoints, for the t2v model

# Settings shared by every tiny config: CPU, few steps, small frames; OCR stays the shipped CPU one,
# so the real caption is found, taken off and put back crisp around the tiny models' noise.
COMMON = """\
[synthesize]
backend = "template"

[generate]
frames = 16
fps = 8
steps = 2
max_side = 64
t2v_model = "{dir}/t2v"
i2v_model = "{dir}/{i2v}"
clip_model = "{dir}/clip"
clip_side = 48  # the clipguided canvas; its crops are resized to the tiny CLIP's 32 px
backend = "{generate}"

[encode]
size = 160

[runtime]
device = "cpu"
dtype = "fp32"

[checkpoints]
dir = "{dir}/checkpoints"

[training]
work_dir = "{dir}/training"
datasets_dir = "{dir}/datasets"
fps = 8
frames = 8
side = 32
rank = 4
steps = 6
lr = 1e-3
warmup = 1
checkpoint_every = 2
tune_steps = 4
tune_rank = 4
tune_frames = 8
"""
CONFIGS = {
    "tiny.toml": ("blip2", "t2v", "ltx"),
    "tiny-i2v.toml": ("florence2", "i2v", "ltx"),
    "tiny-wan.toml": ("blip2", "i2v", "wan"),
    "tiny-clip.toml": ("none", "clipguided", "ltx"),
}


def make_tiny(directory: str | Path, *, seed: int = 0) -> dict[str, Path]:
    """Write every tiny model, two LoRA checkpoints and the configs into `directory`; return what was written."""
    from engine.runtime.tiny.clip import make_tiny_clip
    from engine.runtime.tiny.video import make_tiny_lora, make_tiny_ltx, make_tiny_t2v, make_tiny_wan
    from engine.runtime.tiny.vqa import make_tiny_blip2, make_tiny_florence2

    root = Path(directory).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {
        "blip2": make_tiny_blip2(root / "blip2", seed=seed),
        "florence2": make_tiny_florence2(root / "florence2", seed=seed),
        "t2v": make_tiny_t2v(root / "t2v", seed=seed),
        "ltx": make_tiny_ltx(root / "ltx", seed=seed),
        "wan": make_tiny_wan(root / "wan", seed=seed),
        "clip": make_tiny_clip(root / "clip", seed=seed),
    }
    for offset, name in enumerate(LORAS, start=1):
        lora = root / "checkpoints" / f"{name}.safetensors"
        written[f"lora:{name}"] = make_tiny_lora(lora, "t2v", seed=seed + offset)
    for filename, (caption, generate, i2v) in CONFIGS.items():
        path = root / filename
        path.write_text(config_text(root, caption=caption, generate=generate, i2v=i2v), "utf-8")
        written[filename] = path
    log.info("tiny models written to %s", root)
    return written


def config_text(root: Path, *, caption: str, generate: str, i2v: str) -> str:
    """A partial config.toml selecting the tiny models under `root`."""
    # TOML basic strings take backslashes as escapes: write the folder with forward slashes
    folder = root.as_posix()
    model = f'{caption}_model = "{folder}/{caption}"\n' if caption != "none" else ""
    header = (
        "# Tiny random models from `makeitmove models make-tiny`: the model chain on a CPU in seconds.\n"
        "# The frames are noise by design. Run: makeitmove animate MEME --config " + f"{folder}/<this file>\n\n"
        f'[caption]\nbackend = "{caption}"\n{model}\n'
    )
    return header + COMMON.format(dir=folder, generate=generate, i2v=i2v)
