"""The HTTP server around the app: aiohttp's own protocol errors answered in the API's JSON shape.

A request aiohttp can't parse (a URL over 8190 bytes, a NUL in a header, a bad method) never reaches the app's
middlewares: aiohttp answers it from its RequestHandler as plain text that can echo the request line. Serving
through ServiceRunner swaps that for `{code, message}` JSON, one quiet log line, and no echo. RequestHandler
and AppRunner._make_server are aiohttp internals, hence the `aiohttp<4` pin and tests/service/test_hostile.py.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from engine.service.api.middleware import HTTP_ERRORS, INTERNAL, json_error

log = logging.getLogger(__name__)

# The API's own sentences (HTTP_ERRORS), plus the statuses only aiohttp's protocol layer answers with.
SENTENCES = {
    **HTTP_ERRORS,
    413: ("too_large", "That request is too large."),
    414: ("too_large", "That request's address is too long."),
    431: ("too_large", "That request's headers are too large."),
    500: ("internal", INTERNAL),
    501: ("not_implemented", "That request uses something this engine doesn't support."),
    504: ("timeout", "That request took too long."),
}


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, with its error pages replaced by the API's JSON errors."""

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """The JSON error for a request aiohttp couldn't parse or whose handler escaped the app."""
        if status >= 500:
            log.error("internal error serving %s", request.remote, exc_info=exc)
        else:  # the client's bytes: one line, never the bytes themselves
            log.info("refused an unreadable request from %s: HTTP %d %s", request.remote, status, type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("the response had started; the connection is closed instead")
        code, sentence = SENTENCES.get(status, ("bad_request" if status < 500 else "internal", _phrase(status)))
        response = json_error(status, code, sentence)
        response.force_close()
        return response


class JsonErrorServer(web.Server):
    """web.Server whose connections are JsonErrorRequestHandlers."""

    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class ServiceRunner(web.AppRunner):
    """web.AppRunner serving through JsonErrorServer; use it wherever the engine app is served."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return JsonErrorServer(
            server.request_handler, request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation, loop=server._loop, **server._kwargs,
        )  # fmt: skip


def _phrase(status: int) -> str:
    try:
        return f"{HTTPStatus(status).phrase}."
    except ValueError:
        return "That request can't be answered."


def serve(app: web.Application, host: str, port: int, **options: Any) -> None:
    """Serve `app` until SIGINT or SIGTERM, as web.run_app does, through ServiceRunner."""

    async def main() -> None:
        runner = ServiceRunner(app, access_log=None, handle_signals=True, **options)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            await asyncio.Event().wait()  # until a signal raises GracefulExit
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except (web.GracefulExit, KeyboardInterrupt):
        pass
