"""Statutory deadlines: one table of rules per jurisdiction, and the only code that moves a due date.

GDPR Art. 12(3): one calendar month from receipt, extendable once by two further months, the subject
told with reasons within the first month; a month that lacks the day ends on its last day (31 January ->
28/29 February, dateutil's relativedelta). The clock may stop only while we wait for information we need
to identify the subject (EDPB Guidelines 01/2022 on the right of access, paragraph 159), never for our
own reasons. CCPA (Cal. Civ. Code 1798.130(a)(2), regs 11 CCR 7021): 45 days, extendable once by 45 days
when reasonably necessary, with notice within the first 45 days; the period runs regardless of the time
needed to verify the request (7021(b)), so it never pauses and never exceeds 90 days from receipt;
receipt is confirmed within 10 business days (7021(a)), skipping US federal holidays. "Other"
jurisdictions get the GDPR's clock, the strictest.

``original_due_at`` is the statutory due date from receipt and never changes; ``due_at`` is the date in
force: the original plus lawful pauses plus a timely extension, and never past ``legal_maximum``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

import holidays
from dateutil.relativedelta import relativedelta

from app.dsr.states import Jurisdiction


@dataclass(frozen=True)
class Rule:
    period: relativedelta
    extension: relativedelta
    # The whole time the law allows, from receipt, before lawful pauses.
    maximum: relativedelta
    # Whether waiting for the subject's identity information stops the clock.
    identity_pause: bool
    # Business days to confirm receipt (CCPA), or None.
    confirmation_business_days: int | None
    label: str


RULES: dict[Jurisdiction, Rule] = {
    Jurisdiction.GDPR: Rule(
        period=relativedelta(months=1),
        extension=relativedelta(months=2),
        maximum=relativedelta(months=3),
        identity_pause=True,
        confirmation_business_days=None,
        label="one month from receipt; once, two more months, announced with reasons within the first month",
    ),
    Jurisdiction.CCPA: Rule(
        period=relativedelta(days=45),
        extension=relativedelta(days=45),
        maximum=relativedelta(days=90),
        identity_pause=False,
        confirmation_business_days=10,
        label="45 days from receipt; once, 45 more days, announced within the first 45; never paused; "
        "receipt confirmed within 10 business days",
    ),
    Jurisdiction.OTHER: Rule(
        period=relativedelta(months=1),
        extension=relativedelta(months=2),
        maximum=relativedelta(months=3),
        identity_pause=True,
        confirmation_business_days=None,
        label="the GDPR's clock (the strictest)",
    ),
}


def rule(jurisdiction: str) -> Rule:
    try:
        return RULES[Jurisdiction(jurisdiction)]
    except ValueError:
        return RULES[Jurisdiction.OTHER]


def due_date(jurisdiction: str, received_at: datetime) -> datetime:
    return received_at + rule(jurisdiction).period


def legal_maximum(jurisdiction: str, received_at: datetime, paused_seconds: int = 0) -> datetime:
    """The latest the law allows: receipt plus period plus extension, plus time lawfully paused."""
    r = rule(jurisdiction)
    paused = timedelta(seconds=paused_seconds or 0) if r.identity_pause else timedelta(0)
    return received_at + r.maximum + paused


def pre_extension_due(jurisdiction: str, received_at: datetime, paused_seconds: int = 0) -> datetime:
    """The due date before any extension: the statutory date plus time lawfully paused."""
    r = rule(jurisdiction)
    paused = timedelta(seconds=paused_seconds or 0) if r.identity_pause else timedelta(0)
    return due_date(jurisdiction, received_at) + paused


def extension_allowed(jurisdiction: str, received_at: datetime, paused_seconds: int, now: datetime) -> bool:
    """An extension is lawful only while the deadline in force before it has not passed."""
    return now <= pre_extension_due(jurisdiction, received_at, paused_seconds)


def extended_due_date(jurisdiction: str, received_at: datetime, paused_seconds: int = 0) -> datetime:
    base = pre_extension_due(jurisdiction, received_at, paused_seconds)
    return min(base + rule(jurisdiction).extension, legal_maximum(jurisdiction, received_at, paused_seconds))


def current_due(jurisdiction: str, received_at: datetime, paused_seconds: int = 0, extended: bool = False) -> datetime:
    """The due date in force for these facts (what ``due_at`` must hold)."""
    if extended:
        return extended_due_date(jurisdiction, received_at, paused_seconds)
    return pre_extension_due(jurisdiction, received_at, paused_seconds)


def lawful_due(
    jurisdiction: str,
    received_at: datetime,
    paused_seconds: int = 0,
    extended_at: datetime | None = None,
) -> datetime:
    """What metrics judge a request by: an extension counts only if it was made in time (a late one,
    from before the rule was enforced, does not make a late answer on time)."""
    base = pre_extension_due(jurisdiction, received_at, paused_seconds)
    if extended_at is not None and extended_at <= base:
        return extended_due_date(jurisdiction, received_at, paused_seconds)
    return base


def may_pause(jurisdiction: str) -> bool:
    return rule(jurisdiction).identity_pause


@lru_cache(maxsize=64)
def _us_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("US", years=year).keys())


def is_business_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _us_holidays(day.year)


def add_business_days(start: datetime, days: int) -> datetime:
    """``days`` working days after ``start``: Monday to Friday, US federal holidays excluded."""
    current = start
    remaining = days
    while remaining > 0:
        current += timedelta(days=1)
        if is_business_day(current.date()):
            remaining -= 1
    return current


def confirmation_due_date(jurisdiction: str, received_at: datetime) -> datetime | None:
    days = rule(jurisdiction).confirmation_business_days
    return add_business_days(received_at, days) if days else None
