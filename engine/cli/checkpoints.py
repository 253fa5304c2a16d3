"""`makeitmove checkpoints list` and `makeitmove tune GIF`: the checkpoint registry, and one-shot tuning into it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.cli.animate import bounded
from engine.cli.progress import ProgressDisplay

EXAMPLE_CHARS = 70  # a training caption as the listing shows it


def register(commands: Any) -> None:
    """Add `checkpoints list` and `tune` to the command line."""
    checkpoints = commands.add_parser(
        "checkpoints", help="the LoRA checkpoint registry", description="The LoRA checkpoint registry."
    )
    checkpoint_commands = checkpoints.add_subparsers(
        dest="checkpoints_command", required=True, metavar="COMMAND", parser_class=type(checkpoints)
    )
    listing = checkpoint_commands.add_parser(
        "list", help="every checkpoint, whether it can be used, and how it was made",
        description="List the checkpoints of the [checkpoints] dir: size, whether each can be used (and why "
        "not), and for those made here how they were made (family, base model, rank, steps, dataset, captions).",
    )  # fmt: skip
    listing.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    listing.set_defaults(handler=list_command)

    tune = commands.add_parser(
        "tune", help="tune a checkpoint on one GIF (its motion, for new subjects)",
        description="One-shot tuning (GIF-Tune, done the MotionDirector way): train a LoRA on one GIF or video "
        "and keep its temporal layers, so that a new prompt moves like the clip with another subject. The "
        "checkpoint goes into the registry ([checkpoints] dir) as NAME.safetensors. Needs the t2v model.",
    )  # fmt: skip
    tune.add_argument("clip", type=Path, metavar="GIF", help="the GIF or video (MP4, WebM, WebP)")
    tune.add_argument("--name", required=True, help="the checkpoint's name (letters, digits, '.', '_', '-')")
    tune.add_argument("--prompt", help="what happens in it, in words; without it the engine writes a caption")
    tune.add_argument("--steps", type=bounded(1, None), metavar="N", help="tuning steps ([training] tune_steps)")
    tune.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    tune.set_defaults(handler=tune_command)


def list_command(args: argparse.Namespace) -> int:
    """`makeitmove checkpoints list`: one block per checkpoint; status 0 even when the folder is empty."""
    from engine.config import load_settings
    from engine.service.checkpoints import CheckpointRegistry
    from engine.units import human_bytes

    settings = load_settings(args.config)
    found = CheckpointRegistry(settings.checkpoints.dir).checkpoints()
    if not found:
        print(f"no checkpoints in {settings.checkpoints.dir}", file=sys.stderr)
        return 0
    for c in found:
        state = "ok" if c.valid else f"unusable: {c.problem}"
        print(f"{c.name}  {human_bytes(c.size)}  {c.modified:%Y-%m-%d %H:%M}  {state}")
        for line in made_lines(c.metadata):
            print(f"    {line}")
    return 0


def made_lines(metadata: dict[str, str]) -> list[str]:
    """How a checkpoint was made, from its (untrusted) metadata strings; nothing for files made elsewhere."""
    if "family" not in metadata:
        return []
    how = {"tune": "tuned on one clip", "train": "trained on a dataset"}.get(metadata.get("kind", ""), "made")
    parts = [f"{how}: {metadata['family'][:16]} on {metadata.get('base_model', '?')[:80]}"]
    parts += [f"{key} {metadata[key][:12]}" for key in ("rank", "alpha", "steps") if metadata.get(key)]
    lines = [", ".join(parts)]
    if metadata.get("dataset_sha256"):
        lines.append(f"dataset {metadata['dataset_sha256'][:12]}")
    if metadata.get("trigger"):
        lines.append(f"trigger word: {metadata['trigger'][:40]}")
    try:
        examples = json.loads(metadata.get("examples", "[]"))
    except ValueError:
        examples = []
    for example in examples[:3] if isinstance(examples, list) else []:
        if isinstance(example, str):
            text = " ".join(example.split())
            lines.append(f'"{text[:EXAMPLE_CHARS]}{"…" if len(text) > EXAMPLE_CHARS else ""}"')
    return lines


def tune_command(args: argparse.Namespace) -> int:
    """`makeitmove tune GIF --name NAME`: tune, show progress, name the file written and how to use it."""
    from engine.config import load_settings
    from engine.errors import UserError
    from engine.runtime.gpu import require_torch

    settings = load_settings(args.config)
    require_torch("tuner")
    from engine.training.jobs import tune_clip

    try:
        data = args.clip.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {args.clip}: {exc.strerror}", code="unreadable") from None
    with ProgressDisplay(enabled=sys.stderr.isatty()) as bar:

        def progress(stage: str, fraction: float) -> None:
            if bar is not None:
                bar(stage, fraction)

        result = tune_clip(
            data, settings, name=args.name, registry_dir=Path(settings.checkpoints.dir).expanduser(),
            prompt=args.prompt, steps=args.steps, progress=progress,
        )  # fmt: skip
    print(
        f"checkpoint {args.name} written to {result.path} ({result.steps} steps, temporal layers only); "
        f"/remix in a chat reuses it for this GIF, or make it the active LoRA with /lora use {args.name}"
    )
    return 0
