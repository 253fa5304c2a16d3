"""`makeitmove serve`, `makeitmove worker` and `makeitmove db upgrade`: the engine service and its database."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    """Add `serve`, `worker` and `db upgrade` to the command line."""
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
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND", parser_class=type(db))
    upgrade = db_commands.add_parser(
        "upgrade", help="apply the database migrations",
        description="Apply the migrations to [storage] url (and Procrastinate's schema with [queue] backend = "
        '"procrastinate").',
    )  # fmt: skip
    upgrade.add_argument("--config", type=Path, metavar="FILE", help="a config.toml overriding the defaults")
    upgrade.set_defaults(handler=db_upgrade_command)


def serve_command(args: argparse.Namespace) -> int:
    """`makeitmove serve`: the HTTP engine service, until SIGINT or SIGTERM."""
    from engine.config import load_settings
    from engine.errors import ConfigError
    from engine.service.app import create_app
    from engine.service.keys import Tokens
    from engine.service.server import serve

    settings = load_settings(args.config)
    if not args.verbose:  # a service logs its job transitions; the CLI's default is quiet
        logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    app = create_app(settings, tokens=Tokens.from_env())
    host, port = settings.engine.host, settings.engine.port
    log.info("engine listening on http://%s:%d", host, port)
    try:
        serve(app, host, port)
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
        from engine.service.queue.procrastinate.app import apply_schema, check_settings

        check_settings(settings)
        asyncio.run(apply_schema(settings.storage.url))
    shown = make_url(settings.storage.url).render_as_string(hide_password=True)
    print(f"database {shown} is up to date", file=sys.stderr)
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
    from engine.service.queue.procrastinate.worker import run_worker

    if not args.verbose:  # a worker logs its job transitions, like serve
        logging.getLogger().setLevel(logging.INFO)
    run_worker(settings, Pipeline)
    return 0
