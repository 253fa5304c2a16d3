"""A loopback fake of the Telegram Bot API: enough methods for the real python-telegram-bot to run against."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_ID = 7000
BOT_USERNAME = "makeitmove_bot"
# request fields PTB sends JSON-encoded; every other field is kept as the string it arrived as
JSON_FIELDS = {"reply_markup", "reply_parameters", "commands", "allowed_updates", "entities", "caption_entities"}
WAIT_S = 90.0  # how long a wait may take before the test fails: only a guard against a hang, never a speed limit


@dataclass
class Call:
    """One request the bot made."""

    method: str
    params: dict[str, Any]
    at: float
    uploads: dict[str, bytes] = field(default_factory=dict)
    result: Any = None

    @property
    def chat_id(self) -> int | None:
        """The chat the call addressed, as an int."""
        return int(value) if (value := self.params.get("chat_id")) is not None else None

    @property
    def text(self) -> str:
        """The text or caption the call sent."""
        return str(self.params.get("text") or self.params.get("caption") or "")

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The inline buttons the call attached, flattened."""
        markup = self.params.get("reply_markup") or {}
        return [button for row in markup.get("inline_keyboard", []) for button in row]


class FakeTelegram:
    """The Bot API at /bot<token>/<method> and files at /file/bot<token>/<path>, on 127.0.0.1."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, bytes)
        self.webhook: dict[str, Any] = {}  # the last setWebhook's parameters; empty while polling
        self._updates: list[dict[str, Any]] = []
        self.offsets: list[int] = []  # the offset of every getUpdates, in the order they came
        self._arrived = asyncio.Event()
        self._failures: dict[str, int] = {}  # method -> retry_after of its next call's 429
        self._holds: dict[str, asyncio.Event] = {}  # method -> set when its held calls may be answered
        self._ids = itertools.count(1)
        self._message_ids = itertools.count(100_000)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- serving ---

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_post(f"/bot{self.token}/{{method}}", self._method)
        app.router.add_get(f"/bot{self.token}/{{method}}", self._method)
        app.router.add_get(f"/file/bot{self.token}/{{path:.+}}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base_url(self) -> str:
        """PTB's base_url."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def file_base_url(self) -> str:
        """PTB's base_file_url."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    # --- what a test does ---

    def add_file(self, data: bytes, name: str) -> str:
        """Store a file the bot may download; returns its file_id."""
        file_id = f"file-{next(self._ids)}-{name}"
        self.files[file_id] = (f"documents/{file_id}", data)
        return file_id

    def push(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates; a message in it becomes known for replies. Returns its update_id."""
        update_id = next(self._ids)
        update = {**update, "update_id": update_id}
        message = update.get("message")
        if message:
            self.messages[(message["chat"]["id"], message["message_id"])] = message
        self._updates.append(update)
        self._arrived.set()
        return update_id

    def repush(self, update_id: int) -> int:
        """The same update again under a new id, as Telegram re-delivers after an unconfirmed offset."""
        original = next(u for u in self._updates if u["update_id"] == update_id)
        return self.push({k: v for k, v in original.items() if k != "update_id"})

    @property
    def last_update_id(self) -> int:
        """The id of the newest update pushed, or 0."""
        return self._updates[-1]["update_id"] if self._updates else 0

    def fail_next(self, method: str, retry_after: int = 1) -> None:
        """The next call of `method` gets a 429 with this retry_after."""
        self._failures[method] = retry_after

    def hold(self, method: str) -> None:
        """Record calls of `method` but answer none of them until release(method)."""
        self._holds[method] = asyncio.Event()

    def release(self, method: str) -> None:
        """Answer the held calls of `method` (as Telegram would have), and the later ones at once."""
        self._holds.pop(method).set()

    def of(self, method: str, chat_id: int | None = None) -> list[Call]:
        """The recorded calls of one method, optionally to one chat."""
        return [c for c in self.calls if c.method == method and (chat_id is None or c.chat_id == chat_id)]

    async def wait_fetched(self, update_id: int, *, since: int = 0, timeout: float = WAIT_S) -> None:
        """Wait until a getUpdates (the `since`-th or a later one) asked for an offset past `update_id`.

        The bot asks so only once it has taken every update up to `update_id` (python-telegram-bot puts each in
        its update queue before it asks for the next ones).
        """
        deadline = time.monotonic() + timeout
        while not any(offset > update_id for offset in self.offsets[since:]):
            if time.monotonic() > deadline:
                raise AssertionError(f"update {update_id} not fetched within {timeout} s; offsets: {self.offsets[-5:]}")
            await asyncio.sleep(0.02)

    async def wait_for(
        self, method: str, where: Callable[[Call], bool] = lambda c: True, *, count: int = 1, timeout: float = WAIT_S
    ) -> list[Call]:
        """Poll the call log until `count` calls of `method` match, or fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            matched = [c for c in self.calls if c.method == method and where(c)]
            if len(matched) >= count:
                return matched
            if time.monotonic() > deadline:
                seen = [(c.method, c.text[:60]) for c in self.calls[-15:]]
                raise AssertionError(f"no {count}x {method} within {timeout} s; last calls: {seen}")
            await asyncio.sleep(0.02)

    # --- the API ---

    async def _file(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        for file_path, data in self.files.values():
            if file_path == path:
                return web.Response(body=data)
        raise web.HTTPNotFound()

    async def _method(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, uploads = await self._read(request)
        call = Call(method, params, time.monotonic(), uploads)
        if method != "getUpdates":
            self.calls.append(call)
        if method in self._holds:
            await self._holds[method].wait()
        retry_after = self._failures.pop(method, None)
        if retry_after is not None:
            call.result = "429"
            body = {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {retry_after}",
                "parameters": {"retry_after": retry_after},
            }
            return web.json_response(body, status=429)
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        result = await handler(params, uploads)
        if isinstance(result, web.Response):
            return result
        call.result = result
        return web.json_response({"ok": True, "result": result})

    async def _read(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = {}
        uploads: dict[str, bytes] = {}
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if part.filename is not None:  # type: ignore[union-attr]
                    uploads[part.name or ""] = await part.read()  # type: ignore[union-attr]
                else:
                    params[part.name or ""] = await part.text()  # type: ignore[union-attr]
        elif request.content_type == "application/json":
            params = await request.json()
        else:
            params = dict(await request.post())  # type: ignore[arg-type]
        for key in JSON_FIELDS & params.keys():
            if isinstance(params[key], str):
                params[key] = json.loads(params[key])
        return params, uploads

    def _error(self, code: int, description: str) -> web.Response:
        return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)

    def _bot_message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        known = next((m["chat"] for (c, _), m in self.messages.items() if c == chat_id), None)
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": known or {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Make It Move", "username": BOT_USERNAME},
            **content,
        }
        reply = (params.get("reply_parameters") or {}).get("message_id")
        if reply is not None and (chat_id, int(reply)) in self.messages:
            message["reply_to_message"] = self.messages[(chat_id, int(reply))]
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        self.messages[(chat_id, message["message_id"])] = message
        return message

    async def _getMe(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        return {
            "id": BOT_ID, "is_bot": True, "first_name": "Make It Move", "username": BOT_USERNAME,
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False,
        }  # fmt: skip

    async def _getUpdates(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        offset = int(params.get("offset") or 0)
        self.offsets.append(offset)
        # a short long-poll: tests stop the bot often, and a stopping updater waits for this answer
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 0.5)
        while True:
            pending = [u for u in self._updates if u["update_id"] >= offset]
            if pending or time.monotonic() >= deadline:
                return pending[: int(params.get("limit") or 100)]
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=max(deadline - time.monotonic(), 0.01))
            except asyncio.TimeoutError:
                pass

    async def _getFile(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        file_id = params["file_id"]
        if file_id not in self.files:
            return self._error(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        return {"file_id": file_id, "file_unique_id": file_id, "file_size": len(data), "file_path": path}

    async def _sendMessage(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        return self._bot_message(params, text=params["text"])

    async def _sendAnimation(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        data = uploads.get("animation", b"")
        file_id = self.add_file(data, "animation.mp4")
        animation = {"file_id": file_id, "file_unique_id": file_id, "width": 64, "height": 64, "duration": 1}
        return self._bot_message(params, animation=animation, caption=params.get("caption", ""))

    async def _editMessageText(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        key = (int(params["chat_id"]), int(params["message_id"]))
        if key not in self.messages:
            return self._error(400, "Bad Request: message to edit not found")
        self.messages[key] = {**self.messages[key], **{k: params[k] for k in ("text", "reply_markup") if k in params}}
        return self.messages[key]

    _editMessageReplyMarkup = _editMessageText  # noqa: N815  the same edit, of the buttons alone

    async def _deleteMessage(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        key = (int(params["chat_id"]), int(params["message_id"]))
        if self.messages.pop(key, None) is None:
            return self._error(400, "Bad Request: message to delete not found")
        return True

    async def _answerCallbackQuery(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        return True

    async def _sendChatAction(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        return True

    async def _setMyCommands(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        return True

    async def _deleteWebhook(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        self.webhook = {}
        return True

    async def _setWebhook(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        if not params.get("url"):
            return self._error(400, "Bad Request: url is empty")
        self.webhook = dict(params)
        return True

    async def _getWebhookInfo(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:  # noqa: N802
        url = self.webhook.get("url", "")
        return {"url": url, "has_custom_certificate": False, "pending_update_count": 0}

    async def _close(self, params: dict[str, Any], uploads: dict[str, bytes]) -> Any:
        return True


class Users:
    """Builds the updates users send: messages with photos, documents, stickers, commands and button taps."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake
        self._message_ids = itertools.count(1)

    def message(
        self, user: int, chat: int | None = None, *, text: str | None = None, reply_to: dict[str, Any] | None = None,
        chat_type: str | None = None, **content: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """Push one message update (chat defaults to the user's private chat); returns the message."""
        chat_id = user if chat is None else chat
        kind = chat_type or ("private" if chat_id > 0 else "supergroup")
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": kind, **({"title": "memes"} if kind != "private" else {})},
            "from": {"id": user, "is_bot": False, "first_name": f"user{user}"},
            **content,
        }
        if text is not None:
            key = "caption" if {"photo", "document", "sticker", "animation", "video"} & content.keys() else "text"
            message[key] = text
            if text.startswith("/"):
                command = text.split()[0]
                message[f"{key}_entities" if key == "caption" else "entities"] = [
                    {"type": "bot_command", "offset": 0, "length": len(command)}
                ]
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        self.fake.push({"message": message})
        return message

    def photo(self, data: bytes) -> dict[str, Any]:
        """The `photo` field of a message: two sizes, the larger is the file."""
        big = self.fake.add_file(data, "photo.jpg")
        small = self.fake.add_file(data, "thumb.jpg")
        return {
            "photo": [
                {"file_id": small, "file_unique_id": small, "width": 32, "height": 24},
                {"file_id": big, "file_unique_id": big, "width": 160, "height": 120, "file_size": len(data)},
            ]
        }

    def document(self, data: bytes, name: str, mime: str) -> dict[str, Any]:
        """The `document` field of a message."""
        file_id = self.fake.add_file(data, name)
        doc = {"file_id": file_id, "file_unique_id": file_id, "file_name": name, "mime_type": mime}
        return {"document": {**doc, "file_size": len(data)}}

    def animation(self, data: bytes, name: str = "animation.mp4", mime: str = "video/mp4") -> dict[str, Any]:
        """The `animation` and `document` fields of a GIF as Telegram sends it (an MP4 unless sent as a file)."""
        fields = self.document(data, name, mime)["document"]
        return {"animation": {**fields, "width": 64, "height": 64, "duration": 1}, "document": fields}

    def video(self, data: bytes, name: str = "video.mp4") -> dict[str, Any]:
        """The `video` field of a message."""
        fields = self.document(data, name, "video/mp4")["document"]
        return {"video": {**fields, "width": 64, "height": 64, "duration": 1}}

    def sticker(self, data: bytes, *, animated: bool = False) -> dict[str, Any]:
        """The `sticker` field of a message: a static WebP sticker unless animated."""
        file_id = self.fake.add_file(data, "sticker.webp")
        return {
            "sticker": {
                "file_id": file_id, "file_unique_id": file_id, "type": "regular", "width": 160, "height": 120,
                "is_animated": animated, "is_video": False, "file_size": len(data),
            }
        }  # fmt: skip

    def tap(self, user: int, message: dict[str, Any], data: str) -> str:
        """Push a button tap on a bot message; returns the callback query id."""
        query_id = f"q{next(self._message_ids)}"
        sender = {"id": user, "is_bot": False, "first_name": f"user{user}"}
        query = {"id": query_id, "from": sender, "chat_instance": "ci", "message": message, "data": data}
        self.fake.push({"callback_query": query})
        return query_id
