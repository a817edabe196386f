"""Data sources against the real database: summary, plan, and Stripe being unreachable."""

from __future__ import annotations

from app.extensions import db
from app.sources import erasure_plan, subject_summary
from tests.conftest import make_config
from tests.functional._fulfil import make_subject_data, stripe_app_config

__all__ = ["stripe_app_config"]


def test_subject_summary_without_stripe_counts_match_database(app):
    acct = make_subject_data(usage=37, keys=3, messages=2)
    make_subject_data(email="other@example.com", name="Other Person", usage=5)
    s = subject_summary("  ADA@example.com ")
    assert s["account_found"] is True
    assert s["account_id"] == acct.id
    assert s["account_status"] == "active"
    assert s["api_keys"] == 3
    assert s["usage_rows"] == 37
    assert s["support_messages"] == 3  # two by account, one by email only
    assert s["stripe_configured"] is False
    assert s["stripe_customer"] is None


def test_subject_summary_unknown_email_finds_nothing(app):
    make_subject_data()
    s = subject_summary("nobody@example.com")
    assert s["account_found"] is False
    assert s["usage_rows"] == 0 and s["api_keys"] == 0 and s["support_messages"] == 0


def test_stripe_unreachable_is_reported_not_raised(migrated, redis_url, tmp_path):
    from app import create_app

    cfg = make_config(migrated, redis_url, tmp_path, STRIPE_API_KEY="sk_test_x", STRIPE_API_BASE="http://127.0.0.1:9")
    application = create_app(cfg)
    with application.app_context():
        try:
            make_subject_data(usage=0)
            s = subject_summary("ada@example.com")
            assert s["stripe_configured"] is True
            assert "unreachable" in s["stripe_error"]
            plan = erasure_plan("ada@example.com")
            billing = [p for p in plan if p["category"] == "billing"]
            assert billing and billing[0]["action"] == "keep" and "Could not reach Stripe" in billing[0]["reason"]
        finally:
            from tests.conftest import _empty_everything

            db.session.remove()
            _empty_everything(application)


def test_batches_give_the_inventory_fields_in_order_with_utc_timestamps(app):
    """The export's batch reads (a UTC session and plain timestamptz on PostgreSQL) give the values
    the ORM gives, timestamps aware and in UTC, for every table source."""
    from datetime import UTC

    from sqlalchemy import select

    from app.platform.models import Account, ApiKey, SupportMessage, UsageRecord
    from app.sources import BY_KEY, find_subject

    acct = make_subject_data(usage=2500, keys=2, messages=2)  # more than one batch of usage rows
    subject = find_subject(acct.email)
    models = {"usage": UsageRecord, "api_keys": ApiKey, "support": SupportMessage, "account": Account}
    for key, model in models.items():
        source = BY_KEY[key]
        fields = source.category.fields
        batches = list(source.batches(subject))
        got = [tuple(row) for batch in batches for row in batch]
        ids = [row[fields.index("id")] for row in got]
        objs = {o.id: o for o in db.session.execute(select(model).where(model.id.in_(ids))).scalars()}
        assert got == [tuple(getattr(objs[i], f) for f in fields) for i in ids], key
        assert got, key
        for row in got:
            for value in row:
                if hasattr(value, "tzinfo"):
                    assert value.tzinfo is UTC, (key, value)
        assert [dict(zip(fields, r, strict=True)) for r in got] == list(source.records(subject))
    assert len(list(BY_KEY["usage"].batches(subject))) == 2
