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


# --- staff actions from the dashboard ----------------------------------------------------------
# Each raises TransitionError (wrong state) or ActionError (a rule the officer can fix); the
# caller commits. Where the subject must be told (denial, extension, a question) the email is
# queued in the same transaction, so it is sent exactly when the change commits.

STATUS_LINK_DAYS = 30


def notify_subject(dsr: DsrRequest, template: str, subject: str, **context) -> None:
    """Email the subject with a fresh status link (tokens are stored hashed, so a new one is issued)."""
    from app.mail import queue_mail

    raw = issue_token(dsr, "status", lifetime=timedelta(days=STATUS_LINK_DAYS))
    queue_mail(dsr.email, template, subject, dsr=dsr, status_link=status_url(dsr, raw), **context)


def approve(dsr: DsrRequest, actor: Actor, *, plan: list | dict | None = None) -> DsrRequest:
    """Approve for fulfilment. Corrections need every proposed field decided and one approved;
    deletions store the dry-run plan staff saw (``plan``) on the request."""
    if dsr.request_type == RequestType.CORRECTION.value:
        decisions = [item.decision for item in dsr.corrections]
        if any(d == "pending" for d in decisions):
            raise ActionError("Decide every proposed change (approve or reject) before approving the request.")
        if decisions and "approved" not in decisions:
            raise ActionError("Every proposed change was rejected: deny the request instead of approving it.")
    data = {"plan_items": len(plan)} if isinstance(plan, list) else None
    locked = transition(dsr, S.APPROVED, actor, data=data)
    if plan is not None:
        locked.plan = plan if isinstance(plan, dict) else {"items": plan}
    return locked


def staff_deny(dsr: DsrRequest, actor: Actor, code: str, text: str = "") -> DsrRequest:
    try:
        reason = DenialReason(code)
    except ValueError:
        raise ActionError("Choose a reason for the denial.") from None
    locked = deny(dsr, actor, reason.value, text or "")
    notify_subject(
        locked,
        "admin_denied",
        f"Your privacy request {locked.reference} was denied",
        reason_label=DENIAL_LABELS[reason],
        reason_text=locked.denial_text,
    )
    return locked


def staff_extend(dsr: DsrRequest, actor: Actor, reason: str) -> DsrRequest:
    locked = extend(dsr, actor, reason)
    notify_subject(
        locked,
        "admin_extended",
        f"More time is needed for your privacy request {locked.reference}",
        reason=locked.extension_reason,
    )
    return locked


def hold(dsr: DsrRequest, actor: Actor, reason: str = "", *, pauses_clock: bool = False) -> DsrRequest:
    locked = transition(dsr, S.ON_HOLD, actor, reason=reason.strip() or "Put on hold by staff")
    locked.hold_pauses_clock = pauses_clock
    return locked


def resume(dsr: DsrRequest, actor: Actor) -> DsrRequest:
    return transition(dsr, S.PENDING_REVIEW, actor, reason="Review resumed")


def retry(dsr: DsrRequest, actor: Actor) -> DsrRequest:
    if dsr.status != S.FAILED.value:
        raise ActionError("Only a failed request can be retried.")
    return transition(dsr, S.APPROVED, actor, reason="Retry after a failure")


def staff_cancel(dsr: DsrRequest, actor: Actor, reason: str = "") -> DsrRequest:
    return transition(dsr, S.CANCELLED, actor, reason=reason.strip() or "Cancelled by staff")


def request_info(dsr: DsrRequest, actor: Actor, message: str) -> DsrRequest:
    """Ask the subject for more information: the request waits on hold (the clock paused) and they get
    an email with the question and their status link."""
    message = (message or "").strip()
    if not message:
        raise ActionError("Write the question for the subject.")
    if dsr.status == S.ON_HOLD.value:
        locked = lock_request(dsr.id)
    else:
        locked = hold(dsr, actor, "Waiting for information from the subject", pauses_clock=True)
    record_event(
        "request.info_requested", actor, dsr=locked, public=True, message=message[:1000], data={"to": "subject"}
    )
    notify_subject(locked, "admin_info_requested", f"We need more information: {locked.reference}", message=message)
    return locked


def decide_correction(dsr: DsrRequest, actor: Actor, item_id: int, decision: str) -> None:
    """Approve or reject one proposed field change, while the request is still under review."""
    from app.dsr.models import CorrectionItem

    if decision not in ("approved", "rejected"):
        raise ActionError("Choose approve or reject for the field.")
    locked = lock_request(dsr.id)
    if locked.status not in (S.PENDING_REVIEW.value, S.ON_HOLD.value):
        raise ActionError("Proposed changes can only be decided while the request is under review.")
    item = db.session.get(CorrectionItem, item_id)
    if item is None or item.request_id != locked.id:
        raise ActionError("That proposed change does not belong to this request.")
    item.decision = decision
    item.decided_by_id = actor.id if actor.kind == "staff" else None
    item.decided_at = utcnow()
    record_event(
        "request.correction_decided",
        actor,
        dsr=locked,
        data={"item_id": item.id, "field": item.field, "decision": decision},
    )


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
