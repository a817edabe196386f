"""Property tests of the deadline rules: whatever the receipt date and whatever sequence of holds,
questions, answers and extension attempts staff make, the due date never passes the legal maximum,
an extension is never granted after the deadline, and CCPA never moves but by its one extension."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.dsr import deadlines

RECEIVED = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)
# Each step: (days that pass, what staff do): hold (internal), identity question, answer, extend.
STEPS = st.lists(
    st.tuples(st.floats(min_value=0, max_value=60), st.sampled_from(["hold", "identity", "answer", "extend"])),
    max_size=12,
)


class Request:
    """The deadline facts of one request, moved only as ``app.dsr.services`` moves them."""

    def __init__(self, jurisdiction: str, received: datetime):
        self.j, self.received = jurisdiction, received
        self.paused, self.extended_at, self.pause_started = 0, None, None
        self.due = deadlines.due_date(jurisdiction, received)

    def step(self, now: datetime, action: str) -> None:
        if action == "identity" and self.pause_started is None and deadlines.may_pause(self.j):
            self.pause_started = now
        elif action == "answer" and self.pause_started is not None:
            self.paused += int((now - self.pause_started).total_seconds())
            self.pause_started = None
            self.due = deadlines.current_due(self.j, self.received, self.paused, self.extended_at is not None)
        elif action == "extend" and self.extended_at is None:
            if deadlines.extension_allowed(self.j, self.received, self.paused, now):
                self.extended_at = now
                self.due = deadlines.current_due(self.j, self.received, self.paused, True)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["gdpr", "ccpa", "other"]), RECEIVED, STEPS)
def test_due_date_never_exceeds_the_legal_maximum(jurisdiction, received, steps):
    req, now = Request(jurisdiction, received), received
    for days, action in steps:
        now += timedelta(days=days)
        before = deadlines.pre_extension_due(jurisdiction, received, req.paused)
        req.step(now, action)
        assert req.due <= deadlines.legal_maximum(jurisdiction, received, req.paused)
        if req.extended_at == now:
            assert now <= before  # granted only while the deadline in force had not passed
    if jurisdiction == "ccpa":
        assert req.paused == 0
        assert req.due in (received + timedelta(days=45), received + timedelta(days=90))
        assert req.due <= received + timedelta(days=90)
    assert deadlines.lawful_due(jurisdiction, received, req.paused, req.extended_at) == req.due


# No per-example deadline: the first call loads the holiday calendar, slow on a loaded machine.
@settings(deadline=None)
@given(RECEIVED)
def test_confirmation_is_ten_business_days_later(received):
    confirmed = deadlines.confirmation_due_date("ccpa", received)
    assert confirmed > received and deadlines.is_business_day(confirmed.date())
    days = [received.date() + timedelta(days=n) for n in range(1, (confirmed - received).days + 1)]
    assert sum(deadlines.is_business_day(d) for d in days) == 10
