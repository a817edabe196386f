"""Shared builders for the fulfilment tests: platform data, localstripe config, a burst worker."""

from __future__ import annotations

import random
import urllib.request
from datetime import timedelta

import pytest
import sqlalchemy as sa
from rq import SimpleWorker

from app.demo import insert_usage, usage_rows
from app.extensions import db
from app.models_base import utcnow
from app.platform.models import Account, ApiKey, SupportMessage, UsageRecord
from app.queue import new_worker
from tests.conftest import make_config


def stripe_config(migrated, redis_url, tmp_path, base: str, **extra) -> dict:
    """App config pointing the stripe SDK at localstripe, after wiping localstripe's data."""
    req = urllib.request.Request(base + "/_config/data", method="DELETE")  # noqa: S310 - local test server
    urllib.request.urlopen(req, timeout=10).read()  # noqa: S310 - local test server
    return make_config(migrated, redis_url, tmp_path, STRIPE_API_KEY="sk_test_fulfil", STRIPE_API_BASE=base, **extra)


def make_subject_data(
    email: str = "ada@example.com",
    name: str = "Ada Lovelace",
    usage: int = 120,
    keys: int = 2,
    messages: int = 2,
    **account_kw,
) -> Account:
    """An account with API keys, usage rows and support messages (some by email only)."""
    now = utcnow()
    acct = Account(email=email, name=name, company="Analytical Engines", created_at=now - timedelta(days=400))
    for k, v in account_kw.items():
        setattr(acct, k, v)
    db.session.add(acct)
    db.session.flush()
    for k in range(keys):
        db.session.add(
            ApiKey(
                account_id=acct.id,
                name=f"key{k}",
                prefix=f"sk-{acct.id:03d}{k:05d}"[:12],
                key_hash=f"HASH-SECRET-{acct.id}-{k}",
                created_at=now - timedelta(days=10),
            )
        )
    for m in range(messages):
        db.session.add(
            SupportMessage(
                email=email,
                account_id=acct.id,
                direction="inbound",
                subject=f"Question {m}",
                body=f"Hello from {name}",
                sent_at=now - timedelta(days=m + 1),
            )
        )
    # Written before the account existed, in another case: found by email alone.
    db.session.add(
        SupportMessage(
            email=email.upper(), direction="inbound", subject="Before signing up", body=f"I am {name}", sent_at=now
        )
    )
    db.session.commit()
    if usage:
        insert_usage(usage_rows(acct.id, [f"sk-{acct.id:03d}00000"[:12]], usage, random.Random(1), now))
    return acct


def usage_count(account_id: int) -> int:
    return db.session.execute(
        sa.select(sa.func.count()).select_from(UsageRecord).where(UsageRecord.account_id == account_id)
    ).scalar_one()


def platform_mentions(needle: str) -> list[str]:
    """Every platform table column whose text contains ``needle`` (the journey check's scan)."""
    hits = []
    engine = db.engines["platform"]
    for table in db.metadatas["platform"].sorted_tables:
        with engine.connect() as conn:
            for col in table.columns:
                n = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(sa.func.lower(sa.cast(col, sa.Text)).like(f"%{needle.lower()}%"))
                ).scalar_one()
                if n:
                    hits.append(f"{table.name}.{col.name}")
    return hits


def run_jobs(redis_conn) -> None:
    """Run every queued job to completion in this process (rq's SimpleWorker, burst mode), built as
    ``flask worker`` builds its worker: JSON jobs, allow-listed functions only."""
    new_worker(connection=redis_conn, worker_class=SimpleWorker).work(burst=True)


@pytest.fixture
def stripe_app_config(migrated, redis_url, tmp_path, localstripe) -> dict:
    return stripe_config(migrated, redis_url, tmp_path, localstripe)
