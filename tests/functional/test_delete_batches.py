"""``delete_in_batches`` on an interleaved log: batches of at most ``batch`` rows, every matching row
gone, counts exact, and a run killed between batches finished by the next one (SQLite and, with
TEST_DATABASE_URL, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.platform.models import UsageRecord
from app.sources.base import delete_in_batches, platform_engine

NOW = datetime.now(UTC)


def load(layout: list[int], start: int = 1, old: set[int] | None = None) -> None:
    """One usage row per entry (its account), ids rising from ``start``; ``old`` positions a year back."""
    rows = [
        {
            "id": i,
            "account_id": acct,
            "key_prefix": "sk-t",
            "model": "m",
            "request_id": f"r{i}",
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "created_at": NOW - timedelta(days=400 if old and n in old else 1),
        }
        for n, (i, acct) in enumerate(zip(range(start, start + len(layout)), layout, strict=True))
    ]
    with platform_engine().begin() as conn:
        conn.execute(UsageRecord.__table__.insert(), rows)


def count(where=None) -> int:
    stmt = select(func.count()).select_from(UsageRecord)
    with platform_engine().connect() as conn:
        return conn.execute(stmt.where(where) if where is not None else stmt).scalar_one()


class Killed(Exception):
    pass


def test_delete_in_batches_interleaved_takes_every_row_in_bounded_batches(app):
    layout = [(1 if i % 7 in (0, 3) else 2 + i % 50) for i in range(3000)]  # two rows in seven, among 50 others
    load(layout)
    totals: list[int] = []
    where = UsageRecord.account_id == 1
    assert delete_in_batches(UsageRecord.__table__, UsageRecord.id, where, batch=40, on_batch=totals.append) == (
        layout.count(1)
    )
    steps = [b - a for a, b in zip([0, *totals], totals, strict=False)]
    assert max(steps) <= 40 and sum(steps) == layout.count(1)
    assert count(where) == 0 and count() == len(layout) - layout.count(1)


def test_delete_in_batches_killed_between_batches_is_finished_by_the_next_run(app):
    layout = [1, 2, 2, 1, 3] * 400
    load(layout)
    where = UsageRecord.account_id == 1
    seen: list[int] = []

    def kill_after_three(total: int) -> None:
        seen.append(total)
        if len(seen) == 3:
            raise Killed

    with pytest.raises(Killed):
        delete_in_batches(UsageRecord.__table__, UsageRecord.id, where, batch=50, on_batch=kill_after_three)
    assert count(where) == layout.count(1) - seen[-1]  # three whole batches committed, nothing half-done
    rest = delete_in_batches(UsageRecord.__table__, UsageRecord.id, where, batch=50)
    assert seen[-1] + rest == layout.count(1) and count(where) == 0
    assert count() == len(layout) - layout.count(1)


def test_retention_sweep_in_batches_takes_every_old_row_and_no_recent_one(app):
    layout = [1 + i % 30 for i in range(2000)]
    old = set(range(0, 800)) | {900, 1500}  # the oldest 40%, and two stragglers among recent ids
    load(layout, start=10_000, old=old)
    where = UsageRecord.created_at < NOW - timedelta(days=365)
    totals: list[int] = []
    assert delete_in_batches(UsageRecord.__table__, UsageRecord.id, where, batch=300, on_batch=totals.append) == 802
    steps = [b - a for a, b in zip([0, *totals], totals, strict=False)]
    assert max(steps) <= 300 and count(where) == 0 and count() == 2000 - 802


def test_delete_in_batches_late_rows_in_and_above_the_walked_range_are_taken(app):
    """Rows committed after the walk passed their ids (an insert that was in flight) and rows with ids
    above every matching row at the start are both gone at the end."""
    layout = [1, 2, 2, 2] * 250  # ids 1..1000, the subject every fourth
    load(layout)
    where = UsageRecord.account_id == 1
    calls: list[int] = []

    def row(i: int) -> dict:
        return {
            "id": i,
            "account_id": 1,
            "key_prefix": "sk-t",
            "model": "m",
            "request_id": f"late{i}",
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "created_at": NOW,
        }

    def late_inserts(total: int) -> None:
        calls.append(total)
        if len(calls) == 3:  # well past id 100: one row far above the walk, one behind it (an id it passed)
            with platform_engine().begin() as conn:
                conn.execute(UsageRecord.__table__.insert(), [row(5_000), row(50_000)])
                conn.execute(UsageRecord.__table__.delete().where(UsageRecord.id == 6))  # another account's
                conn.execute(UsageRecord.__table__.insert(), [row(6)])

    n = delete_in_batches(UsageRecord.__table__, UsageRecord.id, where, batch=20, on_batch=late_inserts)
    assert n == layout.count(1) + 3
    assert count(where) == 0 and count() == len(layout) - layout.count(1) - 1


def test_delete_in_batches_sizes_each_batch_by_the_time_the_last_one_took(app):
    """A batch slower than ``seconds`` makes the next one smaller, a fast one lets it grow back (never past
    ``batch``): no transaction passes the target by much whatever the layout costs."""
    layout = [1] * 3000
    load(layout)
    clock_state = {"now": 0.0, "gone": 0, "cost": 0.001}  # 1 ms a row: 250 rows is 0.25 s
    sizes: list[int] = []

    def clock() -> float:
        """Time passes as rows go: each reading charges the rows deleted since the last one."""
        gone = len(layout) - count()
        clock_state["now"] += (gone - clock_state["gone"]) * clock_state["cost"]
        clock_state["gone"] = gone
        return clock_state["now"]

    def on_batch(total: int) -> None:
        sizes.append(total - sum(sizes))
        if len(sizes) == 3:
            clock_state["cost"] = 0.00001  # the layout got cheap: batches grow back

    where = UsageRecord.account_id == 1
    n = delete_in_batches(
        UsageRecord.__table__, UsageRecord.id, where, batch=1000, on_batch=on_batch, seconds=0.25, clock=clock
    )
    assert n == 3000 and count(where) == 0
    assert sizes[0] == 1000  # the first batch: DELETE_FIRST_BATCH (here also ``batch``)
    assert 200 <= sizes[1] <= 300  # 1 s for 1000 rows: a quarter as many next
    assert max(sizes) <= 1000 and sizes[4] > sizes[3]  # and back up once they are cheap


def test_delete_in_batches_starts_small_and_doubles_while_batches_are_quick(app):
    """Before any batch is timed, the first is DELETE_FIRST_BATCH rows, not ``batch`` (50k rows at once
    took 1.27 s on SQLite under load); quick batches then double up to ``batch``."""
    from app.sources import base

    layout = [1] * 300
    load(layout)
    sizes: list[int] = []

    def on_batch(total: int) -> None:
        sizes.append(total - sum(sizes))

    where = UsageRecord.account_id == 1
    old = base.DELETE_FIRST_BATCH
    base.DELETE_FIRST_BATCH = 10
    try:
        assert delete_in_batches(UsageRecord.__table__, UsageRecord.id, where, batch=100, on_batch=on_batch) == 300
    finally:
        base.DELETE_FIRST_BATCH = old
    assert sizes[:4] == [10, 20, 40, 80] and max(sizes) == 100


def test_delete_in_batches_walks_a_time_key_with_ties_and_rows_out_of_id_order(app):
    """The retention sweep walks ``created_at`` (its index), not ids: many rows share one time, and an
    old row with a high id (backfilled) is taken too; batches stay bounded."""
    layout = [1 + i % 30 for i in range(2000)]
    old = set(range(0, 700)) | {1990}  # 701 rows a year back, the last one with a high id
    load(layout, start=1, old=old)
    where = UsageRecord.created_at < NOW - timedelta(days=365)
    totals: list[int] = []
    n = delete_in_batches(
        UsageRecord.__table__, UsageRecord.id, where, batch=300, on_batch=totals.append, key=UsageRecord.created_at
    )
    steps = [b - a for a, b in zip([0, *totals], totals, strict=False)]
    assert n == 701 and max(steps) <= 300 and count(where) == 0 and count() == 2000 - 701


def test_delete_in_batches_rechecks_a_walked_range_in_pieces_that_fit_the_time(app):
    """A re-check walks its range's dead entries (PostgreSQL) whatever it finds: when re-checks are slow,
    a batch's range is re-checked in several smaller pieces rather than in one statement."""
    from sqlalchemy import event

    layout = [1] * 400
    load(layout)
    bounded: list[int] = []
    now = [0.0]

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if "<=" in statement and ">=" in statement:  # a re-check piece: bounded on both sides
            bounded.append(1)
            now[0] += 1.0  # each takes a second, four times ``seconds``

    engine = platform_engine()
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        where = UsageRecord.account_id == 1
        n = delete_in_batches(
            UsageRecord.__table__, UsageRecord.id, where, batch=200, seconds=0.25, clock=lambda: now[0]
        )
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    assert n == 400 and count(where) == 0
    # two batches of 200 in the first pass; their re-checks shrink to a quarter each time: many pieces
    assert len(bounded) > 4


