"""The account's correction rules (``AccountSource.correct``): what it refuses, with the reason the
subject and staff read, and what it changes, on the real platform table."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.platform.models import Account
from app.sources import BY_KEY, CorrectionRefused, find_subject
from tests.factories import make_account


@pytest.fixture
def subject(app):
    acct = make_account(email="ada@example.com", name="Ada", company="Engines")
    return find_subject("ada@example.com"), acct.id


@pytest.mark.parametrize(
    ("field", "value", "told"),
    [
        ("password", "x", "no correctable field called 'password'"),
        ("email", "not-an-address", "The new email address is not valid."),
        ("email", "a" * 250 + "@example.com", "The new email address is not valid."),
        ("name", "   ", "The name cannot be empty."),
    ],
)
def test_a_correction_the_account_cannot_take_is_refused_and_changes_nothing(subject, field, value, told):
    found, account_id = subject
    with pytest.raises(CorrectionRefused, match=told):
        BY_KEY["account"].correct(found, field, value)
    db.session.expire_all()
    acct = db.session.get(Account, account_id)
    assert (acct.email, acct.name, acct.company) == ("ada@example.com", "Ada", "Engines")


def test_a_correction_for_an_address_without_an_account_is_refused(app):
    with pytest.raises(CorrectionRefused, match="No platform account uses this email address."):
        BY_KEY["account"].correct(find_subject("nobody@example.com"), "name", "Nobody")


def test_a_company_is_trimmed_cut_to_its_column_and_may_be_cleared(subject):
    found, account_id = subject
    assert BY_KEY["account"].correct(found, "company", "  " + "C" * 300) == "Account company updated."
    db.session.expire_all()
    assert db.session.get(Account, account_id).company == "C" * 200
    BY_KEY["account"].correct(found, "company", "")
    db.session.expire_all()
    assert db.session.get(Account, account_id).company is None


def test_a_new_email_is_normalised_and_becomes_one_of_the_subject_addresses(subject):
    found, account_id = subject
    assert BY_KEY["account"].correct(found, "email", " Ada.New@Example.COM ") == "Account email updated."
    db.session.expire_all()
    new = db.session.get(Account, account_id).email
    assert new == found.account_email and new in found.extra_emails and new.endswith("@example.com")
