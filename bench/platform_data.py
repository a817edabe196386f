"""The platform as it really is: one usage log that interleaves every account's rows in time order.

``BENCH_TOTAL_ROWS`` usage rows (full run 20M; quick 1M) across ``BENCH_ACCOUNTS`` accounts (20k), each
heavy subject's rows (and a twin's, for the raw-DELETE baseline) spread among everyone else's over the
last 12 months. Rows older than the 12-month retention belong to ordinary accounts only, so that 40% of
the table is past its period (what the retention sweep meets) while the heavy subjects' row counts are
exact. Ids rise with time, as in a real log. Loading takes each database's own fast path: COPY on
PostgreSQL, one executemany transaction on SQLite, with the secondary indexes built after the load.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

MODELS = ("gpt-4o", "gpt-4o-mini", "o3", "o4-mini", "gpt-4.1", "text-embedding-3-small")
OLD_FRACTION = 0.4  # of the whole table past the 12-month retention
RETENTION = timedelta(days=365)
COLUMNS = ("account_id", "key_prefix", "model", "request_id", "prompt_tokens", "completion_tokens", "created_at")


@dataclass
class Platform:
    total_rows: int
    accounts: int
    heavy: dict[int, int] = field(default_factory=dict)  # rows -> account id
    twins: dict[int, int] = field(default_factory=dict)  # rows -> twin account id (baseline copy)
    cutoff: datetime | None = None
    old_rows: int = 0
    load_seconds: float = 0.0


def _secondary_indexes(conn) -> list[tuple[str, str]]:
    """(name, CREATE statement) of platform_usage's secondary indexes, to drop and rebuild around a load."""
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'platform_usage' "
            "AND indexname NOT LIKE 'pk_%%'"
        ).all()
    else:
        rows = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'platform_usage' "
            "AND sql IS NOT NULL"
        ).all()
    return [(r[0], r[1]) for r in rows]


