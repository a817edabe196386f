"""Domain services for requests. The only module that writes a request's status.

``transition`` is the single path for status changes: it locks the row, checks the table in
``states.py``, stamps times and deadlines, records the audit event in the same transaction and
registers follow-up jobs to run after commit. Callers commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from rq import Retry
from sqlalchemy import select

from app.audit import Actor, record_event
from app.dsr import deadlines
from app.dsr.models import DsrRequest, Token, hash_token
from app.dsr.states import (
    ALLOWED,
    DENIAL_LABELS,
    OPEN,
    DenialReason,
    RequestStatus,
    RequestType,
)
from app.extensions import db
from app.models_base import utcnow
from app.queue import PendingJob, enqueue_after_commit

S = RequestStatus


class TransitionError(Exception):
    """A status change the lifecycle does not allow."""

    def __init__(self, current: str, to: str):
        self.current, self.to = current, to
        super().__init__(f"cannot move a request from {current} to {to}")


class ActionError(Exception):
    """An action refused for a reason the user can fix or should be told."""


def lock_request(request_id: int) -> DsrRequest:
    """Load the request with a row lock (``SELECT ... FOR UPDATE`` on PostgreSQL)."""
    stmt = select(DsrRequest).where(DsrRequest.id == request_id).with_for_update()
    dsr = db.session.execute(stmt.execution_options(populate_existing=True)).scalar_one()
    return dsr


# Public messages shown to the subject on the status page, per new status.
PUBLIC_MESSAGES = {
    S.PENDING_REVIEW: "You confirmed your email address. Your request is waiting for review.",
    S.ON_HOLD: "Your request is on hold.",
    S.APPROVED: "Your request was approved and will be carried out shortly.",
    S.IN_PROGRESS: "We are carrying out your request.",
    S.COMPLETED: "Your request is complete.",
    S.DENIED: "Your request was denied.",
    S.CANCELLED: "Your request was cancelled.",
    S.EXPIRED: "Your request expired because the email address was not confirmed within 7 days.",
    S.FAILED: "A technical problem delayed your request; our staff have been alerted.",
}


def transition(
    dsr: DsrRequest,
    to: RequestStatus | str,
    actor: Actor,
    *,
    reason: str | None = None,
    data: dict | None = None,
) -> DsrRequest:
    """Move ``dsr`` to ``to`` if the lifecycle allows it; the caller commits."""
    to = RequestStatus(to)
    locked = lock_request(dsr.id)
    current = RequestStatus(locked.status)
    if to not in ALLOWED[current]:
        raise TransitionError(current.value, to.value)
    now = utcnow()
    if current is S.ON_HOLD:
        _end_hold(locked, now)
    if to is S.PENDING_REVIEW and current is S.UNVERIFIED:
        locked.verified_at = now
        locked.due_at = deadlines.due_date(locked.jurisdiction, locked.received_at)
        locked.original_due_at = locked.due_at
        locked.confirmation_due_at = deadlines.confirmation_due_date(locked.jurisdiction, locked.received_at)
    elif to is S.ON_HOLD:
        locked.hold_started_at = now
        locked.hold_reason = reason
    elif to in (S.APPROVED, S.DENIED) and current in (S.PENDING_REVIEW, S.ON_HOLD):
        locked.decided_at = now
        locked.decided_by_id = actor.id if actor.kind == "staff" else None
    elif to is S.IN_PROGRESS:
        locked.started_at = now
        locked.heartbeat_at = now
        locked.attempts = (locked.attempts or 0) + 1
    elif to is S.APPROVED and current is S.FAILED:
        locked.last_error = None
        locked.progress_percent = 0
        locked.progress_rows = 0
    if to in (S.COMPLETED, S.DENIED, S.CANCELLED, S.EXPIRED):
        locked.closed_at = now
    if to is S.COMPLETED:
        locked.progress_percent = 100
    locked.status = to.value
    payload = {"from": current.value, "to": to.value}
    if reason:
        payload["reason"] = reason[:1000]
    payload.update(data or {})
    record_event(
        "request.status_changed",
        actor,
        dsr=locked,
        public=to in PUBLIC_MESSAGES,
        message=PUBLIC_MESSAGES.get(to, ""),
        data=payload,
    )
    if to is S.APPROVED:
        enqueue_after_commit(db.session, fulfilment_job(locked))
    return locked


def _end_hold(dsr: DsrRequest, now: datetime) -> None:
    if dsr.hold_started_at and dsr.hold_pauses_clock and dsr.due_at:
        paused = now - dsr.hold_started_at
        dsr.paused_seconds = (dsr.paused_seconds or 0) + int(paused.total_seconds())
        dsr.due_at = dsr.due_at + paused
    dsr.hold_started_at = None
    dsr.hold_pauses_clock = False


def fulfilment_job(dsr: DsrRequest) -> PendingJob:
    func = {
        RequestType.ACCESS.value: "workers.jobs.build_export",
        RequestType.DELETION.value: "workers.jobs.erase_subject",
        RequestType.CORRECTION.value: "workers.jobs.apply_corrections",
    }[dsr.request_type]
    # Transient errors (Stripe unreachable, database hiccups) are retried with backoff; the job
    # itself moves the request to ``failed`` on a permanent error or the last retry.
    retry = Retry(max=4, interval=[30, 120, 600, 1800])
    return PendingJob(queue="fulfilment", func=func, args=(dsr.id,), job_id=f"fulfil-{dsr.id}", retry=retry)


# --- tokens -------------------------------------------------------------------------------------


def issue_token(
    dsr: DsrRequest,
    purpose: str,
    *,
    lifetime: timedelta | None = None,
    max_uses: int | None = None,
    export_id: int | None = None,
) -> str:
    """Create a token and return the raw secret (only its hash is stored)."""
    raw, digest = Token.generate()
    db.session.add(
        Token(
            token_hash=digest,
            purpose=purpose,
            request_id=dsr.id,
            export_id=export_id,
            expires_at=utcnow() + lifetime if lifetime else None,
            max_uses=max_uses,
        )
    )
    return raw


class TokenProblem(Exception):
    """Why a link did not work: ``invalid``, ``expired`` or ``used``."""

    def __init__(self, kind: str, token: Token | None = None):
        self.kind, self.token = kind, token
        super().__init__(kind)


def find_token(raw: str, purpose: str, *, lock: bool = False) -> Token:
    """Look a token up by hash and purpose; raise ``TokenProblem`` when it cannot be used."""
    if not raw or len(raw) > 200:
        raise TokenProblem("invalid")
    stmt = select(Token).where(Token.token_hash == hash_token(raw), Token.purpose == purpose)
    if lock:
        stmt = stmt.with_for_update()
    token = db.session.execute(stmt).scalar_one_or_none()
    if token is None:
        raise TokenProblem("invalid")
    if token.expires_at is not None and token.expires_at <= utcnow():
        raise TokenProblem("expired", token)
    if token.max_uses is not None and token.use_count >= token.max_uses:
        raise TokenProblem("used", token)
    return token


def status_url(dsr: DsrRequest, raw_token: str) -> str:
    base = current_app.config["PORTAL_BASE_URL"]
    return f"{base}/requests/{dsr.reference}?token={raw_token}"


# --- lifecycle operations used by the portal, the dashboard and the workers --------------------


def find_open_duplicate(dsr: DsrRequest) -> DsrRequest | None:
    stmt = (
        select(DsrRequest)
        .where(
            DsrRequest.email == dsr.email,
            DsrRequest.request_type == dsr.request_type,
            DsrRequest.id != dsr.id,
            DsrRequest.status.in_([s.value for s in OPEN if s is not S.UNVERIFIED]),
        )
        .order_by(DsrRequest.received_at)
        .limit(1)
    )
    return db.session.execute(stmt).scalar_one_or_none()


def deny(dsr: DsrRequest, actor: Actor, code: str, text: str = "") -> DsrRequest:
    reason = DenialReason(code)
    if reason is DenialReason.OTHER and not text.strip():
        raise ActionError("Explain the reason when choosing 'other'.")
    locked = transition(dsr, S.DENIED, actor, reason=DENIAL_LABELS[reason], data={"denial_code": reason.value})
    locked.denial_code = reason.value
    locked.denial_text = text.strip() or None
    return locked


def extend(dsr: DsrRequest, actor: Actor, reason: str) -> DsrRequest:
    """Extend the deadline once (GDPR +2 months, CCPA +45 days), with a reason for the subject."""
    locked = lock_request(dsr.id)
    if locked.extended_at is not None:
        raise ActionError("This request was already extended once; the law allows one extension.")
    if locked.status not in {s.value for s in OPEN} or locked.status == S.UNVERIFIED or not locked.due_at:
        raise ActionError("Only an open, verified request can be extended.")
    if not reason.strip():
        raise ActionError("Give the reason for the extension; it is sent to the subject.")
    old_due = locked.due_at
    locked.due_at = deadlines.extended_due_date(locked.jurisdiction, old_due)
    locked.extended_at = utcnow()
    locked.extension_reason = reason.strip()
    record_event(
        "request.extended",
        actor,
        dsr=locked,
        public=True,
        message=f"The deadline was extended to {locked.due_at:%d %B %Y}: {reason.strip()}",
        data={"old_due_at": old_due.isoformat(), "new_due_at": locked.due_at.isoformat()},
    )
    return locked


def assign(dsr: DsrRequest, actor: Actor, staff_id: int | None) -> DsrRequest:
    locked = lock_request(dsr.id)
    locked.assignee_id = staff_id
    record_event("request.assigned", actor, dsr=locked, data={"assignee_id": staff_id})
    return locked


def add_note(dsr: DsrRequest, actor: Actor, text: str) -> None:
    if not text.strip():
        raise ActionError("The note is empty.")
    record_event("request.note_added", actor, dsr=dsr, message=text.strip()[:1000])


def record_progress(request_id: int, percent: int, rows: int, note: str | None = None) -> None:
    """Mirror a job's progress into the row (own short transaction; not a status change)."""
    db.session.execute(
        DsrRequest.__table__.update()
        .where(DsrRequest.id == request_id)
        .values(
            progress_percent=max(0, min(100, percent)),
            progress_rows=rows,
            progress_note=(note or "")[:200] or None,
            heartbeat_at=utcnow(),
        )
    )
    db.session.commit()


def expire_unverified(now: datetime | None = None) -> int:
    """Close requests whose email was not confirmed within ``UNVERIFIED_EXPIRY_DAYS`` (7); the caller commits.

    Returns how many were expired. Safe to run repeatedly (cron): an expired request no longer matches.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=current_app.config.get("UNVERIFIED_EXPIRY_DAYS", 7))
    ids = db.session.execute(
        select(DsrRequest.id).where(DsrRequest.status == S.UNVERIFIED.value, DsrRequest.received_at <= cutoff)
    ).scalars()
    count = 0
    for request_id in list(ids):
        dsr = lock_request(request_id)
        if dsr.status != S.UNVERIFIED.value:
            continue
        transition(dsr, S.EXPIRED, Actor.system("expiry"), reason="Email address not confirmed within 7 days")
        count += 1
    return count
