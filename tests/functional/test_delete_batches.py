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