def build(total_rows: int, accounts: int, heavy_sizes: list[int], seed: int = 7) -> Platform:
    """Create the accounts, keys, support messages and the interleaved usage log (in an app context)."""
    import time

    from app.extensions import db
    from app.platform.models import Account, ApiKey, SupportMessage

    rng = random.Random(seed)
    plat = Platform(total_rows=total_rows, accounts=accounts)
    engine = db.engines["platform"]
    now = datetime.now(UTC)
    plat.cutoff = now - RETENTION

    # Accounts: ordinary ones, then the heavy subjects and their twins.
    with engine.begin() as conn:
        conn.execute(
            Account.__table__.insert(),
            [
                {
                    "email": f"user{i}@platform.test",
                    "name": f"User {i}",
                    "company": f"Company {i % 500}",
                    "created_at": now - timedelta(days=900),
                    "status": "active",
                    "analytics_opt_out": False,
                }
                for i in range(accounts)
            ],
        )
    first_id = db.session.execute(db.select(db.func.min(Account.id))).scalar_one()
    ordinary = list(range(first_id, first_id + accounts))
    for n in heavy_sizes:
        for twin in (False, True):
            acct = Account(
                email=f"{'twin' if twin else 'heavy'}{n}@platform.test",
                name="Heavy Customer",
                company="Bench Ltd",
                created_at=now - timedelta(days=400),
            )
            db.session.add(acct)
            db.session.flush()
            (plat.twins if twin else plat.heavy)[n] = acct.id
    db.session.commit()
    everyone = ordinary + list(plat.heavy.values()) + list(plat.twins.values())
    email_of = dict(db.session.execute(db.select(Account.id, Account.email)).tuples().all())
    # Ends the read's transaction (on the platform's connection): idle across the load, it held the
    # platform server's xmin horizon back, so the VACUUM below could not mark the loaded pages all-visible.
    db.session.commit()
    with engine.begin() as conn:
        conn.execute(
            ApiKey.__table__.insert(),
            [{"account_id": a, "name": "default", "prefix": f"sk-{a:08d}", "key_hash": "x" * 64} for a in everyone],
        )
        conn.execute(
            SupportMessage.__table__.insert(),
            [
                {
                    "account_id": a,
                    "email": email_of[a],  # their own messages: nothing withheld as another person's
                    "direction": "inbound",
                    "subject": "Question about my invoice",
                    "body": "Hello, a question about rate limits and my last invoice.",
                    "sent_at": now - timedelta(days=rng.randrange(1, 300)),
                }
                for a in everyone[::10] + list(plat.heavy.values())
            ],
        )

    heavy_rows = sum(heavy_sizes) * 2
    if heavy_rows > total_rows * (1 - OLD_FRACTION):
        raise ValueError(f"{heavy_rows} heavy rows do not fit in the recent {1 - OLD_FRACTION:.0%} of {total_rows}")
    plat.old_rows = int(total_rows * OLD_FRACTION)
    recent_rows = total_rows - plat.old_rows
    # Heavy rows are drawn at random among the recent rows, at their exact counts.
    owners: list[int] = []
    for n, acct in [*plat.heavy.items(), *plat.twins.items()]:
        owners += [acct] * n
    owners += [0] * (recent_rows - len(owners))
    rng.shuffle(owners)
    old_span = timedelta(days=540)
    start_old = plat.cutoff - old_span

    def rows():
        step_old = old_span / max(plat.old_rows, 1)
        for i in range(plat.old_rows):
            acct = ordinary[rng.randrange(accounts)]
            yield acct, start_old - timedelta(days=1) + step_old * i
        # A day clear of the cutoff on each side: the sweep runs minutes after the load, and must find
        # exactly the old rows past their period.
        step_new = (RETENTION - timedelta(days=2)) / max(recent_rows, 1)
        for i, owner in enumerate(owners):
            acct = owner or ordinary[rng.randrange(accounts)]
            yield acct, plat.cutoff + timedelta(days=1) + step_new * i

    started = time.perf_counter()
    with engine.begin() as conn:
        indexes = _secondary_indexes(conn)
        for name, _sql in indexes:
            conn.exec_driver_sql(f"DROP INDEX {name}")
    if engine.dialect.name == "postgresql":
        _copy_in(engine, rows(), rng)
    else:
        _executemany(engine, rows(), rng)
    with engine.begin() as conn:
        for _name, sql in indexes:
            conn.exec_driver_sql(sql)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE platform_usage")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    plat.load_seconds = time.perf_counter() - started
    return plat


def _copy_in(engine, rows, rng: random.Random) -> None:
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur, cur.copy(f"COPY platform_usage ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            buf = io.StringIO()
            for i, (acct, when) in enumerate(rows):
                buf.write(
                    f"{acct}\tsk-{acct:08d}\t{MODELS[i % 6]}\treq_{i:012d}\t{rng.randint(5, 4000)}\t"
                    f"{rng.randint(1, 2000)}\t{when.isoformat()}\n"
                )
                if i % 50_000 == 49_999:
                    copy.write(buf.getvalue())
                    buf = io.StringIO()
            copy.write(buf.getvalue())
        raw.commit()
    finally:
        raw.close()


def _executemany(engine, rows, rng: random.Random) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        sql = f"INSERT INTO platform_usage ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        chunk = []
        for i, (acct, when) in enumerate(rows):
            chunk.append(
                (
                    acct,
                    f"sk-{acct:08d}",
                    MODELS[i % 6],
                    f"req_{i:012d}",
                    rng.randint(5, 4000),
                    rng.randint(1, 2000),
                    when.strftime("%Y-%m-%d %H:%M:%S.%f"),  # how SQLAlchemy stores it on SQLite
                )
            )
            if len(chunk) == 50_000:
                cur.executemany(sql, chunk)
                chunk.clear()
        cur.executemany(sql, chunk)
        raw.commit()
    finally:
        raw.close()
