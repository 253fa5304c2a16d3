"""`makeitmove models check` and `makeitmove models make-tiny`: the model files of the GPU backends."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    """Add `models check` and `models make-tiny` to the command line."""
    models = commands.add_parser(
        "models", help="the model files of the GPU backends", description="The model files of the GPU backends."
    )
    model_commands = models.add_subparsers(
        dest="models_command", required=True, metavar="COMMAND", parser_class=type(models)
    )
    check = model_commands.add_parser(
        "check", help="which configured models are on this machine",
        description="List every configured model key, where its files are and their size. "
        "Exit status 1 when a model the selected backends need is missing.",
    )  # fmt: skip
    check.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    check.set_defaults(handler=models_check_command)
    make_tiny = model_commands.add_parser(
        "make-tiny", help="write tiny random models and configs that select them",
        description="Write tiny random checkpoints of every model backend, two LoRA checkpoints and "
        "DIR/tiny.toml, DIR/tiny-i2v.toml, DIR/tiny-wan.toml and DIR/tiny-clip.toml (the clipguided backend on "
        "a tiny CLIP), so `makeitmove animate MEME --config DIR/tiny.toml` runs the model chain on a CPU in "
        "seconds. The frames are noise.",
    )  # fmt: skip
    make_tiny.add_argument("dir", type=Path, metavar="DIR", help="where to write them (created if missing)")
    make_tiny.set_defaults(handler=models_make_tiny_command)


def models_check_command(args: argparse.Namespace) -> int:
    """`makeitmove models check`: each configured model, where it is and its size; 1 if a needed one is missing."""
    from engine.config import load_settings
    from engine.runtime.model_files import configured_models
    from engine.units import human_bytes

    entries = configured_models(load_settings(args.config))
    width = max((len(e.key) for e in entries), default=0)
    for e in entries:
        use = "in use" if e.selected else "unused"
        size = human_bytes(e.size) if e.path else "-"
        print(f"{e.key:<{width}}  {use:<6}  {e.where:<10}  {size:>9}  {e.model}")
    missing = [e for e in entries if e.selected and not e.present]
    for e in missing:
        print(
            f"error: model '{e.model}' (config key '{e.key}') is not on this machine: "
            f"fetch it with `hf download {e.model}` or set {e.key} to a local folder",
            file=sys.stderr,
        )
    return 1 if missing else 0


def models_make_tiny_command(args: argparse.Namespace) -> int:
    """`makeitmove models make-tiny DIR`: tiny random models for a CPU run of the model chain."""
    from engine.runtime.gpu import require_torch

    require_torch("tiny models")
    from engine.runtime.tiny import make_tiny

    written = make_tiny(args.dir)
    configs = [path for name, path in written.items() if name.endswith(".toml")]
    print(f"tiny models in {args.dir}; try: makeitmove animate MEME --config {configs[0]}", file=sys.stderr)
    return 0
