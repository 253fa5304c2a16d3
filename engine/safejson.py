"""The one parser for JSON that comes from outside: request bodies, form fields, checkpoint headers, state files.

Bytes from a client must never cost unbounded time or memory, nor surface as an internal error: the size is
capped before parsing, nesting and element counts after it (the C decoder itself gives up on very deep input
with a RecursionError), and every way of failing is one BadJSON whose message a chat user can read. Standard
library only, so the bots (whose image has no numpy) use it for their state files too.
"""

from __future__ import annotations

import json
from typing import Any

from engine.errors import UserError

MAX_DEPTH = 32  # no document we accept nests deeper than a handful of levels
MAX_ITEMS = 100_000  # values in one document, containers and scalars alike


class BadJSON(UserError):
    """Input that isn't JSON we accept; `message` names what was sent and why, as a sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="bad_json")


def loads(
    data: str | bytes | bytearray, *, what: str, max_bytes: int, max_depth: int = MAX_DEPTH,
    max_items: int = MAX_ITEMS,
) -> Any:  # fmt: skip
    """Parse `data` (what: "options field", "request body", …); BadJSON if it is too big, too deep or not JSON."""
    if len(data) > max_bytes:  # a str is measured in characters: never more than its UTF-8 bytes
        raise BadJSON(f"The {what} is too large (the limit is {_size(max_bytes)}).")
    try:
        value = json.loads(data)
    except RecursionError:
        raise BadJSON(f"The {what} is nested too deeply.") from None
    except UnicodeError:
        raise BadJSON(f"The {what} isn't UTF-8 text.") from None
    except ValueError:  # JSONDecodeError, and a lone surrogate json refuses to decode
        raise BadJSON(f"The {what} isn't valid JSON.") from None
    _check_shape(value, what, max_depth, max_items)
    return value


def loads_object(data: str | bytes | bytearray, *, what: str, max_bytes: int, **limits: int) -> dict[str, Any]:
    """Like loads, for documents that must be a JSON object."""
    value = loads(data, what=what, max_bytes=max_bytes, **limits)
    if not isinstance(value, dict):
        raise BadJSON(f"The {what} must be a JSON object.")
    return value


def _check_shape(value: Any, what: str, max_depth: int, max_items: int) -> None:
    """Depth and element count, walked without recursion so the walk itself can't overflow."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    items = 0
    while stack:
        node, depth = stack.pop()
        items += 1
        if items > max_items:
            raise BadJSON(f"The {what} has too many values (the limit is {max_items:,}).")
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth >= max_depth:
            raise BadJSON(f"The {what} is nested too deeply (the limit is {max_depth} levels).")
        stack.extend((child, depth + 1) for child in children)


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB" if n >= 1024 * 1024 else f"{max(1, n // 1024)} KB"
