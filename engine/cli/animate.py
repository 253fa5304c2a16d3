"""`makeitmove animate IMAGE`: the whole pipeline on one file, no service."""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli.progress import ProgressDisplay
from engine.vocabulary import CAMERAS, FORMATS, FPS, FRAMES, MAX_PROMPT_CHARS, MOTION_LEVELS, SEED, SIZE

WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")

if TYPE_CHECKING:
    from engine.pipeline import PipelineResult


def register(commands: Any) -> None:
    """Add `animate` to the command line."""
    animate = commands.add_parser("animate", help="animate one meme image", description="Animate one meme image.")
    animate.add_argument("image", type=Path, help="the meme: PNG, JPEG, WebP, GIF or BMP")
    animate.add_argument("-o", "--output", type=Path, help="where to write the result (default: IMAGE's name + format)")
    animate.add_argument(
        "--prompt", type=prompt_text, help="how it should move, in words (default: written from the meme)"
    )
    animate.add_argument("--motion", choices=MOTION_LEVELS, help="how much it moves")
    animate.add_argument("--camera", choices=CAMERAS, help="force a camera move")
    animate.add_argument("--frames", type=bounded(*FRAMES), metavar="N", help="number of frames")
    animate.add_argument("--fps", type=bounded(*FPS), metavar="N", help="frames per second")
    animate.add_argument("--size", type=bounded(*SIZE), metavar="PX", help="the output's longer side in pixels")
    animate.add_argument("--format", choices=FORMATS, help="output format")
    animate.add_argument(
        "--max-bytes", type=bounded(1, None), metavar="N", help="the output's byte budget (always met)"
    )
    animate.add_argument(
        "--seed", type=bounded(*SEED), default=0, metavar="N", help="same seed, same bytes (default 0)"
    )
    animate.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    animate.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    animate.set_defaults(handler=animate_command)


def bounded(low: int, high: int | None) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high` (no upper bound when None)."""
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(text: str) -> int:
        shown = text if len(text) <= 40 else f"{text[:37]}..."
        if not WHOLE_NUMBER.fullmatch(text):  # not int(): it also takes " 7", "1_000" and other scripts' digits
            raise argparse.ArgumentTypeError(f"{shown!r} is not a whole number")
        value = int(text) if len(text) <= 40 else None  # far past any bound, and int() refuses 4300 digits
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{shown} is out of range: use a whole number {span}")
        return value

    parse.__name__ = "number"  # argparse names the type in its messages
    return parse


def prompt_text(text: str) -> str:
    """An argparse type: a prompt within the engine's length limit."""
    if len(text) > MAX_PROMPT_CHARS:
        raise argparse.ArgumentTypeError(f"the prompt is too long (the limit is {MAX_PROMPT_CHARS} characters)")
    return text


def animate_command(args: argparse.Namespace) -> int:
    """Run the whole pipeline on one file and write the result."""
    from engine.config import load_settings
    from engine.errors import UserError
    from engine.pipeline import Pipeline
    from engine.types import AnimationOptions

    settings = load_settings(args.config)
    data = read_image(args.image, settings.intake.max_bytes)
    options = AnimationOptions(
        prompt=args.prompt, motion=args.motion, camera=args.camera, frames=args.frames, fps=args.fps,
        size=args.size, format=args.format, max_bytes=args.max_bytes, seed=args.seed,
    )  # fmt: skip
    pipeline = Pipeline(settings)
    resolved = pipeline.resolve(options)
    output = args.output or Path(f"{args.image.stem}.{resolved.format}")
    if output.resolve() == args.image.resolve():
        raise UserError(f"The output {output} would overwrite the input image; choose another -o.")
    with ProgressDisplay(enabled=sys.stderr.isatty()) as progress:
        result = pipeline.run(data, options, progress=progress)
    try:
        output.write_bytes(result.encoded.data)
    except OSError as exc:
        raise UserError(f"Cannot write {output}: {exc.strerror or exc}.", code="output") from None
    if args.json:
        print(json.dumps(report(result, output), ensure_ascii=False, indent=2))
    else:
        enc = result.encoded
        print(
            f"{output}: {enc.format.upper()} {enc.width}x{enc.height}, {enc.frames} frames at {enc.fps:g} fps, "
            f"{len(enc.data):,} bytes, {result.timings['total']:.2f} s",
            file=sys.stderr,
        )
    return 0


def report(result: PipelineResult, output: Path) -> dict[str, Any]:
    """The --json report."""
    enc, script = result.encoded, result.script
    return {
        "output": str(output),
        "format": enc.format,
        "bytes": len(enc.data),
        "frames": enc.frames,
        "fps": enc.fps,
        "width": enc.width,
        "height": enc.height,
        "ocr": [{"text": b.text, "box": list(b.box), "confidence": round(b.confidence, 4)} for b in result.ocr.blocks],
        "script": {
            "description": script.description,
            "meme_text": script.meme_text,
            "emotion": script.emotion,
            "motion_prompt": script.motion_prompt,
            "camera": script.camera,
            "explanation": script.explanation,
            "writer": script.writer,
        },
        "backends": result.backends,
        "timings": result.timings,
        "fitted": list(enc.fitted),
    }


def read_image(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refused with a sentence when missing, unreadable, not a regular file or over the cap."""
    from engine.errors import UserError
    from engine.units import human_bytes

    try:
        _check_regular(path, os.stat(path).st_mode)  # before opening it: opening a device can do things of its own
        # O_NONBLOCK: were it swapped for a FIFO meanwhile, the open doesn't wait for a writer (files ignore it)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UserError(f"There is no file at {path}.", code="no_file") from None
    except PermissionError:
        raise UserError(f"{path} cannot be read (permission denied).", code="no_file") from None
    except OSError as exc:
        raise UserError(f"{path} cannot be opened ({exc.strerror or exc}).", code="no_file") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        _check_regular(path, info.st_mode)
        # A huge file is refused unread; the read is capped all the same, as the file may grow meanwhile.
        size = info.st_size
        data = b"" if size > max_bytes else file.read(max_bytes + 1)
        size = max(size, len(data))
    if size > max_bytes:  # intake says it the same way
        raise UserError(
            f"That file is too large ({human_bytes(size, up=True)}; the limit is {human_bytes(max_bytes)}).",
            code="too_large",
        )
    return data


def _check_regular(path: Path, mode: int) -> None:
    """Refuse a folder, device, pipe or socket: only a regular file has a size to check, and ends."""
    from engine.errors import UserError

    if stat.S_ISDIR(mode):
        raise UserError(f"{path} is a folder, not an image file.", code="no_file")
    if not stat.S_ISREG(mode):
        raise UserError(f"{path} is not a regular file (a device, pipe or socket); give an image file.", code="no_file")