def test_the_retention_sweep_does_not_recheck_its_walk_and_the_next_run_takes_what_it_passed(app):
    """The sweep's rows are a year old: one committed behind the walk is a backdated insert, and the
    next day's run takes it. So the sweep makes one pass (``recheck=False``): no statement re-walks the
    ranges it deleted (on PostgreSQL that re-walk visits every dead entry again: about half the
    sweep's time), and a row it passed is left to the next run, which takes it."""
    from sqlalchemy import event

    from app.sources.usage import UsageSource

    layout = [1 + i % 30 for i in range(1200)]
    load(layout, start=1, old=set(range(0, 600)))
    cutoff = NOW - timedelta(days=365)
    statements: list[str] = []
    passed: list[int] = []

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("DELETE", "WITH")):
            statements.append(statement)

    def backdated_insert_behind_the_walk(total: int) -> None:
        passed.append(total)
        if len(passed) == 2:
            with platform_engine().begin() as conn:
                conn.execute(
                    UsageRecord.__table__.insert(),
                    {
                        "id": 5000,
                        "account_id": 1,
                        "key_prefix": "sk-t",
                        "model": "m",
                        "request_id": "backdated",
                        "prompt_tokens": 1,
                        "completion_tokens": 1,
                        "created_at": NOW - timedelta(days=500),  # older than anything the walk has reached
                    },
                )

    engine = platform_engine()
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        where = UsageRecord.created_at < cutoff
        n = delete_in_batches(
            UsageRecord.__table__,
            UsageRecord.id,
            where,
            batch=100,
            on_batch=backdated_insert_behind_the_walk,
            key=UsageRecord.created_at,
            recheck=False,
        )
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    assert n == 600 and count(where) == 1  # the backdated row, behind the walk, is still there
    assert not [s for s in statements if "<=" in s]  # no re-check: no statement bounded above
    assert UsageSource().sweep(cutoff) == 1 and count(where) == 0  # the next run takes it


