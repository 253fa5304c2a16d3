"""The `makeitmove` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.pipeline import PipelineResult

log = logging.getLogger(__name__)

CAMERA_CHOICES = ("zoom-in", "zoom-out", "pan-left", "pan-right", "pan-up", "pan-down", "shake", "orbit")
EXIT_USAGE = 2  # bad input or options: the message says what to change
EXIT_INTERNAL = 1


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but usage errors are one `error:` line like every other refusal."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print one line and exit with status 2."""
        self.exit(EXIT_USAGE, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser for every subcommand."""
    parser = ArgumentParser(prog="makeitmove", description="Turn a meme into a short animation that keeps its caption.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage (and tracebacks) to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=ArgumentParser)

    animate = commands.add_parser("animate", help="animate one meme image", description="Animate one meme image.")
    animate.add_argument("image", type=Path, help="the meme: PNG, JPEG, WebP, GIF or BMP")
    animate.add_argument("-o", "--output", type=Path, help="where to write the result (default: IMAGE's name + format)")
    animate.add_argument("--prompt", help="how it should move, in words (default: written from the meme)")
    animate.add_argument("--motion", choices=("low", "high"), help="how much it moves")
    animate.add_argument("--camera", choices=CAMERA_CHOICES, help="force a camera move")
    animate.add_argument("--frames", type=int, metavar="N", help="number of frames")
    animate.add_argument("--fps", type=int, metavar="N", help="frames per second")
    animate.add_argument("--size", type=int, metavar="PX", help="the output's longer side in pixels")
    animate.add_argument("--format", choices=("gif", "mp4", "webp"), help="output format")
    animate.add_argument("--max-bytes", type=int, metavar="N", help="the output's byte budget (always met)")
    animate.add_argument("--seed", type=int, default=0, metavar="N", help="same seed, same bytes (default 0)")
    animate.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    animate.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    animate.set_defaults(handler=animate_command)

    serve = commands.add_parser(
        "serve", help="run the engine service for the bots",
        description="Run the HTTP engine service. Tokens come from ENGINE_TOKEN and ENGINE_ADMIN_TOKEN.",
    )  # fmt: skip
    serve.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    serve.set_defaults(handler=serve_command)

    worker = commands.add_parser(
        "worker", help="run one job worker (one per GPU)",
        description='Take jobs from the Procrastinate queue, one at a time, until SIGINT or SIGTERM. Needs '
        '[queue] backend = "procrastinate" and a postgresql:// [storage] url.',
    )  # fmt: skip
    worker.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    worker.set_defaults(handler=worker_command)

    db = commands.add_parser("db", help="manage the engine's database", description="Manage the engine's database.")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND", parser_class=ArgumentParser)
    upgrade = db_commands.add_parser(
        "upgrade", help="apply the database migrations",
        description="Apply the migrations to [storage] url (and Procrastinate's schema with [queue] backend = "
        '"procrastinate").',
    )  # fmt: skip
    upgrade.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    upgrade.set_defaults(handler=db_upgrade_command)

    models = commands.add_parser(
        "models", help="the model files of the GPU backends", description="The model files of the GPU backends."
    )
    model_commands = models.add_subparsers(
        dest="models_command", required=True, metavar="COMMAND", parser_class=ArgumentParser
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
        "DIR/tiny.toml, DIR/tiny-i2v.toml and DIR/tiny-wan.toml, so `makeitmove animate MEME --config "
        "DIR/tiny.toml` runs the model chain on a CPU in seconds. The frames are noise.",
    )  # fmt: skip
    make_tiny.add_argument("dir", type=Path, metavar="DIR", help="where to write them (created if missing)")
    make_tiny.set_defaults(handler=models_make_tiny_command)

    bot = commands.add_parser("bot", help="run a chat bot", description="Run a chat bot against the engine service.")
    bots = bot.add_subparsers(dest="bot_command", required=True, metavar="PLATFORM", parser_class=ArgumentParser)
    telegram = bots.add_parser(
        "telegram", help="the Telegram bot",
        description="Run the Telegram bot. Tokens come from TELEGRAM_TOKEN, ENGINE_TOKEN and ENGINE_ADMIN_TOKEN.",
    )  # fmt: skip
    telegram.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    telegram.set_defaults(handler=bot_telegram_command)
    discord = bots.add_parser(
        "discord", help="the Discord bot",
        description="Run the Discord bot. Tokens come from DISCORD_TOKEN, ENGINE_TOKEN and ENGINE_ADMIN_TOKEN.",
    )  # fmt: skip
    discord.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    discord.set_defaults(handler=bot_discord_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `makeitmove` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from engine.errors import ConfigError, UserError

    try:
        return int(args.handler(args))
    except (UserError, ConfigError) as exc:
        log.debug("refused", exc_info=True)
        print(f"error: {_sentence(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: one line for the user, the traceback in the log
        log.error("internal error", exc_info=args.verbose)
        hint = "" if args.verbose else " (run with --verbose for details)"
        print(f"error: something went wrong inside the engine: {type(exc).__name__}{hint}", file=sys.stderr)
        return EXIT_INTERNAL


def animate_command(args: argparse.Namespace) -> int:
    """`makeitmove animate IMAGE`: run the whole pipeline on one file."""
    from engine.config import load_settings
    from engine.errors import UserError
    from engine.pipeline import Pipeline
    from engine.types import AnimationOptions

    settings = load_settings(args.config)
    data = _read_image(args.image, settings.intake.max_bytes)
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


def serve_command(args: argparse.Namespace) -> int:
    """`makeitmove serve`: the HTTP engine service, until SIGINT or SIGTERM."""
    from aiohttp import web

    from engine.config import load_settings
    from engine.errors import ConfigError
    from engine.service.app import create_app
    from engine.service.state import Tokens

    settings = load_settings(args.config)
    if not args.verbose:  # a service logs its job transitions; the CLI's default is quiet
        logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    app = create_app(settings, tokens=Tokens.from_env())
    host, port = settings.engine.host, settings.engine.port
    log.info("engine listening on http://%s:%d", host, port)
    try:
        web.run_app(app, host=host, port=port, print=None, access_log=None, handle_signals=True)
    except OSError as exc:  # the port is taken, or the host isn't an address of this machine
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    log.info("engine stopped")
    return 0


def db_upgrade_command(args: argparse.Namespace) -> int:
    """`makeitmove db upgrade`: apply the migrations to the configured database, and nothing else."""
    import asyncio

    from sqlalchemy.engine import make_url

    from engine.config import load_settings
    from engine.errors import ConfigError
    from storage.database import upgrade

    settings = load_settings(args.config)
    try:
        asyncio.run(upgrade(settings.storage.url))
    except ValueError as exc:
        raise ConfigError(f"config key 'storage.url' is not usable: {exc}") from None
    if settings.queue.backend == "procrastinate":
        from engine.service.procrastinate_app import apply_schema, check_settings

        check_settings(settings)
        asyncio.run(apply_schema(settings.storage.url))
    shown = make_url(settings.storage.url).render_as_string(hide_password=True)
    print(f"database {shown} is up to date", file=sys.stderr)
    return 0


def models_check_command(args: argparse.Namespace) -> int:
    """`makeitmove models check`: each configured model, where it is and its size; 1 if a needed one is missing."""
    from engine.config import load_settings
    from engine.model_files import configured_models, human_size

    entries = configured_models(load_settings(args.config))
    width = max((len(e.key) for e in entries), default=0)
    for e in entries:
        use = "in use" if e.selected else "unused"
        size = human_size(e.size) if e.path else "-"
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
    from engine.gpu import require_torch

    require_torch("tiny models")
    from engine.tiny import make_tiny

    written = make_tiny(args.dir)
    configs = [path for name, path in written.items() if name.endswith(".toml")]
    print(f"tiny models in {args.dir}; try: makeitmove animate MEME --config {configs[0]}", file=sys.stderr)
    return 0


def worker_command(args: argparse.Namespace) -> int:
    """`makeitmove worker`: one Procrastinate worker owning this machine's GPU (or one of them)."""
    from engine.config import load_settings
    from engine.errors import ConfigError

    settings = load_settings(args.config)
    if settings.queue.backend != "procrastinate":
        raise ConfigError('makeitmove worker needs [queue] backend = "procrastinate"; serve runs jobs itself otherwise')
    try:
        import procrastinate  # noqa: F401 - in the postgres extra, imported late by the worker itself
    except ImportError as exc:
        raise ConfigError(f"the worker needs pip install 'makeitmove[postgres]' ({exc.name} is missing)") from None
    from engine.pipeline import Pipeline
    from engine.service.worker import run_worker

    if not args.verbose:  # a worker logs its job transitions, like serve
        logging.getLogger().setLevel(logging.INFO)
    run_worker(settings, Pipeline)
    return 0


def bot_telegram_command(args: argparse.Namespace) -> int:
    """`makeitmove bot telegram`: long polling, or a webhook when [telegram] webhook_url is set."""
    from engine.config import load_settings

    try:
        from bot.telegram.app import run
    except ImportError as exc:  # python-telegram-bot is an extra
        from engine.errors import ConfigError

        missing = exc.name
        raise ConfigError(f"the Telegram bot needs pip install 'makeitmove[telegram]' ({missing} is missing)") from None

    settings = load_settings(args.config)
    if not args.verbose:  # a service logs its job transitions; the CLI's default is quiet
        logging.getLogger().setLevel(logging.INFO)
    run(settings, os.environ)
    return 0


def bot_discord_command(args: argparse.Namespace) -> int:
    """`makeitmove bot discord`: the gateway connection, slash commands, the context menu and buttons."""
    from engine.config import load_settings
    from engine.errors import ConfigError

    try:
        from bot.discord.app import run, token_of
    except ImportError as exc:  # discord.py is an extra
        raise ConfigError(f"the Discord bot needs pip install 'makeitmove[discord]' ({exc.name} is missing)") from None

    settings = load_settings(args.config)
    token_of(os.environ)  # a missing token ends the command before anything starts
    if not args.verbose:
        logging.getLogger().setLevel(logging.INFO)
    run(settings, os.environ)
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


def _read_image(path: Path, max_bytes: int) -> bytes:
    from engine.errors import UserError

    try:
        size = os.stat(path).st_size
        if size > max_bytes:  # refuse before reading a huge file into memory; intake says it the same way
            raise UserError(f"That file is too large ({size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB).")
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"There is no file at {path}.", code="no_file") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not an image file.", code="no_file") from None
    except PermissionError:
        raise UserError(f"{path} cannot be read (permission denied).", code="no_file") from None


class ProgressDisplay:
    """A rich progress bar per stage on stderr; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description:<12}"), BarColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True,
        )  # fmt: skip
        self._bar.start()
        self._task = self._bar.add_task("starting", total=1.0)
        return self.update

    def update(self, stage: str, fraction: float) -> None:
        """Show the stage now running."""
        self._bar.update(self._task, description=stage, completed=fraction)
        self._bar.refresh()  # stages can be shorter than rich's refresh period; show each one

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _sentence(message: str) -> str:
    """Messages are sentences for chat users; on a terminal they follow `error:` in lower case."""
    message = message.rstrip(".")
    return message[:1].lower() + message[1:] if message[:2] != message[:2].upper() else message


if __name__ == "__main__":
    sys.exit(main())
