"""The `makeitmove` command line: one parser, each command group in a module of its own.

Command groups outside the engine (the bots' `makeitmove bot ...`) plug in through the
`makeitmove.commands` entry points, so the engine never imports the packages that use it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from engine.cli import animate, checkpoints, dataset, models, service, train

log = logging.getLogger(__name__)

EXIT_USAGE = 2  # bad input or options: the message says what to change
EXIT_INTERNAL = 1
PLUGIN_GROUP = "makeitmove.commands"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but usage errors are one `error:` line like every other refusal."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print one line and exit with status 2."""
        self.exit(EXIT_USAGE, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser for every subcommand, the plugged-in ones included."""
    parser = ArgumentParser(prog="makeitmove", description="Turn a meme into a short animation that keeps its caption.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage (and tracebacks) to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=ArgumentParser)
    animate.register(commands)
    service.register(commands)
    models.register(commands)
    dataset.register(commands)
    train.register(commands)
    checkpoints.register(commands)
    for plugin in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        plugin.load()(commands)
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
        missing = _missing_system_library(exc)
        if missing is not None:
            print(
                f"error: OpenCV cannot load the system library {missing}. Install it (Debian/Ubuntu: apt-get "
                "install libgl1 libglib2.0-0), or swap in the headless OpenCV build: pip install "
                "--force-reinstall --no-deps opencv-python-headless==4.11.0.86",
                file=sys.stderr,
            )
            return EXIT_INTERNAL
        log.error("internal error", exc_info=args.verbose)
        hint = "" if args.verbose else " (run with --verbose for details)"
        print(f"error: something went wrong inside the engine: {type(exc).__name__}{hint}", file=sys.stderr)
        return EXIT_INTERNAL


def _missing_system_library(exc: Exception) -> str | None:
    """The shared library an import could not find (mediapipe's OpenCV build links libGL and glib), if that failed."""
    text = str(exc)
    if not isinstance(exc, ImportError) or "cannot open shared object file" not in text:
        return None
    return text.split(":", 1)[0].strip() or "libGL.so.1"


def _sentence(message: str) -> str:
    """Messages are sentences for chat users; on a terminal they follow `error:` in lower case."""
    message = message.rstrip(".")
    return message[:1].lower() + message[1:] if message[:2] != message[:2].upper() else message
