"""Correction requests through the job: the account and the Stripe customer change; clashes refused."""

from __future__ import annotations

import pytest
import stripe
from sqlalchemy import select

from app.audit import Actor
from app.demo import create_stripe_customer
from app.dsr import services
from app.dsr.models import CorrectionItem, DsrRequest
from app.dsr.states import RequestStatus
from app.extensions import db
from app.mail.models import OutgoingMail
from app.platform.models import Account
from tests.factories import make_request, make_staff
from tests.functional._fulfil import make_subject_data, run_jobs, stripe_app_config

__all__ = ["stripe_app_config"]


@pytest.fixture
def app_config(stripe_app_config):
    return stripe_app_config


def correction_request(email: str, items: list[tuple[str, str, str]]) -> int:
    dsr = make_request(RequestStatus.PENDING_REVIEW, "correction", email=email)
    for field, value, decision in items:
        db.session.add(CorrectionItem(request_id=dsr.id, field=field, proposed_value=value, decision=decision))
    db.session.commit()
    services.transition(dsr, RequestStatus.APPROVED, Actor.staff(make_staff("officer")))
    db.session.commit()
    return dsr.id


def test_apply_corrections_updates_account_and_stripe_and_confirms(app, redis_conn):
    acct = make_subject_data(usage=0)
    acct.stripe_customer_id = create_stripe_customer(acct.email, acct.name)
    db.session.commit()
    account_id, customer = acct.id, acct.stripe_customer_id
    make_subject_data(email="taken@example.com", name="Someone Else", usage=0)
    dsr_id = correction_request(
        "ada@example.com",
        [
            ("name", "Augusta Ada King", "approved"),
            ("company", "Difference Engines", "approved"),
            ("email", "taken@example.com", "approved"),
            ("name", "Rejected Name", "rejected"),
        ],
    )
    run_jobs(redis_conn)

    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == RequestStatus.COMPLETED.value
    acct = db.session.get(Account, account_id)
    assert acct.name == "Augusta Ada King"
    assert acct.company == "Difference Engines"
    assert acct.email == "ada@example.com"  # the clash was refused
    items = {(c.field, c.proposed_value): c for c in dsr.corrections}
    assert "already used by another account" in items[("email", "taken@example.com")].result
    assert items[("email", "taken@example.com")].applied_at is not None
    assert items[("name", "Rejected Name")].applied_at is None
    assert "Stripe customer name updated" in items[("name", "Augusta Ada King")].result
    cust = stripe.Customer.retrieve(customer)
    assert cust.name == "Augusta Ada King" and cust.email == "ada@example.com"
    mail = db.session.execute(
        select(OutgoingMail).where(OutgoingMail.template == "fulfil_correction_done")
    ).scalar_one()
    assert mail.to_addr == "ada@example.com" and "already used" in mail.body_text


def test_email_correction_reaches_stripe(app, redis_conn):
    acct = make_subject_data(usage=0)
    acct.stripe_customer_id = create_stripe_customer(acct.email, acct.name)
    db.session.commit()
    account_id, customer = acct.id, acct.stripe_customer_id
    dsr_id = correction_request("ada@example.com", [("email", "Ada.King@Example.com", "approved")])
    run_jobs(redis_conn)
    assert db.session.get(DsrRequest, dsr_id).status == RequestStatus.COMPLETED.value
    assert db.session.get(Account, account_id).email == "ada.king@example.com"
    assert stripe.Customer.retrieve(customer).email == "ada.king@example.com"
