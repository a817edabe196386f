"""Each data source against the real database and localstripe: export equals the data, erasure leaves
no trace while kept Stripe invoices remain, corrections reach the account and Stripe."""

from __future__ import annotations

import pytest
import stripe
from sqlalchemy import select

from app.demo import create_stripe_customer
from app.extensions import db
from app.platform.models import Account, ApiKey, SupportMessage, UsageRecord
from app.sources import BY_KEY, erasure_plan, find_subject
from app.sources.erasure import erase_everything
from tests.functional._fulfil import make_subject_data, platform_mentions, stripe_app_config, usage_count

__all__ = ["stripe_app_config"]


@pytest.fixture
def app_config(stripe_app_config):
    return stripe_app_config


def test_sources_export_records_equal_database_and_stripe(app):
    acct = make_subject_data(usage=250)
    acct.stripe_customer_id = create_stripe_customer(acct.email, acct.name)
    db.session.commit()
    subject = find_subject(acct.email)

    usage = list(BY_KEY["usage"].records(subject))
    rows = db.session.execute(select(UsageRecord).where(UsageRecord.account_id == acct.id).order_by(UsageRecord.id))
    expected = [
        (r.id, r.model, r.prompt_tokens, r.completion_tokens, r.request_id, r.key_prefix, r.created_at)
        for r in rows.scalars()
    ]
    got = [
        (
            r["id"],
            r["model"],
            r["prompt_tokens"],
            r["completion_tokens"],
            r["request_id"],
            r["key_prefix"],
            r["created_at"],
        )
        for r in usage
    ]
    assert got == expected and len(got) == 250

    keys = list(BY_KEY["api_keys"].records(subject))
    assert len(keys) == 2
    assert all("key_hash" not in k for k in keys)
    assert {k["prefix"] for k in keys} == set(
        db.session.execute(select(ApiKey.prefix).where(ApiKey.account_id == acct.id)).scalars()
    )

    (account,) = list(BY_KEY["account"].records(subject))
    assert account["email"] == acct.email and account["name"] == acct.name

    support = list(BY_KEY["support"].records(subject))
    assert len(support) == 3
    assert db.session.execute(select(SupportMessage)).scalars().all().__len__() == 3

    billing = list(BY_KEY["stripe"].records(subject))
    types = [b["record_type"] for b in billing]
    assert types.count("customer") == 1
    assert types.count("payment_method") == 1
    assert types.count("subscription") == 1
    assert types.count("invoice") >= 1
    assert types.count("charge") >= 1
    card = next(b for b in billing if b["record_type"] == "payment_method")
    assert card["last4"] == "4242" and card["brand"] == "visa" and card["exp_year"] == 2030
    assert "4242424242424242" not in repr(billing)
    customer = stripe.Customer.retrieve(acct.stripe_customer_id)
    assert billing[0]["email"] == customer.email


def test_erasure_leaves_no_trace_while_kept_stripe_invoices_remain(app):
    acct = make_subject_data(usage=300)
    acct.stripe_customer_id = create_stripe_customer(acct.email, acct.name)
    db.session.commit()
    other = make_subject_data(email="grace@example.com", name="Grace Hopper", usage=40)
    plan = erasure_plan(acct.email)
    kept_plan = [p for p in plan if p["category"] == "billing" and p["action"] == "keep"]
    assert kept_plan and kept_plan[0]["count"] >= 2 and "tax" in kept_plan[0]["reason"]
    account_id, customer = acct.id, acct.stripe_customer_id

    report = erase_everything(acct.email, plan=plan, batch=64)

    assert platform_mentions("ada@example.com") == []
    assert platform_mentions("Ada Lovelace") == []
    assert usage_count(account_id) == 0
    db.session.expire_all()
    assert db.session.get(Account, account_id) is None
    assert usage_count(other.id) == 40
    assert platform_mentions("grace@example.com")
    by = {(i["category"], i["action"]): i for i in report["items"]}
    assert by[("usage_logs", "deleted")]["count"] == 300
    assert by[("api_keys", "deleted")]["count"] == 2
    assert by[("support_messages", "deleted")]["count"] == 3
    assert by[("account", "deleted")]["count"] == 1
    kept = by[("billing", "kept")]
    assert kept["ids"]
    for kept_id in kept["ids"]:
        obj = (stripe.Invoice if kept_id.startswith("in_") else stripe.Charge).retrieve(kept_id)
        assert obj.id == kept_id
    with pytest.raises(stripe.InvalidRequestError):
        stripe.Customer.retrieve(customer)
    # Idempotent: erasing again finds nothing and raises nothing.
    again = erase_everything("ada@example.com", account_id=account_id)
    assert {i["category"]: i["action"] for i in again["items"]}["usage_logs"] == "not_found"
    assert again["outcome"] == "no_data"


def test_correction_updates_account_and_stripe_customer(app):
    acct = make_subject_data(usage=0)
    acct.stripe_customer_id = create_stripe_customer(acct.email, acct.name)
    db.session.commit()
    make_subject_data(email="taken@example.com", name="Someone Else", usage=0)
    subject = find_subject(acct.email)
    assert "updated" in BY_KEY["account"].correct(subject, "name", "Augusta Ada King")
    assert BY_KEY["stripe"].correct(subject, "name", "Augusta Ada King")
    from app.sources import CorrectionRefused

    with pytest.raises(CorrectionRefused, match="already used"):
        BY_KEY["account"].correct(subject, "email", "TAKEN@example.com")
    db.session.commit()
    assert db.session.get(Account, acct.id).name == "Augusta Ada King"
    assert stripe.Customer.retrieve(acct.stripe_customer_id).name == "Augusta Ada King"


def test_seed_demo_gives_accounts_stripe_customers_once(app):
    from app.demo import seed_demo

    first = seed_demo(accounts=3)
    assert first["stripe_customers_created"] == 3
    again = seed_demo(accounts=3)
    assert again["stripe_customers_created"] == 0
    accounts = db.session.execute(select(Account)).scalars().all()
    assert all(a.stripe_customer_id for a in accounts)
    subject = find_subject(accounts[0].email)
    types = [r["record_type"] for r in BY_KEY["stripe"].records(subject)]
    assert {"customer", "payment_method", "subscription", "invoice", "charge"} <= set(types)