def test_the_erasure_counts_a_subject_s_usage_in_pieces_bounded_in_time(app):
    """The erasure counts a subject's rows before deleting them (the plan's drift, the report after a
    crash). One count(*) of a 1M-row subject on a 20M-row PostgreSQL log took 3.38 s, a transaction of
    its own that long; the count is made of pieces in id order, each its own transaction, sized by the
    last one's time like the deletion batches; it is exact."""
    from sqlalchemy import event

    from app.sources import base
    from app.sources.base import count_in_pieces
    from app.sources.usage import UsageSource

    layout = [1 if i % 3 else 2 for i in range(3000)]
    load(layout)
    where = UsageRecord.account_id == 1
    engine = platform_engine()
    began: list[int] = []
    now = [0.0]

    def on_begin(conn) -> None:
        began.append(1)
        now[0] += 1.0  # each piece takes a second: four times ``seconds``

    event.listen(engine, "begin", on_begin)
    old = base.COUNT_FIRST_PIECE
    base.COUNT_FIRST_PIECE = 400
    try:
        n = count_in_pieces(UsageRecord.id, where, seconds=0.25, clock=lambda: now[0])
    finally:
        base.COUNT_FIRST_PIECE = old
        event.remove(engine, "begin", on_begin)
    assert n == layout.count(1)
    assert len(began) > 5  # 400 rows, then a quarter as many each time: many short transactions
    from app.sources import Subject

    subject = Subject(email="x@example.com", account_id=1)
    began.clear()
    event.listen(engine, "begin", on_begin)
    base.COUNT_FIRST_PIECE = 400
    try:
        assert UsageSource().count(subject) == layout.count(1)  # exact
    finally:
        base.COUNT_FIRST_PIECE = old
        event.remove(engine, "begin", on_begin)
    assert len(began) == 3  # and the source counts in pieces: 2000 rows as 400, 800 and the last, each its own


def test_both_retention_sweeps_make_one_pass(app):
    """The usage and the support sweeps delete in one pass: no statement bounded above (a re-check)."""
    from sqlalchemy import event

    from app.platform.models import SupportMessage
    from app.sources.support import SupportSource
    from app.sources.usage import UsageSource

    load([1 + i % 30 for i in range(600)], old=set(range(0, 300)))
    with platform_engine().begin() as conn:
        conn.execute(
            SupportMessage.__table__.insert(),
            [
                {
                    "email": f"p{i}@example.com",
                    "direction": "inbound",
                    "subject": "s",
                    "body": "b",
                    "sent_at": NOW - timedelta(days=4000 if i % 2 else 1),
                }
                for i in range(200)
            ],
        )
    statements: list[str] = []

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("DELETE", "WITH")):
            statements.append(statement)

    engine = platform_engine()
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        cutoff = NOW - timedelta(days=365)
        assert UsageSource().sweep(cutoff, batch=50) == 300
        assert SupportSource().sweep(NOW - timedelta(days=3000), batch=30) == 100
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    assert len(statements) >= 10 and not [s for s in statements if "<=" in s]
