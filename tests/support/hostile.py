"""The hostile-request corpus: raw HTTP an attacker with a valid bot token sends, and what each must get.

Every request goes over a raw loopback socket, so it can carry what an HTTP client library refuses to send
(non-UTF-8 header bytes, a NUL in a header, an 8 KB URL, a body that drips or stops). tests/service/test_hostile.py
asserts each expectation against `makeitmove serve`; bench/service.py replays the corpus in a loop beside normal
traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from PIL import Image

from tests.support.memes import meme

BOUNDARY = "hostile-boundary-7f3a"
DEEP = 10_000


@dataclass
class Target:
    """Where the engine listens and what the corpus may use: tokens and a job made for it."""

    port: int
    token: str
    admin_token: str
    job_id: str = ""
    fresh: Callable[[], int] = field(default_factory=lambda: iter(range(1, 10**9)).__next__)


@dataclass(frozen=True)
class Answer:
    """What came back: the status (0 when the connection closed with no answer) and the JSON body, if any."""

    status: int
    body: dict[str, object] | None
    raw: bytes


@dataclass(frozen=True)
class Case:
    """One hostile request and what it must get: a status, an error code and words of its sentence."""

    name: str
    send: Callable[[Target], Awaitable[Answer]]
    status: tuple[int, ...]
    code: str | None = None
    words: str = ""


def http(method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    """A raw HTTP/1.1 request; headers are bytes, so they may hold anything."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if body or method in ("POST", "PUT", "DELETE"):
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def bearer(target: Target, admin: bool = False) -> tuple[bytes, bytes]:
    """The Authorization header."""
    return b"Authorization", b"Bearer " + (target.admin_token if admin else target.token).encode()


