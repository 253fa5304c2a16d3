"""`makeitmove dataset build FOLDER -o DATASET`: a LoRA training set from a folder of meme GIFs and videos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.progress import ProgressDisplay

# engine.training.clips.FAMILIES, spelt out: the command line starts without numpy
FAMILY_CHOICES = ("t2v", "ltx", "wan")


def register(commands: Any) -> None:
    """Add `dataset build` to the command line."""
    dataset = commands.add_parser(
        "dataset", help="training sets of meme clips", description="Training sets of meme clips for `makeitmove train`."
    )
    dataset_commands = dataset.add_subparsers(
        dest="dataset_command", required=True, metavar="COMMAND", parser_class=type(dataset)
    )
    build = dataset_commands.add_parser(
        "build", help="build a training set from a folder of GIFs and videos",
        description="Decode every GIF, WebP, MP4 and WebM in FOLDER (by name; other files are ignored), re-time "
        "it to the training fps, loop or cut it to the model's frame bucket, take the caption off every frame, "
        "choose a keyframe and write a training caption with the caption and synthesize backends. A clip that "
        "can't be used is skipped with the reason. Exit status 1 when no clip could be used.",
    )  # fmt: skip
    build.add_argument("folder", type=Path, metavar="FOLDER", help="the meme clips")
    build.add_argument(
        "-o", "--output", type=Path, required=True, metavar="DATASET",
        help="the dataset folder: new, empty, or a dataset built before (it is replaced)",
    )  # fmt: skip
    build.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    build.add_argument(
        "--family", choices=FAMILY_CHOICES,
        help="the model family to bucket for (default: that of the [training] base model)",
    )  # fmt: skip
    build.add_argument("--trigger", metavar="WORD", help="a word put first in every caption (default: [training])")
    build.set_defaults(handler=dataset_build_command)


def dataset_build_command(args: argparse.Namespace) -> int:
    """Build the set, then print one line per clip and a summary; 1 when no clip could be used."""
    from engine.config import load_settings
    from engine.training.clips import training_fps
    from engine.training.dataset import build_dataset, default_family

    settings = load_settings(args.config)
    family = args.family or default_family(settings)
    with ProgressDisplay(enabled=sys.stderr.isatty()) as bar:
        progress = None if bar is None else lambda fraction, detail: bar(detail, fraction)
        report = build_dataset(
            args.folder, args.output, settings, family=family, trigger=args.trigger, progress=progress
        )
    lines = {skip.source: f"skipped  {skip.source}: {skip.reason}" for skip in report.skipped}
    for entry in report.entries:
        fitted = f", {entry.fitted}" if entry.fitted else ""
        lines[entry.source] = (
            f"kept     {entry.source} as {entry.id}: {entry.frames} frames {entry.width}x{entry.height}{fitted}, "
            f"keyframe {entry.keyframe_index}: {entry.caption}"
        )
    for source in sorted(lines):
        print(lines[source])
    if not report.entries:
        print(f"error: no clip in {args.folder} could be used (see why above); nothing was written", file=sys.stderr)
        return 1
    fps = training_fps(settings.training.fps, report.family)
    print(
        f"{len(report.entries)} kept, {len(report.skipped)} skipped: {args.output} ({family}, "
        f"{report.entries[0].frames} frames at {fps} fps, dataset {report.dataset_sha256[:12]})"
    )
    return 0
