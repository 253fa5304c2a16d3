"""`makeitmove train DATASET --name NAME`: a LoRA checkpoint from a dataset folder, into the checkpoint registry."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.animate import bounded
from engine.cli.progress import ProgressDisplay

PLAIN_REPORTS = 10  # without a terminal, one progress line per tenth of the run


def register(commands: Any) -> None:
    """Add `train` to the command line."""
    train = commands.add_parser(
        "train", help="train a LoRA checkpoint on a dataset folder",
        description="Train a LoRA checkpoint on a dataset folder from `makeitmove dataset build`, and write it "
        "into the checkpoint registry ([checkpoints] dir) as NAME.safetensors. Defaults come from [training]; "
        "a killed run continues from its last saved state with --resume.",
    )  # fmt: skip
    train.add_argument("dataset", type=Path, metavar="DATASET", help="the dataset folder")
    train.add_argument("--name", required=True, help="the checkpoint's name (letters, digits, '.', '_', '-')")
    train.add_argument(
        "--base", choices=("t2v", "i2v"), help="the model to train: the [generate] t2v_model or i2v_model"
    )
    train.add_argument("--rank", type=bounded(1, 1024), metavar="R", help="LoRA rank")
    train.add_argument("--steps", type=bounded(1, None), metavar="N", help="training steps")
    train.add_argument("--lr", type=learning_rate, metavar="X", help="AdamW learning rate after the warm-up")
    train.add_argument("--resume", action="store_true", help="continue NAME's interrupted run from its last state")
    train.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    train.set_defaults(handler=train_command)


def learning_rate(text: str) -> float:
    """An argparse type: a learning rate above 0 and at most 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text[:40]} is out of range: use a number above 0 and at most 1")
    return value


def train_command(args: argparse.Namespace) -> int:
    """`makeitmove train DATASET --name NAME`: train, show progress, name the file written and how to use it."""
    from engine.config import load_settings
    from engine.runtime.gpu import require_torch

    settings = load_settings(args.config)
    require_torch("trainer")
    from engine.training.trainer import TrainSpec, train

    spec = TrainSpec.from_settings(
        settings, args.dataset, args.name, base=args.base, rank=args.rank, steps=args.steps, lr=args.lr,
        resume=args.resume,
    )  # fmt: skip
    shown = [-1]

    with ProgressDisplay(enabled=sys.stderr.isatty()) as bar:

        def progress(fraction: float, detail: str) -> None:
            if bar is not None:
                bar(detail, fraction)
            elif int(fraction * PLAIN_REPORTS) > shown[0]:
                shown[0] = int(fraction * PLAIN_REPORTS)
                print(detail, file=sys.stderr, flush=True)

        result = train(spec, settings, progress=progress)
    loss = f", last loss {result.losses[-1]:.4f}" if result.losses else ""
    print(
        f"checkpoint {args.name} written to {result.path} ({result.steps} steps{loss}); "
        f"make it the active LoRA with /lora use {args.name} in a chat with the bot (admins), "
        "on an engine whose [checkpoints] dir is that folder"
    )
    return 0