def form(parts: list[tuple[str, bytes, dict[str, str]]]) -> tuple[bytes, bytes]:
    """A multipart/form-data body from (name, value, extra part headers); a part with filename= is a file."""
    out = io.BytesIO()
    for name, value, extra in parts:
        out.write(f"--{BOUNDARY}\r\n".encode())
        disposition = f'form-data; name="{name}"'
        if "filename" in extra:
            disposition += f'; filename="{extra["filename"]}"'
        out.write(f"Content-Disposition: {disposition}\r\n".encode())
        for key, val in extra.items():
            if key != "filename":
                out.write(f"{key}: {val}\r\n".encode())
        out.write(b"\r\n" + value + b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return f"multipart/form-data; boundary={BOUNDARY}".encode(), out.getvalue()


def job_form(target: Target, *, image: bytes | None = None, options: bytes = b"{}", user: str = "attacker",
             image_headers: dict[str, str] | None = None) -> tuple[bytes, bytes]:  # fmt: skip
    """The submission form, with the image and options as given."""
    parts = [("platform", b"test", {}), ("user_id", user.encode(), {}), ("chat_id", b"c1", {}),
             ("options", options, {})]  # fmt: skip
    image_part = image if image is not None else meme(seed=target.fresh())
    parts.append(("image", image_part, {"filename": "meme.png", "Content-Type": "image/png", **(image_headers or {})}))
    return form(parts)


async def exchange(target: Target, request: bytes, *, drip: float = 0.0, stop_after: int | None = None) -> Answer:
    """Send `request` and read the answer; `drip` sends the body a byte at a time, `stop_after` hangs up early.

    Every case waits for the server's answer or close, so a client replaying the corpus is closed-loop: it
    measures what each request costs the engine, not how fast one process can open sockets.
    """
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    except ConnectionError:  # not listening (yet)
        return Answer(0, None, b"")
    try:
        head, _, body = request.partition(b"\r\n\r\n")
        writer.write(head + b"\r\n\r\n")
        if stop_after is not None:  # hang up: send a FIN mid-body, then hear what the server does about it
            writer.write(body[:stop_after])
            writer.write_eof()
            await writer.drain()
            return parse(await reader.read())
        if drip:
            for n in range(len(body)):
                if reader.at_eof() or writer.is_closing():
                    break
                writer.write(body[n : n + 1])
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                try:  # an answer may come before the body is done: stop dripping then
                    early = await asyncio.wait_for(reader.read(65536), drip)
                except asyncio.TimeoutError:
                    continue
                return parse(early + await reader.read())
        else:
            writer.write(body)
            await writer.drain()
        return parse(await reader.read())
    except ConnectionError:
        return Answer(0, None, b"")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def parse(raw: bytes) -> Answer:
    """The status and JSON body of a raw HTTP response."""
    if not raw.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
        return Answer(0, None, raw)
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        body = unchunk(body)
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return Answer(int(head[9:12]), parsed if isinstance(parsed, dict) else None, raw)


def unchunk(body: bytes) -> bytes:
    """The payload of a chunked body."""
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


def deep(n: int = DEEP) -> bytes:
    """JSON nested `n` levels deep."""
    return b"[" * n + b"]" * n


def gif_with_a_huge_frame() -> bytes:
    """A 64x64 logical screen holding one 65535x65535 frame (its descriptor only: the data is one tiny block)."""
    screen = b"GIF89a" + struct.pack("<HH", 64, 64) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHH", 0, 0, 65535, 65535) + b"\x00"
    return screen + frame + b"\x02\x02\x44\x01\x00" + b"\x3b"


@functools.lru_cache(maxsize=4)
def big_png(side: int = 6000) -> bytes:
    """A PNG that is small on disk and large decoded: the kind a limited user must not get decoded."""
    out = io.BytesIO()
    Image.new("RGB", (side, side), (40, 90, 200)).save(out, "PNG", compress_level=9)
    return out.getvalue()


async def submit(target: Target, **fields: object) -> Answer:
    """POST /v1/jobs with the form built from `fields` (see job_form) and optional headers."""
    headers = list(fields.pop("headers", []))  # type: ignore[call-overload]
    content_type, body = job_form(target, **fields)  # type: ignore[arg-type]
    return await exchange(
        target, http("POST", "/v1/jobs", [bearer(target), (b"Content-Type", content_type), *headers], body)
    )


async def _deep_options(t: Target) -> Answer:
    return await submit(t, options=deep())


async def _deep_options_within_the_cap(t: Target) -> Answer:
    return await submit(t, options=deep(5000))


@functools.lru_cache(maxsize=1)
def million_keys() -> bytes:
    """An options object of a million keys (19 MB)."""
    return b"{" + b",".join(b'"k%d":0' % n for n in range(1_000_000)) + b"}"


async def _million_keys(t: Target) -> Answer:
    return await submit(t, options=million_keys())


async def _deep_delete(t: Target) -> Answer:
    headers = [bearer(t), (b"Content-Type", b"application/json")]
    return await exchange(t, http("DELETE", f"/v1/jobs/{t.job_id}", headers, deep()))


async def _deep_admin_body(t: Target) -> Answer:
    headers = [bearer(t, admin=True), (b"Content-Type", b"application/json")]
    return await exchange(
        t, http("POST", "/v1/admin/bans", headers, b'{"platform": "test", "user_id": ' + deep(3000) + b"}")
    )


async def _bearer_not_utf8(t: Target) -> Answer:
    return await exchange(t, http("GET", "/v1/users/test/u1/quota", [(b"Authorization", b"Bearer \xff\xfe")]))


async def _unknown_transfer_encoding(t: Target) -> Answer:
    return await submit(t, image_headers={"Content-Transfer-Encoding": "x-rot13"})


async def _options_not_utf8(t: Target) -> Answer:
    return await submit(t, options=b'{"prompt": "\xff\xfe"}')


async def _huge_frame_in_a_small_gif(t: Target) -> Answer:
    return await submit(t, image=gif_with_a_huge_frame())


async def _long_url(t: Target) -> Answer:
    return await exchange(t, http("GET", "/v1/jobs/" + "a" * 9000, [bearer(t)]))


async def _nul_in_a_header(t: Target) -> Answer:
    return await exchange(t, http("GET", "/v1/health", [(b"X-Probe", b"a\x00b")]))


async def _bad_method(t: Target) -> Answer:
    return await exchange(t, b"G\x01T /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")


async def _huge_header(t: Target) -> Answer:
    return await exchange(t, http("GET", "/v1/health", [(b"X-Big", b"b" * 100_000)]))


async def _arabic_digit_limit(t: Target) -> Answer:
    return await exchange(t, http("GET", "/v1/users/test/u1/jobs?limit=%D9%A3", [bearer(t)]))


async def _slow_body(t: Target) -> Answer:
    content_type, body = job_form(t)
    request = http("POST", "/v1/jobs", [bearer(t), (b"Content-Type", content_type)], body)
    return await exchange(t, request, drip=0.25)


async def _drop_mid_upload(t: Target) -> Answer:
    content_type, body = job_form(t, image=big_png(1500))
    request = http("POST", "/v1/jobs", [bearer(t), (b"Content-Type", content_type)], body)
    return await exchange(t, request, stop_after=len(body) // 2)


async def _banned_big_image(t: Target) -> Answer:
    return await submit(t, user="banned", image=big_png())


async def _key_reused_with_another_image(t: Target) -> Answer:
    key = (b"Idempotency-Key", f"reuse-{t.fresh()}".encode())
    first = await submit(t, headers=[key])
    if first.status != 202:
        return first
    return await submit(t, headers=[key])  # a fresh image under the same key


async def _key_reused_by_another_user(t: Target) -> Answer:
    key = (b"Idempotency-Key", f"shared-{t.fresh()}".encode())
    image = meme(seed=t.fresh())
    first = await submit(t, headers=[key], image=image, user="alice")
    second = await submit(t, headers=[key], image=image, user="bob")
    same = first.body and second.body and first.body.get("id") == second.body.get("id")
    return Answer(409 if same else second.status, second.body, second.raw)  # 409 here: bob got alice's job


CASES = (
    Case("options nested 10 000 deep", _deep_options, (413,), "too_large", "options field"),
    Case(
        "options nested 5 000 deep, under the size cap",
        _deep_options_within_the_cap,
        (400,),
        "bad_options",
        "nested too deeply",
    ),  # fmt: skip
    Case("options with a million keys", _million_keys, (413,), "too_large", "options"),
    Case("DELETE with a body nested 10 000 deep", _deep_delete, (400,), "bad_json", "nested too deeply"),
    Case("admin body nested 3 000 deep", _deep_admin_body, (400,), "bad_json", "nested too deeply"),
    Case("a bearer token that isn't UTF-8", _bearer_not_utf8, (401,), "unauthorized"),
    Case("a part with an unknown Content-Transfer-Encoding", _unknown_transfer_encoding, (400,), "bad_multipart"),
    Case("options that aren't UTF-8", _options_not_utf8, (400,), "bad_multipart"),
    Case("a 64x64 GIF holding a 65535x65535 frame", _huge_frame_in_a_small_gif, (413,), "too_many_pixels", "65535"),
    Case("a URL of 9 000 bytes", _long_url, (400, 414), None),
    Case("a NUL in a header", _nul_in_a_header, (400,), "bad_request"),
    Case("a method that isn't one", _bad_method, (400,), "bad_request"),
    Case("a header of 100 KB", _huge_header, (400, 431), None),
    Case("limit=٣ (an Arabic-Indic digit)", _arabic_digit_limit, (400,), "bad_limit"),
    Case("a body dripping 4 bytes a second", _slow_body, (408,), "too_slow", "too slowly"),
    Case("a client hanging up mid-upload", _drop_mid_upload, (0, 400), None),
    Case("a banned user's 36 MP image", _banned_big_image, (403,), "banned"),
    Case(
        "an Idempotency-Key reused with another image", _key_reused_with_another_image, (409,), "idempotency_conflict"
    ),
    Case("an Idempotency-Key another user used", _key_reused_by_another_user, (202,), None),
)
