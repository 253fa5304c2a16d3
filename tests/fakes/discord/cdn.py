"""The fake's CDN: serves the world's files (the bot's uploads and the test's attachments) and records each fetch."""

from __future__ import annotations

import time

from aiohttp import web

from tests.fakes.discord.state import Call, World


class Cdn:
    """GET /cdn/attachments/{channel}/{id}/{filename}."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One attachment's bytes, or 404 for an unknown id or a wrong filename."""
        calls = self.world.calls
        calls.append(Call("GET", request.path, None, {}, time.monotonic(), dict(request.query)))
        stored = self.world.files.get(int(request.match_info["id"]))
        if stored is None or stored[0] != request.match_info["filename"]:
            calls[-1].status = 404
            return web.Response(status=404, text="Not Found")
        calls[-1].status = 200
        return web.Response(body=stored[2], headers={"Content-Type": stored[1]})
