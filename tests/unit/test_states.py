"""Every allowed transition succeeds, every other one is refused, each writes exactly one audit event."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from app.audit import Actor
from app.audit.models import AuditEvent
from app.dsr import services
from app.dsr.states import ALLOWED, RequestStatus
from app.extensions import db
from tests.factories import make_request

PAIRS = [(a, b) for a in RequestStatus for b in RequestStatus]


def audit_count() -> int:
    return db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


@pytest.mark.parametrize(("current", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_transition_table_enforced(app, current, target):
    dsr = make_request(status=current)
    before = audit_count()
    if target in ALLOWED[current]:
        services.transition(dsr, target, Actor.system())
        db.session.commit()
        db.session.refresh(dsr)
        assert dsr.status == target.value
        assert audit_count() == before + 1
        ev = db.session.execute(select(AuditEvent).order_by(AuditEvent.id.desc())).scalars().first()
        assert ev.event == "request.status_changed"
        assert ev.data == {"from": current.value, "to": target.value}
        assert ev.request_reference == dsr.reference
    else:
        with pytest.raises(services.TransitionError, match=f"from {current.value} to {target.value}"):
            services.transition(dsr, target, Actor.system())
        db.session.rollback()
        db.session.refresh(dsr)
        assert dsr.status == current.value
        assert audit_count() == before


def test_verification_stamps_deadlines(app):
    dsr = make_request(status="unverified", jurisdiction="ccpa")
    dsr.received_at = datetime(2026, 11, 27, 9, tzinfo=UTC)
    db.session.commit()
    services.transition(dsr, RequestStatus.PENDING_REVIEW, Actor.subject())
    db.session.commit()
    db.session.refresh(dsr)
    assert dsr.verified_at is not None
    assert dsr.due_at == datetime(2027, 1, 11, 9, tzinfo=UTC)
    assert dsr.confirmation_due_at == datetime(2026, 12, 11, 9, tzinfo=UTC)


def test_terminal_statuses_set_closed_at(app):
    dsr = make_request(status="pending_review")
    services.transition(dsr, RequestStatus.CANCELLED, Actor.subject())
    db.session.commit()
    db.session.refresh(dsr)
    assert dsr.closed_at is not None


def test_hold_that_pauses_clock_moves_due_date(app):
    from datetime import timedelta

    dsr = make_request(status="pending_review")
    due = dsr.due_at
    services.transition(dsr, RequestStatus.ON_HOLD, Actor.system(), reason_code="identity")
    db.session.commit()
    dsr.hold_pauses_clock = True
    dsr.hold_started_at = dsr.hold_started_at - timedelta(days=3)
    db.session.commit()
    services.transition(dsr, RequestStatus.PENDING_REVIEW, Actor.system())
    db.session.commit()
    db.session.refresh(dsr)
    assert dsr.paused_seconds >= 3 * 86400
    assert dsr.due_at - due >= timedelta(days=3)


def test_extend_only_once(app):
    dsr = make_request(status="pending_review")
    due = dsr.due_at
    services.extend(dsr, Actor.system(), "complex request")
    db.session.commit()
    db.session.refresh(dsr)
    assert dsr.due_at > due
    with pytest.raises(services.ActionError, match="already extended"):
        services.extend(dsr, Actor.system(), "again")


def test_reference_format(app):
    import re

    dsr = make_request()
    assert re.fullmatch(r"DSR-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", dsr.reference)
