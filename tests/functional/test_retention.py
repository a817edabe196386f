"""The retention sweep: exactly the usage rows past 12 months, and accounts closed over 30 days ago."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, insert, select

from app.extensions import db
from app.models_base import utcnow
from app.platform.models import Account, UsageRecord
from tests.functional._fulfil import make_subject_data, platform_mentions, usage_count
from workers.maintenance import retention_sweep


def add_usage(account_id: int, ages_days: list[float]) -> None:
    now = utcnow()
    with db.engines["platform"].begin() as conn:
        conn.execute(
            insert(UsageRecord.__table__),
            [
                {
                    "account_id": account_id,
                    "key_prefix": "sk-test",
                    "model": "gpt-tech-4o",
                    "request_id": f"req_{account_id}_{i}",
                    "prompt_tokens": 1,
                    "completion_tokens": 1,
                    "created_at": now - timedelta(days=age),
                }
                for i, age in enumerate(ages_days)
            ],
        )


def test_retention_sweep_removes_exactly_rows_past_their_period(app):
    now = utcnow()
    active = make_subject_data(usage=0)
    add_usage(active.id, [1, 30, 364, 364.9, 365.1, 366, 400, 800])
    recently_closed = make_subject_data(
        email="recent@example.com", name="Recent Closer", usage=0, status="closed", closed_at=now - timedelta(days=5)
    )
    add_usage(recently_closed.id, [2, 3])
    long_closed = make_subject_data(
        email="gone@example.com", name="Long Gone", usage=0, status="closed", closed_at=now - timedelta(days=31)
    )
    add_usage(long_closed.id, [2, 3, 500])
    ids = (active.id, recently_closed.id, long_closed.id)

    result = retention_sweep()

    assert result["usage_rows_deleted"] == 5  # 365.1, 366, 400, 800 (active) and 500 (long closed)
    assert usage_count(ids[0]) == 4
    assert usage_count(ids[1]) == 2
    assert result["accounts_erased"] == 1
    assert usage_count(ids[2]) == 0
    assert platform_mentions("gone@example.com") == []
    assert platform_mentions("long gone") == []
    db.session.expire_all()
    assert db.session.get(Account, ids[1]) is not None and db.session.get(Account, ids[2]) is None
    oldest = db.session.execute(select(func.min(UsageRecord.created_at))).scalar_one()
    assert oldest > now - timedelta(days=365)
    # idempotent
    again = retention_sweep()
    assert again["usage_rows_deleted"] == 0 and again["accounts_erased"] == 0


def test_retention_sweep_deletes_support_messages_past_the_inventory_period(app):
    from app.platform.models import SupportMessage
    from app.sources.inventory import category

    days = category("support_messages").retention_days
    acct = make_subject_data(usage=0, messages=0)
    now = utcnow()
    for age, subject in ((days + 1, "old"), (days - 1, "recent")):
        db.session.add(
            SupportMessage(
                email=acct.email,
                account_id=acct.id,
                direction="inbound",
                subject=subject,
                body="b",
                sent_at=now - timedelta(days=age),
            )
        )
    db.session.commit()
    result = retention_sweep()
    assert result["support_messages_deleted"] == 1
    left = set(db.session.execute(select(SupportMessage.subject)).scalars())
    assert "old" not in left and "recent" in left
