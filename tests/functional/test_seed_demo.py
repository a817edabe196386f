from sqlalchemy import func, select

from app.extensions import db
from app.mailbox.models import InboundMail
from app.platform.models import Account, ApiKey, SupportMessage, UsageRecord
from app.staff.models import StaffUser


def counts():
    return {
        m.__name__: db.session.execute(select(func.count()).select_from(m)).scalar_one()
        for m in (Account, ApiKey, UsageRecord, SupportMessage, StaffUser, InboundMail)
    }


def test_seed_demo_is_idempotent(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed-demo", "--accounts", "8", "--usage-rows", "5000"])
    assert first.exit_code == 0, first.output
    assert "admin@example.com" in first.output
    after_first = counts()
    assert after_first["Account"] == 8 and after_first["StaffUser"] == 3
    assert after_first["InboundMail"] == 2  # demo mail waiting at /admin/mailbox
    heavy = db.session.execute(select(Account).order_by(Account.id)).scalars().first()
    heavy_rows = db.session.execute(
        select(func.count()).select_from(UsageRecord).where(UsageRecord.account_id == heavy.id)
    ).scalar_one()
    assert heavy_rows == 5000
    second = runner.invoke(args=["seed-demo", "--accounts", "8", "--usage-rows", "5000"])
    assert second.exit_code == 0, second.output
    assert counts() == after_first


def test_seed_demo_spreads_usage_over_the_retained_12_months(app):
    from datetime import timedelta

    from app.models_base import utcnow

    app.test_cli_runner().invoke(args=["seed-demo", "--accounts", "5"])
    oldest = db.session.execute(select(func.min(UsageRecord.created_at))).scalar_one()
    newest = db.session.execute(select(func.max(UsageRecord.created_at))).scalar_one()
    # A year of history, all of it within the 12-month retention: what the daily sweep leaves, so the demo
    # data agrees with what the access package says and exports.
    assert timedelta(days=300) < utcnow() - oldest < timedelta(days=365)
    assert utcnow() - newest < timedelta(days=30)


def test_seed_demo_with_stripe_unreachable_finishes_with_a_one_line_warning(app):
    app.config.update(STRIPE_API_KEY="sk_test_x", STRIPE_API_BASE="http://127.0.0.1:1")
    result = app.test_cli_runner().invoke(args=["seed-demo", "--accounts", "3"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    [line] = [x for x in result.output.splitlines() if x.startswith("warning:")]
    assert "Stripe unreachable" in line
    assert counts()["Account"] == 3


def test_demo_subjects_hold_data_in_every_category(app):
    from app.demo import demo_subjects

    app.test_cli_runner().invoke(args=["seed-demo", "--accounts", "6"])
    subjects = demo_subjects()
    assert subjects
    for email in subjects:
        acct = db.session.execute(select(Account).where(Account.email == email)).scalar_one()
        for model in (ApiKey, UsageRecord, SupportMessage):
            n = db.session.execute(select(func.count()).select_from(model).where(model.account_id == acct.id))
            assert n.scalar_one() > 0
