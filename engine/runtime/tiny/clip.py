"""A tiny random CLIP, saved like the hub's, so the clipguided backend runs on a CPU in seconds.

The folder loads with `CLIPModel.from_pretrained` and `CLIPTokenizer.from_pretrained` exactly as
openai/clip-vit-base-patch32 does: a 1-layer ViT over 32 px images in 8 px patches, a 1-layer text
transformer, the byte-level tokenizer of the tiny video models, and CLIP's own preprocessor config
(its normalisation constants), for whoever reads it. Its similarities are noise, by design.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WIDTH = 32  # both towers' hidden size
PROJECTION = 16  # the shared embedding's size
IMAGE_SIDE = 32  # what the vision tower takes; the backend resizes its crops to this
PATCH = 8


def make_tiny_clip(directory: str | Path, *, seed: int = 0) -> Path:
    """A CLIPModel folder (text and vision towers, projections) with its tokenizer and preprocessor config."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    from engine.runtime.tiny.video import clip_tokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = clip_tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": WIDTH, "intermediate_size": 2 * WIDTH,
            "num_attention_heads": 2, "num_hidden_layers": 1, "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": WIDTH, "intermediate_size": 2 * WIDTH, "num_attention_heads": 2, "num_hidden_layers": 1,
            "image_size": IMAGE_SIDE, "patch_size": PATCH,
        },
        projection_dim=PROJECTION,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    # The PIL processor: the default CLIPImageProcessor needs torchvision; both write the same JSON.
    CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIDE}, crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE},
        image_mean=list(OPENAI_CLIP_MEAN), image_std=list(OPENAI_CLIP_STD),
    ).save_pretrained(directory)  # fmt: skip
    note = {"makeitmove": "tiny random CLIP for tests and demos; its similarities are noise"}
    (directory / "TINY.json").write_text(json.dumps(note) + "\n", "utf-8")
    return directory
