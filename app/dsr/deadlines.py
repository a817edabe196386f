"""Statutory deadlines.

GDPR Art. 12(3): one calendar month from receipt, extendable once by two further months; a month
that lacks the day ends on its last day (31 January -> 28/29 February), as dateutil's relativedelta
computes. CCPA (Cal. Civ. Code 1798.130): 45 days, extendable once by 45 days; receipt confirmed
within 10 business days. "Other" jurisdictions get the strictest (GDPR) clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dateutil.relativedelta import relativedelta

from app.dsr.states import Jurisdiction


def due_date(jurisdiction: str, received_at: datetime) -> datetime:
    if Jurisdiction(jurisdiction) is Jurisdiction.CCPA:
        return received_at + timedelta(days=45)
    return received_at + relativedelta(months=1)


def extended_due_date(jurisdiction: str, due_at: datetime) -> datetime:
    if Jurisdiction(jurisdiction) is Jurisdiction.CCPA:
        return due_at + timedelta(days=45)
    return due_at + relativedelta(months=2)


def add_business_days(start: datetime, days: int) -> datetime:
    """``days`` working days (Monday to Friday) after ``start``."""
    current = start
    remaining = days
    while remaining > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            remaining -= 1
    return current


def confirmation_due_date(jurisdiction: str, received_at: datetime) -> datetime | None:
    if Jurisdiction(jurisdiction) is Jurisdiction.CCPA:
        return add_business_days(received_at, 10)
    return None
