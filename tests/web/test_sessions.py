"""Dashboard sign-in pieces: cookie secrets and digests, CSRF tokens, the admin token check and the rate limit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine.service.web import sessions
from engine.service.web.sessions import (
    AdminSession,
    SignInLimiter,
    csrf_for,
    csrf_matches,
    digest,
    new_secret,
    token_matches,
    well_formed,
)

NOW = datetime(2026, 3, 5, 14, 20, tzinfo=timezone.utc)
HEX = set("0123456789abcdef")
# Strings no browser form should send, which must be refused rather than raise.
ODD = ["é" * 64, "\udc80" * 64, "\x00" * 64, "токен"]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_csrf_token_matches_only_its_own_secret_and_purpose() -> None:
    mine, theirs = new_secret(), new_secret()
    token = csrf_for(mine)
    assert len(token) == 64 and set(token) <= HEX
    assert csrf_for(mine) == token, "the token is derived, not stored: the same secret gives the same token"
    assert csrf_matches(mine, token) is True
    assert csrf_matches(theirs, token) is False, "another session's token is useless here"
    assert csrf_matches(mine, csrf_for(theirs)) is False
    assert csrf_for(mine, "signin") != token
    assert csrf_matches(mine, csrf_for(mine, "signin")) is False, "a sign-in token does not pass for a form's"
    assert csrf_matches(mine, csrf_for(mine, "signin"), "signin") is True
    assert csrf_matches(mine, token, "signin") is False


def test_a_wrong_or_strange_presented_csrf_token_is_refused_without_raising() -> None:
    secret = new_secret()
    token = csrf_for(secret)
    wrong = [None, "", "0" * 64, token.upper(), token[:-1], token + "0", token[:-1] + "\udc80", token[:-1] + "é", *ODD]
    assert [csrf_matches(secret, presented) for presented in wrong] == [False] * len(wrong)
    assert csrf_matches(secret, token) is True


@pytest.mark.parametrize("secret", [None, "", "short", "A" * 42, "A" * 44, "A" * 42 + "=", "é" * 43, "\udc80" * 43])
def test_a_malformed_secret_matches_no_token_without_raising(secret: str | None) -> None:
    # A token that really was made from the malformed secret (where one can be) is refused too.
    presented = csrf_for(secret) if secret and secret.isascii() else csrf_for(new_secret())
    assert csrf_matches(secret, presented) is False


def test_well_formed_accepts_the_secrets_we_make() -> None:
    made = {new_secret() for _ in range(200)}
    assert len(made) == 200
    assert all(len(s) == 43 and well_formed(s) for s in made)
    assert well_formed("A" * 21 + "-_" + "z9" * 10) is True, "the whole URL-safe alphabet is allowed"


@pytest.mark.parametrize(
    "value",
    [None, "", "A" * 42, "A" * 44, "A" * 42 + "+", "A" * 42 + "/", "A" * 42 + "=", "A" * 42 + " ", "A" * 43 + "\n",
     "\n" + "A" * 43, "é" * 43, "\udc80" * 43, "A" * 21 + "." + "A" * 21],
)  # fmt: skip
def test_well_formed_refuses_every_other_shape(value: str | None) -> None:
    assert well_formed(value) is False


def test_digest_is_the_sha256_hex_of_the_secret_and_differs_per_secret() -> None:
    # The published SHA-256 test vector for "abc".
    assert digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    secrets = [new_secret() for _ in range(50)]
    digests = [digest(s) for s in secrets]
    assert len(set(digests)) == 50
    assert all(len(d) == 64 and set(d) <= HEX for d in digests)
    assert all(s not in d for s, d in zip(secrets, digests))
    assert digest(secrets[0]) == digests[0]


def test_token_matches_only_the_admin_token_and_never_raises() -> None:
    assert token_matches("s3cret-admin", "s3cret-admin") is True
    assert token_matches("s3cret-admim", "s3cret-admin") is False
    assert token_matches("s3cret-admi", "s3cret-admin") is False
    assert token_matches("s3cret-admin ", "s3cret-admin") is False
    assert token_matches("", "s3cret-admin") is False
    assert token_matches("s3cret-admin", None) is False, "no admin token configured: nothing signs in"
    assert token_matches("", None) is False
    for odd in ODD:
        assert token_matches(odd, "s3cret-admin") is False
    assert token_matches("clé-admin", "clé-admin") is True, "a non-ASCII admin token still works"


def test_a_new_admin_session_ends_hours_from_now_and_carries_its_own_csrf_token() -> None:
    session = AdminSession.new(8, NOW)
    assert session.expires_at == NOW + timedelta(hours=8)
    assert well_formed(session.secret)
    assert session.csrf == csrf_for(session.secret) and csrf_matches(session.secret, session.csrf)
    assert AdminSession.new(0.5, NOW).expires_at == NOW + timedelta(minutes=30)
    other = AdminSession.new(8, NOW)
    assert other.secret != session.secret and other.csrf != session.csrf

    before = datetime.now(timezone.utc)
    unclocked = AdminSession.new(1)
    after = datetime.now(timezone.utc)
    assert before + timedelta(hours=1) <= unclocked.expires_at <= after + timedelta(hours=1)
    assert unclocked.expires_at.utcoffset() == timedelta(0)


def test_sign_in_allows_the_attempts_then_waits_until_the_window_ends() -> None:
    clock = Clock()
    limiter = SignInLimiter(attempts=3, window_s=60, clock=clock)
    start = clock.now
    for n in range(3):
        assert limiter.wait_s("10.0.0.1") == 0.0, f"attempt {n + 1} of 3 is allowed"
        limiter.failed("10.0.0.1")
        clock.now += 10  # failures at start, start+10, start+20
    assert clock.now == start + 30
    assert limiter.wait_s("10.0.0.1") == pytest.approx(30.0), "until the first failure is a window old"
    clock.now = start + 59.5
    assert limiter.wait_s("10.0.0.1") == pytest.approx(0.5)
    clock.now = start + 60
    assert limiter.wait_s("10.0.0.1") == 0.0, "the first failure has left the window"
    limiter.failed("10.0.0.1")
    assert limiter.wait_s("10.0.0.1") == pytest.approx(10.0), "now the second failure is the oldest"


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    limiter = SignInLimiter(attempts=3, window_s=60, clock=clock)
    for _ in range(3):
        limiter.failed("10.0.0.1")
    assert limiter.wait_s("10.0.0.1") > 0
    clock.now += 3600
    assert limiter.wait_s("10.0.0.1") == 0.0
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.1")
    assert limiter.wait_s("10.0.0.1") == 0.0, "two fresh failures are under the limit; the old ones don't count"
    limiter.failed("10.0.0.1")
    assert limiter.wait_s("10.0.0.1") == pytest.approx(60.0)


def test_a_right_token_clears_the_address_and_addresses_are_apart() -> None:
    clock = Clock()
    limiter = SignInLimiter(attempts=2, window_s=60, clock=clock)
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.1")
    assert limiter.wait_s("10.0.0.1") == pytest.approx(60.0)
    assert limiter.wait_s("10.0.0.2") == 0.0, "one address's failures don't block another"
    limiter.failed("10.0.0.2")
    assert limiter.wait_s("10.0.0.2") == 0.0

    limiter.succeeded("10.0.0.1")
    assert limiter.wait_s("10.0.0.1") == 0.0
    limiter.failed("10.0.0.1")
    assert limiter.wait_s("10.0.0.1") == 0.0, "it starts afresh: one failure of two"
    limiter.succeeded("10.0.0.9")  # an address never seen: nothing to clear, nothing raised
    limiter.failed("10.0.0.2")
    assert limiter.wait_s("10.0.0.2") == pytest.approx(60.0), "a success elsewhere clears nothing here"


def test_the_limiter_remembers_at_most_max_tracked_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "MAX_TRACKED", 4)
    clock = Clock()
    limiter = SignInLimiter(attempts=2, window_s=60, clock=clock)
    sizes = []
    for n in range(25):
        limiter.failed(f"10.0.1.{n}")
        clock.now += 1
        sizes.append(len(limiter._failures))
    assert max(sizes) == 4, sizes

    fresh = "192.0.2.1"
    assert limiter.wait_s(fresh) == 0.0
    limiter.failed(fresh)
    assert limiter.wait_s(fresh) == 0.0
    limiter.failed(fresh)
    assert limiter.wait_s(fresh) == pytest.approx(60.0), "a full table still counts a new address's failures"
    assert len(limiter._failures) <= 4


def test_when_full_the_limiter_forgets_idle_addresses_before_blocked_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "MAX_TRACKED", 4)
    clock = Clock()
    limiter = SignInLimiter(attempts=2, window_s=60, clock=clock)
    # The blocked addresses are the first ones seen, so forgetting the oldest would forget them.
    for address in ("blocked-1", "blocked-2", "idle-1", "idle-2"):
        limiter.failed(address)
    clock.now += 120  # every failure so far is out of the window
    for blocked in ("blocked-1", "blocked-2"):
        limiter.failed(blocked)
        limiter.failed(blocked)
    limiter.failed("newcomer")
    assert set(limiter._failures) == {"blocked-1", "blocked-2", "newcomer"}
    assert limiter.wait_s("blocked-1") > 0 and limiter.wait_s("blocked-2") > 0, "a full table is no way out"


def test_the_memory_bound_holds_when_each_attempt_is_checked_first_as_sign_in_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # signin.signin() asks wait_s(address) before it records failed(address), for every POST.
    monkeypatch.setattr(sessions, "MAX_TRACKED", 4)
    clock = Clock()
    limiter = SignInLimiter(attempts=2, window_s=60, clock=clock)
    sizes = []
    for n in range(25):
        address = f"2001:db8::{n:x}"
        assert limiter.wait_s(address) == 0.0
        limiter.failed(address)
        clock.now += 1
        sizes.append(len(limiter._failures))
    assert max(sizes) <= 4, f"the limiter grew past MAX_TRACKED: {sizes}"
