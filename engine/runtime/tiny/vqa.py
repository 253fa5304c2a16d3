"""Tiny random vision-language models, saved like the real ones, so the caption and OCR backends run on a CPU.

Each builder writes a folder (model, processor, tokenizer) that the production `from_pretrained`
path loads exactly as it loads the hub's checkpoints: the same model and processor classes, a
word-level tokenizer built in code (nothing may be downloaded) and a few tens of thousands of
seeded random weights. Their answers are noise, by design: tests check shapes, types and parsing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

WIDTH = 32
QUERY_TOKENS = 4
IMAGE_SIDE = 32  # BLIP-2's processor resizes to this; Florence-2's to FLORENCE_SIDE
FLORENCE_SIDE = 64  # DaViT downsamples 32x: a 2x2 grid plus one pooled token
FLORENCE_IMAGE_TOKENS = (FLORENCE_SIDE // 32) ** 2 + 1
MIN_NEW_TOKENS = 24  # a test's max_new_tokens must be at least this
# Words of the configured questions and the processors' task prompts, so prompts tokenize to real ids.
WORDS = (
    "what is the a an main character doing are colors of scene in background drawing style emotion does show why "
    "this meme funny question answer describe picture text image with regions paragraph shown locate objects "
    "category name cat dog person red blue green happy sad cartoon photo sky room"
).split()
PUNCTUATION = ("?", ".", ",", ":", "'", "!")


def make_tiny_blip2(directory: str | Path, *, seed: int = 0) -> Path:
    """A Blip2ForConditionalGeneration folder (ViT, Q-Former, OPT) with its Blip2Processor."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessorPil

    directory = Path(directory)
    tokenizer = _tokenizer(("<pad>", "</s>", "<unk>"), bos="</s>", eos="</s>")
    processor = Blip2Processor(
        image_processor=BlipImageProcessorPil(size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}),
        tokenizer=tokenizer,  # the processor adds its <image> token
        num_query_tokens=QUERY_TOKENS,
    )
    config = Blip2Config(
        vision_config={
            "hidden_size": WIDTH, "intermediate_size": 2 * WIDTH, "num_hidden_layers": 1, "num_attention_heads": 2,
            "image_size": IMAGE_SIDE, "patch_size": 8,
        },
        qformer_config={
            "vocab_size": 64, "hidden_size": WIDTH, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 2 * WIDTH, "encoder_hidden_size": WIDTH,
        },
        text_config={
            "model_type": "opt", "vocab_size": len(tokenizer), "hidden_size": WIDTH, "num_hidden_layers": 1,
            "ffn_dim": 2 * WIDTH, "num_attention_heads": 2, "word_embed_proj_dim": WIDTH,
            "max_position_embeddings": 128, "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
        },
        num_query_tokens=QUERY_TOKENS,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def make_tiny_florence2(directory: str | Path, *, seed: int = 0) -> Path:
    """A Florence2ForConditionalGeneration folder (DaViT, BART) with its Florence2Processor.

    Its generation config asks for at least MIN_NEW_TOKENS new tokens: a random model would otherwise stop at
    once, and the OCR parsing would never see a location token.
    """
    from transformers import CLIPImageProcessorPil, Florence2Config, Florence2ForConditionalGeneration, GenerationConfig
    from transformers import Florence2Processor as Processor

    directory = Path(directory)
    tokenizer = _tokenizer(("<pad>", "<s>", "</s>", "<unk>", "<image>"), bos="<s>", eos="</s>", image="<image>")
    # Florence-2's location and task markup tokens, as in the real vocabulary.
    tokenizer.add_tokens([f"<loc_{i}>" for i in range(1000)] + ["<od>", "</od>", "<ocr>", "</ocr>", "<poly>", "<sep>"])
    image_processor = CLIPImageProcessorPil(
        size={"height": FLORENCE_SIDE, "width": FLORENCE_SIDE}, do_center_crop=False,
        crop_size={"height": FLORENCE_SIDE, "width": FLORENCE_SIDE}, image_seq_length=FLORENCE_IMAGE_TOKENS,
    )  # fmt: skip
    processor = Processor(image_processor=image_processor, tokenizer=tokenizer)
    config = Florence2Config(
        vision_config={
            "depths": [1, 1, 1, 1], "embed_dim": [8, 16, 16, 16], "num_heads": [1, 1, 1, 1],
            "num_groups": [1, 1, 1, 1], "window_size": 2, "projection_dim": WIDTH // 2,
        },
        text_config={
            "model_type": "bart", "vocab_size": len(tokenizer), "d_model": WIDTH // 2, "encoder_layers": 1,
            "decoder_layers": 1, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
            "encoder_ffn_dim": WIDTH, "decoder_ffn_dim": WIDTH, "max_position_embeddings": 256,
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "decoder_start_token_id": tokenizer.eos_token_id,
        },
        image_token_id=tokenizer.image_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, decoder_start_token_id=tokenizer.eos_token_id,
        min_new_tokens=MIN_NEW_TOKENS,
    )  # fmt: skip
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _tokenizer(specials: tuple[str, ...], *, bos: str, eos: str, image: str | None = None) -> Any:
    """A word-level fast tokenizer over WORDS, wrapped like a hub tokenizer (saved as tokenizer.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(specials)}
    for word in (*WORDS, *PUNCTUATION):
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    extra = {"image_token": image} if image else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens=extra,
    )  # fmt: skip
