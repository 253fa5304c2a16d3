"""Dashboard sign-in: the session cookie, the CSRF token every form carries, and the sign-in rate limit.

The cookie holds 32 random bytes; the database holds only their sha256, with an expiry, so a sign-out or
an expiry holds on every replica and a copy of the database opens no session. A form's CSRF token is an
HMAC of the session's own secret, so it needs no storage and a token from one session is useless in another.
Before sign-in, a short-lived cookie plays the session's part, so the sign-in form has a token too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from aiohttp import web

SESSION_COOKIE = "mim_admin"
SIGNIN_COOKIE = "mim_signin"
SIGNIN_COOKIE_S = 3600  # the sign-in form's own token lives this long
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
# secrets.token_urlsafe(32): 43 characters of the URL-safe alphabet; anything else is not ours
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_TRACKED = 10_000  # addresses the sign-in limiter remembers at most


def new_secret() -> str:
    """A fresh cookie value."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What the database stores for a session cookie."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def csrf_for(secret: str, purpose: str = "forms") -> str:
    """The CSRF token forms carry for the session (or sign-in cookie) `secret`."""
    return hmac.new(secret.encode("ascii"), f"makeitmove csrf {purpose}".encode(), hashlib.sha256).hexdigest()


def csrf_matches(secret: str | None, presented: str | None, purpose: str = "forms") -> bool:
    """The presented token is the one for `secret`, compared in constant time; never raises."""
    if not secret or not presented or not well_formed(secret):
        return False
    return hmac.compare_digest(csrf_for(secret, purpose).encode(), presented.encode("utf-8", "surrogatepass"))


def well_formed(secret: str | None) -> bool:
    """The cookie value has the shape of one we made (checked before any database read)."""
    return secret is not None and TOKEN.fullmatch(secret) is not None


def token_matches(presented: str, expected: str | None) -> bool:
    """The admin token typed into the sign-in form is the engine's, compared in constant time."""
    if expected is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def is_https(request: web.Request) -> bool:
    """The browser reached us over HTTPS (directly, or through a proxy that says so)."""
    # Trusting the proxy's header here can only make a cookie stricter (Secure), never weaker.
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str, max_age_s: int) -> None:
    """A cookie scripts can't read, never sent from another site, Secure on HTTPS."""
    response.set_cookie(
        name, value, max_age=max_age_s, path="/", httponly=True, samesite="Strict", secure=is_https(request)
    )


def clear_cookie(response: web.StreamResponse, request: web.Request, name: str) -> None:
    """Remove a cookie from the browser."""
    response.del_cookie(name, path="/", secure=is_https(request), httponly=True, samesite="Strict")


@dataclass(frozen=True)
class AdminSession:
    """A signed-in admin: the cookie's secret, its forms' CSRF token and when it ends."""

    secret: str
    expires_at: datetime

    @property
    def csrf(self) -> str:
        """The token every form of this session carries."""
        return csrf_for(self.secret)

    @classmethod
    def new(cls, hours: float, now: datetime | None = None) -> AdminSession:
        """A fresh session that ends `hours` from now."""
        now = now or datetime.now(timezone.utc)
        return cls(new_secret(), now + timedelta(hours=hours))


class SignInLimiter:
    """Wrong admin tokens per client address: after `attempts` within `window_s`, sign-in waits.

    In memory, per process: behind several replicas an attacker gets `attempts` per replica per window,
    which against a random token of any sensible length changes nothing; a right token clears the address.
    """

    def __init__(self, attempts: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def wait_s(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it may now (asking never stores the address)."""
        failures = self._failures.get(address)
        if failures is None:
            return 0.0
        self._prune(failures)
        if len(failures) < self.attempts:
            return 0.0
        return max(0.0, failures[0] + self.window_s - self.clock())

    def failed(self, address: str) -> None:
        """One more wrong token from `address`."""
        failures = self._failures.get(address)
        if failures is None:
            if len(self._failures) >= MAX_TRACKED:
                self._forget_idle()
            failures = self._failures[address] = deque(maxlen=self.attempts)
        self._prune(failures)
        failures.append(self.clock())

    def succeeded(self, address: str) -> None:
        """A right token: the address starts afresh."""
        self._failures.pop(address, None)

    def _prune(self, failures: deque[float]) -> None:
        cutoff = self.clock() - self.window_s
        while failures and failures[0] <= cutoff:
            failures.popleft()

    def _forget_idle(self) -> None:
        cutoff = self.clock() - self.window_s
        for address in [a for a, f in self._failures.items() if not f or f[-1] <= cutoff]:
            del self._failures[address]
        if len(self._failures) >= MAX_TRACKED:  # still full: forget the oldest half rather than grow
            for address in list(self._failures)[: MAX_TRACKED // 2]:
                del self._failures[address]
