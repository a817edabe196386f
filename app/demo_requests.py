"""Demo requests in every lifecycle state, for ``seed-demo`` (idempotent by fixed reference).

Each request walks the real lifecycle through ``app.dsr.services`` so its audit trail, deadlines
and emails look like production's. Jobs those calls register (fulfilment, mail) are dropped
before commit: demo requests must not be fulfilled against demo accounts by surprise. Timestamps
are then back-dated (never the status) so the queue, the badges and the reports have history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.audit import Actor, record_event
from app.demo_people import FIRST, LAST, demo_email
from app.dsr import deadlines, services
from app.dsr.models import CorrectionItem, DsrRequest
from app.dsr.states import RequestStatus
from app.extensions import db
from app.platform.models import Account
from app.staff.models import StaffUser

S = RequestStatus


@dataclass
class DemoSpec:
    reference: str
    request_type: str
    status: str
    days_ago: float
    account_index: int | None = None
    jurisdiction: str = "gdpr"
    corrections: list[tuple[str, str]] = field(default_factory=list)
    closed_after_days: float | None = None
    extended: bool = False


SPECS = [
    DemoSpec("DSR-DM01-SEED", "access", S.UNVERIFIED, 0.5, 10),
    DemoSpec("DSR-DM02-SEED", "access", S.PENDING_REVIEW, 2, 11),
    DemoSpec("DSR-DM03-SEED", "deletion", S.PENDING_REVIEW, 5, 12),
    DemoSpec(
        "DSR-DM04-SEED",
        "correction",
        S.PENDING_REVIEW,
        3,
        13,
        corrections=[("name", "Ada King"), ("company", "Analytical Engines plc")],
    ),
    DemoSpec("DSR-DM05-SEED", "access", S.PENDING_REVIEW, 26, 14),  # due in a few days: red badge
    DemoSpec("DSR-DM06-SEED", "deletion", S.PENDING_REVIEW, 40, 15),  # overdue
    DemoSpec("DSR-DM07-SEED", "access", S.PENDING_REVIEW, 20, 16, jurisdiction="ccpa"),
    DemoSpec("DSR-DM08-SEED", "access", S.ON_HOLD, 9, 17),
    DemoSpec("DSR-DM09-SEED", "access", S.APPROVED, 4, 18),
    DemoSpec("DSR-DM0A-SEED", "deletion", S.IN_PROGRESS, 6, 19),
    DemoSpec("DSR-DM0B-SEED", "access", S.COMPLETED, 30, 20, closed_after_days=12),
    DemoSpec("DSR-DM0C-SEED", "deletion", S.COMPLETED, 60, 21, jurisdiction="ccpa", closed_after_days=50),
    DemoSpec("DSR-DM0D-SEED", "access", S.DENIED, 15, None, closed_after_days=3),
    DemoSpec(
        "DSR-DM0E-SEED", "correction", S.CANCELLED, 12, 22, corrections=[("name", "G. Hopper")], closed_after_days=1
    ),
    DemoSpec("DSR-DM0F-SEED", "access", S.EXPIRED, 20, None, closed_after_days=7),
    DemoSpec("DSR-DM0G-SEED", "access", S.FAILED, 8, 23),
    DemoSpec("DSR-DM0H-SEED", "access", S.PENDING_REVIEW, 45, 24, jurisdiction="ccpa", extended=True),
]


def _email(spec: DemoSpec) -> tuple[str, str]:
    if spec.account_index is None:
        return f"visitor.{spec.reference[4:8].lower()}@example.net", "Casey Visitor"
    i = spec.account_index
    return demo_email(i), f"{FIRST[i % len(FIRST)]} {LAST[(i * 7) % len(LAST)]}"


def _walk(dsr: DsrRequest, spec: DemoSpec, officer: Actor) -> None:
    system = Actor.system("demo")
    target = S(spec.status)
    if target is S.UNVERIFIED:
        return
    if target is S.EXPIRED:
        services.transition(dsr, S.EXPIRED, system, reason_code="not_confirmed")
        return
    services.transition(dsr, S.PENDING_REVIEW, Actor.subject())
    if spec.extended:
        # Extended in time (20 days after receipt; _backdate moves the dates), as services.extend would have.
        dsr.extended_at = dsr.received_at + timedelta(days=20)
        dsr.extension_reason = "The request covers several years of records; we need more time to gather them."
        record_event("request.extended", officer, dsr=dsr, public=True, message="We extended the deadline once.")
    if target is S.PENDING_REVIEW:
        return
    if target is S.ON_HOLD:
        # Waiting for identity information (GDPR: a lawful pause); no mail goes out for demo data.
        services.hold(dsr, officer, "Waiting for the subject to confirm which account")
        dsr.hold_pauses_clock = True
        dsr.waiting_since = dsr.hold_started_at
    elif target is S.DENIED:
        services.deny(dsr, officer, "identity_not_verified", "The address does not match any record we can verify.")
    elif target is S.CANCELLED:
        services.transition(dsr, S.CANCELLED, Actor.subject(), reason_code="subject")
    else:
        for item in dsr.corrections:
            item.decision = "approved"
        services.approve(dsr, officer, confirm_reference=dsr.reference)
        if target is not S.APPROVED:
            services.transition(dsr, S.IN_PROGRESS, system)
            if target is S.COMPLETED:
                services.transition(dsr, S.COMPLETED, system)
            elif target is S.FAILED:
                services.transition(dsr, S.FAILED, system, reason_code="demo")
                dsr.last_error = "BillingTransient: Stripe did not answer within 20 s (demo failure)"
            else:
                dsr.progress_percent, dsr.progress_rows, dsr.progress_note = 40, 1200, "Deleting usage rows"


def _backdate(dsr: DsrRequest, spec: DemoSpec, received: datetime) -> None:
    dsr.received_at = received
    if dsr.verified_at:
        dsr.verified_at = received + timedelta(hours=1)
        dsr.due_at = deadlines.due_date(dsr.jurisdiction, received)
        dsr.original_due_at = dsr.due_at
        dsr.confirmation_due_at = deadlines.confirmation_due_date(dsr.jurisdiction, received)
        if dsr.extended_at:
            dsr.extended_at = received + timedelta(days=20)
            dsr.due_at = deadlines.extended_due_date(dsr.jurisdiction, received, dsr.paused_seconds or 0)
    if dsr.decided_at:
        dsr.decided_at = received + timedelta(days=min(spec.closed_after_days or 1, 2))
    if spec.closed_after_days is not None and dsr.closed_at:
        dsr.closed_at = received + timedelta(days=spec.closed_after_days)


def seed_demo_requests(now: datetime | None = None) -> int:
    """Create the demo requests that do not exist yet; returns how many were created."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    have = set(
        db.session.execute(
            select(DsrRequest.reference).where(DsrRequest.reference.in_([s.reference for s in SPECS]))
        ).scalars()
    )
    officer_user = db.session.execute(
        select(StaffUser).where(StaffUser.role == "officer").order_by(StaffUser.id).limit(1)
    ).scalar_one_or_none()
    officer = Actor.staff(officer_user) if officer_user else Actor.system("demo officer")
    made = 0
    for spec in SPECS:
        if spec.reference in have:
            continue
        email, name = _email(spec)
        received = now - timedelta(days=spec.days_ago)
        dsr = DsrRequest(
            reference=spec.reference,
            request_type=spec.request_type,
            status=S.UNVERIFIED.value,
            email=email,
            full_name=name,
            jurisdiction=spec.jurisdiction,
            details="Demo request: please send me everything you hold about me.",
            received_at=received,
            demo=True,
        )
        account = db.session.execute(select(Account).where(Account.email == email)).scalar_one_or_none()
        for fld, value in spec.corrections:
            current = getattr(account, fld, None) if account else None
            dsr.corrections.append(CorrectionItem(field=fld, proposed_value=value, current_value=current))
        db.session.add(dsr)
        db.session.flush()
        record_event("request.submitted", Actor.subject(), dsr=dsr, public=True, message="Demo request received.")
        _walk(dsr, spec, officer)
        db.session.flush()
        db.session.refresh(dsr)
        _backdate(dsr, spec, received)
        dsr.demo = True  # services.approve clears it for staff approvals; seeded ones stay demo
        db.session.info.pop("dsr_pending_jobs", None)  # no real fulfilment or mail for demo data
        db.session.commit()
        made += 1
    return made
