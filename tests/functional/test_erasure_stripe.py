"""Erasure at Stripe: subscriptions cancelled, payment methods detached, the customer deleted, each step
read back from Stripe (localstripe through the real SDK), and what is kept listed with its contents."""

from __future__ import annotations

import pytest
import stripe
from sqlalchemy import select

from app.demo import create_stripe_customer
from app.dsr.models import DsrRequest
from app.extensions import db
from app.platform.models import ApiKey
from tests.factories import make_request
from tests.functional._fulfil import make_subject_data, platform_mentions, run_jobs, stripe_app_config
from tests.functional.admin_support import act, fresh_g, staff_client  # noqa: F401
from tests.functional.test_erasure_truth import mails_to

__all__ = ["stripe_app_config"]


@pytest.fixture
def app_config(stripe_app_config):
    return stripe_app_config


def test_stripe_subscription_is_cancelled_and_each_step_read_back(app, redis_conn):
    client, _ = staff_client(app, "officer")
    acct = make_subject_data(usage=2)
    acct.stripe_customer_id = create_stripe_customer(acct.email, acct.name)
    db.session.commit()
    customer = acct.stripe_customer_id
    [sub] = stripe.Subscription.list(customer=customer).data
    [pm] = stripe.PaymentMethod.list(customer=customer, type="card").data
    assert sub.status == "active"
    dsr = make_request("pending_review", "deletion", email="ada@example.com")
    act(client, dsr, "approve", confirm_reference=dsr.reference)
    dsr_id = dsr.id
    run_jobs(redis_conn)
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == "completed", dsr.last_error
    assert stripe.Subscription.retrieve(sub.id).status == "canceled"
    assert stripe.PaymentMethod.retrieve(pm.id).customer is None
    billing = [i for i in dsr.report["items"] if i["category"] == "billing"]
    steps = {s["step"]: s for i in billing for s in i.get("steps", [])}
    assert steps["subscriptions_cancelled"]["verified"] and steps["subscriptions_cancelled"]["count"] == 1
    assert steps["payment_methods_detached"]["verified"] and steps["customer_deleted"]["verified"]
    kept = [i for i in billing if i["action"] == "kept"]
    assert kept and "invoice" in kept[0]["reason"].lower() and "years" in kept[0]["reason"].lower()
    assert db.session.execute(select(ApiKey)).scalars().all() == []
    assert platform_mentions("ada@example.com") == []
    [report] = mails_to("ada@example.com", "fulfil_deletion_report")
    assert "subscription" in report.body_text.lower() and "cancelled (1)" in report.body_text.lower()


def test_a_customer_another_account_holds_is_never_erased_by_an_address_match(app, redis_conn):
    """A shared billing mailbox: the Stripe customer of account B has the address a stranger verifies."""
    client, _ = staff_client(app, "officer")
    other = make_subject_data(email="barbara@example.com", name="Barbara", usage=1)
    other.stripe_customer_id = create_stripe_customer("billing@structured.example", "Structured Inc")
    db.session.commit()
    customer = other.stripe_customer_id
    dsr = make_request("pending_review", "deletion", email="billing@structured.example")
    page = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert customer in page and "another account holds" in page
    act(client, dsr, "approve", confirm_reference=dsr.reference)
    dsr_id = dsr.id
    run_jobs(redis_conn)
    assert db.session.get(DsrRequest, dsr_id).outcome == "no_data"
    assert not stripe.Customer.retrieve(customer).to_dict().get("deleted")
    [sub] = stripe.Subscription.list(customer=customer).data
    assert sub.status == "active"


def test_every_customer_with_the_verified_address_is_erased_not_only_the_stored_one(app, redis_conn):
    client, _ = staff_client(app, "officer")
    acct = make_subject_data(usage=1)
    acct.stripe_customer_id = create_stripe_customer(acct.email, acct.name)
    db.session.commit()
    second = stripe.Customer.create(email="ada@example.com", name="Ada L.").id
    dsr = make_request("pending_review", "deletion", email="ada@example.com")
    act(client, dsr, "approve", confirm_reference=dsr.reference)
    dsr_id = dsr.id
    run_jobs(redis_conn)
    assert db.session.get(DsrRequest, dsr_id).status == "completed"
    with pytest.raises(stripe.InvalidRequestError):
        stripe.Customer.retrieve(second)


def test_no_session_transaction_stays_open_across_the_stripe_calls_of_an_erasure(app, redis_conn, monkeypatch):
    """Before the Stripe calls the erasure checks which customers another account holds; that read must
    not leave the session's transaction open while Stripe answers (seconds, or a timeout's worth)."""
    from app.sources.stripe_billing import StripeSource

    client, _ = staff_client(app, "officer")
    acct = make_subject_data(usage=2)
    acct.stripe_customer_id = create_stripe_customer(acct.email, acct.name)
    db.session.commit()
    dsr = make_request("pending_review", "deletion", email="ada@example.com")
    act(client, dsr, "approve", confirm_reference=dsr.reference)
    dsr_id = dsr.id
    during: list[bool] = []
    customer = StripeSource._customer

    def looking_up(self, cid):
        during.append(db.session().in_transaction())
        return customer(self, cid)

    monkeypatch.setattr(StripeSource, "_customer", looking_up)
    run_jobs(redis_conn)
    assert db.session.get(DsrRequest, dsr_id).status == "completed"
    assert during and not any(during)
