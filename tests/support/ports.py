"""A free loopback port, for the tests and benchmarks that start servers."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nobody listens on now (a server restarted in a test comes back on the same one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
