"""Identifiers staff add to a request (another address, an account id, a Stripe customer): each is
checked before it is kept, the officer is told why one is refused, and the set is frozen once the
request is being carried out (what the job erases must be what was approved)."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import select

from app.audit import Actor
from app.dsr import services
from app.dsr.models import DsrRequest, RequestIdentifier
from app.dsr.states import RequestStatus
from app.extensions import db
from tests.factories import make_request
from tests.functional.admin_support import act, fresh_g, staff_client  # noqa: F401


@pytest.fixture
def officer(app):
    return staff_client(app, "officer")


def identifiers(dsr_id: int) -> list[RequestIdentifier]:
    db.session.expire_all()
    return list(db.session.execute(select(RequestIdentifier).where(RequestIdentifier.request_id == dsr_id)).scalars())


@pytest.mark.parametrize(
    ("fields", "told"),
    [
        ({"kind": "email", "value": "not an address", "method": "link"}, "Enter a valid email address."),
        ({"kind": "account_id", "value": "12a", "method": "staff", "justification": "x"}, "whole number"),
        ({"kind": "account_id", "value": "0", "method": "staff", "justification": "x"}, "whole number"),
        ({"kind": "account_id", "value": str(2**31), "method": "staff", "justification": "x"}, "whole number"),
        ({"kind": "stripe_customer_id", "value": "cus_1", "method": "staff", "justification": "x"}, "cus_ followed"),
        ({"kind": "stripe_customer_id", "value": "acct_123456", "method": "staff", "justification": "x"}, "cus_"),
        ({"kind": "phone", "value": "555", "method": "staff", "justification": "x"}, "Choose what kind"),
        ({"kind": "account_id", "value": "42", "method": "link"}, "Only an email address can confirm itself"),
        ({"kind": "email", "value": "work@example.com", "method": "fax"}, "Choose how the identifier is confirmed"),
        ({"kind": "stripe_customer_id", "value": "cus_ABCdef123", "method": "staff"}, "Give the reason"),
    ],
)
def test_an_identifier_that_fails_its_check_is_refused_with_the_reason(officer, fields, told):
    client, _ = officer
    dsr = make_request("pending_review", "deletion", email="home@example.com")
    page = html.unescape(act(client, dsr, "add_identifier", **fields))
    assert told in page
    assert identifiers(dsr.id) == []


def test_the_same_identifier_twice_or_the_request_own_address_is_refused(officer):
    client, _ = officer
    dsr = make_request("pending_review", "deletion", email="home@example.com")
    page = html.unescape(act(client, dsr, "add_identifier", kind="email", value="HOME@example.com", method="link"))
    assert "The request has this identifier already." in page
    fields = {"kind": "stripe_customer_id", "value": "cus_ABCdef123", "method": "staff", "justification": "invoice"}
    act(client, dsr, "add_identifier", **fields)
    page = html.unescape(act(client, dsr, "add_identifier", **fields))
    assert "The request has this identifier already." in page
    assert [(i.kind, i.value, i.status) for i in identifiers(dsr.id)] == [
        ("stripe_customer_id", "cus_ABCdef123", "verified")
    ]


def test_adding_an_identifier_after_a_first_approval_drops_the_stored_plan(app, officer):
    """Two-officer approval: the first officer approved a plan for the old identifiers; a new one means
    a new plan, and a new first approval."""
    client, user = officer
    dsr = make_request("pending_review", "deletion", email="home@example.com")
    dsr.plan = {"items": [{"category": "account", "action": "delete", "count": 1}]}
    dsr.first_approved_by_id, dsr.first_approved_at = user.id, dsr.received_at
    db.session.commit()
    act(client, dsr, "add_identifier", kind="account_id", value="7", method="staff", justification="ID card")
    dsr = db.session.get(DsrRequest, dsr.id)
    assert dsr.plan is None and dsr.first_approved_by_id is None and dsr.first_approved_at is None


def test_identifiers_are_frozen_while_the_request_is_carried_out(app, officer):
    client, user = officer
    dsr = make_request("pending_review", "deletion", email="home@example.com")
    act(client, dsr, "add_identifier", kind="account_id", value="7", method="staff", justification="ID card")
    [ident] = identifiers(dsr.id)
    dsr = db.session.get(DsrRequest, dsr.id)
    services.transition(dsr, RequestStatus.APPROVED, Actor.staff(user))
    db.session.commit()

    from app.dsr.identifiers import add_identifier, remove_identifier
    from app.dsr.services import ActionError

    with pytest.raises(ActionError, match="not yet being carried out"):
        add_identifier(dsr, Actor.staff(user), "account_id", "8", "staff", "another card")
    with pytest.raises(ActionError, match="can no longer change"):
        remove_identifier(dsr, Actor.staff(user), ident.id)
    db.session.rollback()
    assert [i.value for i in identifiers(dsr.id)] == ["7"]


def test_removing_an_identifier_of_another_request_is_refused(officer):
    client, _ = officer
    mine = make_request("pending_review", "deletion", email="home@example.com")
    theirs = make_request("pending_review", "deletion", email="someone@example.com")
    act(client, theirs, "add_identifier", kind="account_id", value="9", method="staff", justification="ID card")
    [ident] = identifiers(theirs.id)
    page = html.unescape(act(client, mine, "remove_identifier", identifier_id=str(ident.id)))
    assert "That identifier does not belong to this request." in page
    assert len(identifiers(theirs.id)) == 1
    act(client, theirs, "remove_identifier", identifier_id=str(ident.id))
    assert identifiers(theirs.id) == []
