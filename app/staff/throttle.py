"""Progressive delays for guessed passwords and codes, instead of a lock anyone can trigger.

A hard lock after five failures let an anonymous attacker keep every officer out. Here failures are
counted per key, and a key names one account *from one client* at sign-in (a keyed hash of the
typed email and the client address, so unknown addresses behave exactly like known ones and nothing
tells them apart), or one signed-in user for the current-password checks (password change, second
factor off, re-authentication). After ``STAFF_LOGIN_FREE_ATTEMPTS`` failures each try must wait
``STAFF_LOGIN_DELAY_SECONDS``, doubling per further failure up to ``STAFF_LOGIN_MAX_DELAY_SECONDS``;
while it waits the password is not even checked. The owner at another address has their own key and
is never slowed by the attacker's. A success clears its key.

A try is counted before its password or code is checked, and taken back when it was right
(``begin``/``forgive``): a Redis that cannot record it (away, read-only after a failover, full)
refuses every try alike (503), so nothing tells a right password from a wrong one uncounted.

Counters live in Redis with a day's expiry (a flushed Redis forgets them: the per-IP rate limit and
argon2 still bound guessing). What the account's owner is told (how many failures since their last
sign-in) is kept on the account itself, in the database (``app.staff.signin``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis
from flask import current_app

from app.queue import get_redis
from app.security import keyed_hash

COUNTER_TTL_SECONDS = 86400
log = logging.getLogger(__name__)


def login_key(email: str, ip: str | None) -> str:
    return "staff-throttle:login:" + keyed_hash("staff-throttle-login", f"{email}\0{ip or '-'}", 32)


def account_key(user_id: int) -> str:
    return f"staff-throttle:account:{user_id}"


def delay_after(failures: int) -> int:
    """Seconds a try must wait after ``failures`` consecutive failures."""
    cfg = current_app.config
    over = failures - cfg["STAFF_LOGIN_FREE_ATTEMPTS"]
    if over < 0:
        return 0
    return min(cfg["STAFF_LOGIN_DELAY_SECONDS"] * 2 ** min(over, 30), cfg["STAFF_LOGIN_MAX_DELAY_SECONDS"])


def wait_seconds(key: str) -> int:
    """How long a try under ``key`` must still wait (0: go ahead)."""
    failures, last = get_redis().hmget(key, "n", "at")
    if failures is None or last is None:
        return 0
    remaining = float(last) + delay_after(int(failures)) - time.time()
    return max(0, int(remaining + 0.999))


@dataclass(frozen=True)
class Attempt:
    """A try counted as a failure before its secret is checked (``begin``); ``forgive`` takes it back."""

    key: str
    failures: int  # consecutive failures with this try counted
    previous_at: bytes | None  # the last failure's time before this try

    @property
    def delay(self) -> int:
        """The delay the next try must wait if this one fails."""
        return delay_after(self.failures)


def begin(key: str) -> Attempt:
    """Count a try as a failure *before* its password or code is checked. A Redis that cannot record it
    (read-only after a failover, out of memory, a full disk) raises here, so the try is refused (503)
    before a right secret could be told from a wrong one with nothing counted."""
    with get_redis().pipeline() as pipe:
        pipe.hget(key, "at")
        pipe.hincrby(key, "n", 1)
        pipe.hset(key, "at", repr(time.time()))
        pipe.expire(key, COUNTER_TTL_SECONDS)
        previous_at, failures, *_ = pipe.execute()
    return Attempt(key, int(failures), previous_at)


def forgive(attempt: Attempt) -> None:
    """The try was right: take its count back. Counting one too many is the safe side, so a Redis that
    fails here only costs the owner one counted failure."""
    try:
        with get_redis().pipeline() as pipe:
            pipe.hincrby(attempt.key, "n", -1)
            if attempt.previous_at is None:
                pipe.hdel(attempt.key, "at")
            else:
                pipe.hset(attempt.key, "at", attempt.previous_at)
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not take back a sign-in try's count (%s)", type(exc).__name__)


def clear(key: str) -> None:
    get_redis().delete(key)
