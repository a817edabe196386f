"""Which errors mean Redis or a database is away for a moment (a restart, a failover, a network cut).

The web app answers those with a 503 page and ``Retry-After`` (``app.portal.views``); anything else
these libraries raise (a wrong Redis type, a deadlock, a missing table) is a fault or a bug and stays a
500.
"""

from __future__ import annotations

import redis
from sqlalchemy import exc as sa_exc

REDIS_AWAY = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, redis.OutOfMemoryError)
# SQLSTATE classes: 08 connection exception, 53 insufficient resources, 57P01-57P03 shutting down or not
# yet accepting connections.
SQLSTATES_AWAY = ("08", "53", "57P01", "57P02", "57P03")
SQLITE_AWAY = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL")


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis or a database is unreachable or refusing work for now."""
    if isinstance(exc, REDIS_AWAY):
        return True
    if isinstance(exc, sa_exc.TimeoutError):  # no connection free in the pool
        return True
    if not isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg: None when no server answered at all
    if sqlstate:
        return sqlstate.startswith(SQLSTATES_AWAY)
    sqlite_error = getattr(orig, "sqlite_errorname", None)
    if sqlite_error:
        return sqlite_error.startswith(SQLITE_AWAY)
    return isinstance(exc, sa_exc.InterfaceError) or type(orig).__module__.startswith("psycopg")


# The exception classes the web app hands to ``is_outage``.
OUTAGE_CANDIDATES: tuple[type[Exception], ...] = (redis.RedisError, sa_exc.DBAPIError, sa_exc.TimeoutError)
