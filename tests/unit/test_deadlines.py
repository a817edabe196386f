from datetime import UTC, datetime

import pytest

from app.dsr.deadlines import add_business_days, confirmation_due_date, due_date, extended_due_date


def d(y, m, day, h=12):
    return datetime(y, m, day, h, tzinfo=UTC)


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        (d(2026, 1, 31), d(2026, 2, 28)),  # month end clamps
        (d(2028, 1, 31), d(2028, 2, 29)),  # leap year
        (d(2026, 3, 31), d(2026, 4, 30)),
        (d(2026, 1, 15), d(2026, 2, 15)),
        (d(2026, 12, 20), d(2027, 1, 20)),  # across the year
    ],
)
def test_due_date_gdpr_one_calendar_month(received, expected):
    assert due_date("gdpr", received) == expected


def test_due_date_other_jurisdiction_uses_gdpr_clock():
    assert due_date("other", d(2026, 1, 31)) == d(2026, 2, 28)


def test_due_date_ccpa_45_days():
    assert due_date("ccpa", d(2026, 1, 1)) == d(2026, 2, 15)


def test_extension_gdpr_two_further_months_clamped():
    # received 30 Nov: due 30 Dec; extended by two months to 28 Feb (29 in a leap year)
    assert extended_due_date("gdpr", d(2025, 11, 30)) == d(2026, 2, 28)
    assert extended_due_date("gdpr", d(2027, 11, 30)) == d(2028, 2, 29)


def test_extension_ccpa_45_more_days():
    # received 1 Jan: due 15 Feb; extended to 1 Apr, 90 days from receipt
    assert extended_due_date("ccpa", d(2026, 1, 1)) == d(2026, 4, 1)


def test_business_days_skip_weekends():
    friday = d(2026, 11, 27)
    assert add_business_days(friday, 1) == d(2026, 11, 30)  # Monday
    assert add_business_days(friday, 10) == d(2026, 12, 11)


def test_confirmation_due_only_for_ccpa():
    assert confirmation_due_date("ccpa", d(2026, 11, 27)) == d(2026, 12, 11)
    assert confirmation_due_date("gdpr", d(2026, 11, 27)) is None
