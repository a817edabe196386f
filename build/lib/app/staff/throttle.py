"""Progressive delays for guessed passwords and codes, instead of a lock anyone can trigger.

A hard lock after five failures let an anonymous attacker keep every officer out. Here failures are
counted per key, and a key names one account *from one client* at sign-in (a keyed hash of the
typed email and the client address, so unknown addresses behave exactly like known ones and nothing
tells them apart), or one signed-in user for the current-password checks (password change, second
factor off, re-authentication). After ``STAFF_LOGIN_FREE_ATTEMPTS`` failures each try must wait
``STAFF_LOGIN_DELAY_SECONDS``, doubling per further failure up to ``STAFF_LOGIN_MAX_DELAY_SECONDS``;
while it waits the password is not even checked. The owner at another address has their own key and
is never slowed by the attacker's. A success clears its key.

Counters live in Redis with a day's expiry (a flushed Redis forgets them: the per-IP rate limit and
argon2 still bound guessing). What the account's owner is told (how many failures since their last
sign-in) is kept on the account itself, in the database (``app.staff.signin``).
"""

from __future__ import annotations

import time

from flask import current_app

from app.queue import get_redis
from app.security import keyed_hash

COUNTER_TTL_SECONDS = 86400


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


def fail(key: str) -> int:
    """Count a failure; returns the delay the next try now has to wait (0 while attempts are free)."""
    conn = get_redis()
    with conn.pipeline() as pipe:
        pipe.hincrby(key, "n", 1)
        pipe.hset(key, "at", repr(time.time()))
        pipe.expire(key, COUNTER_TTL_SECONDS)
        failures = pipe.execute()[0]
    return delay_after(int(failures))


def clear(key: str) -> None:
    get_redis().delete(key)
