"""Domain services for requests. The only module that writes a request's status.

``transition`` is the single path for status changes: it locks the row, checks the table in
``states.py``, stamps times and deadlines, records the audit event in the same transaction and
registers follow-up jobs to run after commit. Callers commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from rq import Retry
from sqlalchemy import select

from app.audit import Actor, record_event
from app.dsr import deadlines
from app.dsr.models import CorrectionItem, DsrRequest, RequestMessage, RequestNote, Token, hash_token
from app.dsr.states import (
    ALLOWED,
    CLOSED,
    DENIAL_EXPLANATIONS,
    DENIAL_LABELS,
    OPEN,
    STAFF_DECIDED,
    DenialReason,
    RequestStatus,
    RequestType,
)
from app.extensions import db
from app.models_base import table_of, utcnow
from app.queue import PendingJob, enqueue_after_commit

S = RequestStatus


class TransitionError(Exception):
    """A status change the lifecycle does not allow."""

    def __init__(self, current: str, to: str) -> None:
        self.current, self.to = current, to
        super().__init__(f"cannot move a request from {current} to {to}")


class ActionError(Exception):
    """An action refused for a reason the user can fix or should be told."""


def lock_request(request_id: int) -> DsrRequest:
    """Load the request with a row lock (``SELECT ... FOR UPDATE`` on PostgreSQL)."""
    stmt = select(DsrRequest).where(DsrRequest.id == request_id).with_for_update()
    dsr = db.session.execute(stmt.execution_options(populate_existing=True)).scalar_one()
    return dsr


# Backoff (seconds) for a fulfilment job's transient errors, one retry each; FULFIL_RETRY_INTERVALS overrides it.
FULFIL_RETRY_INTERVALS = (30, 120, 600, 1800)

# Public messages shown to the subject on the status page, per new status ({days}: UNVERIFIED_EXPIRY_DAYS).
PUBLIC_MESSAGES = {
    S.PENDING_REVIEW: "You confirmed your email address. Your request is waiting for review.",
    S.ON_HOLD: "Your request is on hold.",
    S.APPROVED: "Your request was approved and will be carried out shortly.",
    S.IN_PROGRESS: "We are carrying out your request.",
    S.AWAITING_RELEASE: "Your data is ready; a privacy officer is checking it before we send you the download link.",
    S.COMPLETED: "Your request is complete.",
    S.DENIED: "Your request was denied.",
    S.CANCELLED: "Your request was cancelled.",
    S.EXPIRED: "Your request expired because the email address was not confirmed within {days} days.",
    S.FAILED: "A technical problem delayed your request; our staff have been alerted.",
}


def transition(
    dsr: DsrRequest,
    to: RequestStatus | str,
    actor: Actor,
    *,
    reason_code: str | None = None,
    data: dict | None = None,
) -> DsrRequest:
    """Move ``dsr`` to ``to`` if the lifecycle allows it; the caller commits.

    The audit event carries codes and ids only (``reason_code``, ``data``): any free text about the
    subject (a hold reason, a cancellation reason) is the caller's to store on the request itself, where
    it goes when the request is minimised; the append-only trail keeps nothing to minimise.
    """
    to = RequestStatus(to)
    locked = lock_request(dsr.id)
    current = RequestStatus(locked.status)
    if to not in ALLOWED[current]:
        raise TransitionError(current.value, to.value)
    now = utcnow()
    if current is S.ON_HOLD:
        _end_hold(locked, now)
    if to is S.PENDING_REVIEW and current is S.UNVERIFIED:
        start_clock(locked, now)
    elif to is S.ON_HOLD:
        locked.hold_started_at = now
    elif to in (S.APPROVED, S.DENIED) and current in (S.PENDING_REVIEW, S.ON_HOLD):
        locked.decided_at = now
        locked.decided_by_id = actor.id if actor.kind == "staff" else None
    elif to is S.IN_PROGRESS:
        locked.started_at = now
        locked.heartbeat_at = now
        locked.attempts = (locked.attempts or 0) + 1
    elif to is S.APPROVED and current in (S.FAILED, S.AWAITING_RELEASE):
        locked.last_error = None
        locked.progress_percent = 0
        locked.progress_rows = 0
    if to in (S.COMPLETED, S.DENIED, S.CANCELLED, S.EXPIRED):
        locked.closed_at = now
        locked.waiting_since = None
    if to is S.COMPLETED:
        locked.progress_percent = 100
        locked.progress_note = None  # progress notes end with the job
        locked.outcome = locked.outcome or "completed"
    locked.status = to.value
    payload: dict = {"from": current.value, "to": to.value}
    if reason_code:
        payload["reason_code"] = reason_code[:64]
    payload.update(data or {})
    record_event(
        "request.status_changed",
        actor,
        dsr=locked,
        public=to in PUBLIC_MESSAGES,
        message=PUBLIC_MESSAGES.get(to, "").format(days=current_app.config["UNVERIFIED_EXPIRY_DAYS"]),
        data=payload,
    )
    if to is S.APPROVED:
        enqueue_after_commit(db.session, fulfilment_job(locked))
    return locked


def start_clock(dsr: DsrRequest, now: datetime) -> None:
    """The request is verified: its deadlines run from receipt (never from verification)."""
    dsr.verified_at = dsr.verified_at or now
    dsr.original_due_at = deadlines.due_date(dsr.jurisdiction, dsr.received_at)
    dsr.due_at = dsr.original_due_at
    dsr.confirmation_due_at = deadlines.confirmation_due_date(dsr.jurisdiction, dsr.received_at)


def _end_hold(dsr: DsrRequest, now: datetime) -> None:
    """Leaving a hold. Only a lawful pause (GDPR, waiting for identity information) moves the deadline,
    by the time paused, and never past the legal maximum."""
    if dsr.hold_started_at and dsr.hold_pauses_clock and deadlines.may_pause(dsr.jurisdiction) and dsr.due_at:
        paused = max(0, int((now - dsr.hold_started_at).total_seconds()))
        dsr.paused_seconds = (dsr.paused_seconds or 0) + paused
        dsr.due_at = deadlines.current_due(
            dsr.jurisdiction, dsr.received_at, dsr.paused_seconds, extended=dsr.extended_at is not None
        )
    dsr.hold_started_at = None
    dsr.hold_pauses_clock = False
    dsr.hold_reason = None
    dsr.waiting_since = None


def fulfilment_job(dsr: DsrRequest) -> PendingJob:
    func = {
        RequestType.ACCESS.value: "workers.jobs.build_export",
        RequestType.DELETION.value: "workers.jobs.erase_subject",
        RequestType.CORRECTION.value: "workers.jobs.apply_corrections",
        RequestType.OPT_OUT.value: "workers.jobs.apply_opt_out",
        RequestType.RESTRICTION.value: "workers.jobs.send_decision",
        RequestType.OBJECTION.value: "workers.jobs.send_decision",
    }[dsr.request_type]
    # Transient errors (Stripe or the export store unreachable, database hiccups) are retried with
    # backoff (FULFIL_RETRY_INTERVALS); the job itself moves the request to ``failed`` on a permanent
    # error or the last retry.
    intervals = current_app.config.get("FULFIL_RETRY_INTERVALS") or FULFIL_RETRY_INTERVALS
    retry = Retry(max=len(intervals), interval=list(intervals))
    return PendingJob(queue="fulfilment", func=func, args=(dsr.id,), job_id=f"fulfil-{dsr.id}", retry=retry)


# --- tokens -------------------------------------------------------------------------------------


def issue_token(
    dsr: DsrRequest,
    purpose: str,
    *,
    lifetime: timedelta | None = None,
    max_uses: int | None = None,
    export_id: int | None = None,
    identifier_id: int | None = None,
    correction_id: int | None = None,
) -> str:
    """Create a token and return the raw secret (only its hash is stored). Every token expires: a
    status link after ``STATUS_LINK_DAYS`` unless ``lifetime`` says otherwise."""
    raw, digest = Token.generate()
    db.session.add(
        Token(
            token_hash=digest,
            purpose=purpose,
            request_id=dsr.id,
            export_id=export_id,
            identifier_id=identifier_id,
            correction_id=correction_id,
            expires_at=utcnow() + (lifetime or status_link_lifetime()),
            max_uses=max_uses,
        )
    )
    return raw


class TokenProblem(Exception):
    """Why a link did not work: ``invalid``, ``expired`` or ``used``."""

    def __init__(self, kind: str, token: Token | None = None) -> None:
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
    """The emailed status link. Opening it trades the token for a cookie scoped to the page and
    redirects to the clean URL, so the token never stays in the address bar, history or ``Referer``."""
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
    if reason is DenialReason.LEGAL_EXEMPTION and not text.strip():
        raise ActionError("Say which legal exemption applies and why; the subject is sent it.")
    locked = transition(dsr, S.DENIED, actor, reason_code=reason.value, data={"denial_code": reason.value})
    locked.denial_code = reason.value
    locked.denial_text = text.strip() or None
    return locked


def extend(dsr: DsrRequest, actor: Actor, reason: str, now: datetime | None = None) -> DsrRequest:
    """Extend the deadline once (GDPR +2 months, CCPA +45 days), with a reason for the subject, and only
    while the deadline in force has not passed: the law allows an extension within the first period."""
    now = now or utcnow()
    locked = lock_request(dsr.id)
    if locked.extended_at is not None:
        raise ActionError("This request was already extended once; the law allows one extension.")
    if locked.status not in {s.value for s in OPEN} or locked.status == S.UNVERIFIED or not locked.due_at:
        raise ActionError("Only an open, verified request can be extended.")
    if not reason.strip():
        raise ActionError("Give the reason for the extension; it is sent to the subject.")
    paused = locked.paused_seconds or 0
    if not deadlines.extension_allowed(locked.jurisdiction, locked.received_at, paused, now):
        limit = deadlines.pre_extension_due(locked.jurisdiction, locked.received_at, paused)
        raise ActionError(
            f"The deadline ({limit:%d %B %Y}) has passed: the law allows an extension only before it. "
            "Answer the request now."
        )
    old_due = locked.due_at
    locked.extended_at = now
    locked.extension_reason = reason.strip()
    locked.due_at = deadlines.current_due(
        locked.jurisdiction, locked.received_at, locked.paused_seconds or 0, extended=True
    )
    record_event(
        "request.extended",
        actor,
        dsr=locked,
        public=True,
        message="We need more time and extended the deadline once, as the law allows; we emailed you why.",
        data={"old_due_at": old_due.isoformat(), "new_due_at": locked.due_at.isoformat()},
    )
    return locked


def assign(dsr: DsrRequest, actor: Actor, staff_id: int | None) -> DsrRequest:
    locked = lock_request(dsr.id)
    locked.assignee_id = staff_id
    record_event("request.assigned", actor, dsr=locked, data={"assignee_id": staff_id})
    return locked


def add_note(dsr: DsrRequest, actor: Actor, text: str) -> RequestNote:
    """An internal note lives with the request; the audit trail records only that one was added."""
    text = (text or "").strip()
    if not text:
        raise ActionError("The note is empty.")
    note = RequestNote(request_id=dsr.id, author_id=actor.id if actor.kind == "staff" else None, body=text[:2000])
    db.session.add(note)
    db.session.flush()
    record_event("request.note_added", actor, dsr=dsr, data={"note_id": note.id})
    return note


def record_progress(request_id: int, percent: int, rows: int, note: str | None = None) -> None:
    """Mirror a job's progress into the row (own short transaction; not a status change)."""
    db.session.execute(
        table_of(DsrRequest)
        .update()
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


def status_link_lifetime() -> timedelta:
    return timedelta(days=int(current_app.config.get("STATUS_LINK_DAYS") or 30))


def notify_subject(dsr: DsrRequest, template: str, subject: str, **context: Any) -> None:
    """Email the subject with a fresh status link (tokens are stored hashed, so a new one is issued)."""
    from app.mail import queue_mail

    if not dsr.email:
        return
    raw = issue_token(dsr, "status", lifetime=status_link_lifetime())
    queue_mail(dsr.email, template, subject, dsr=dsr, status_link=status_url(dsr, raw), **context)


def approve(
    dsr: DsrRequest,
    actor: Actor,
    *,
    plan: list | dict | None = None,
    confirm_reference: str | None = None,
    decision_text: str | None = None,
) -> DsrRequest:
    """Approve for fulfilment. Corrections need every proposed field decided, one approved, and a new
    email address confirmed by its own link. Deletions need the reference typed back (nothing irreversible
    happens on one click), store the dry-run plan staff saw (``plan``) and, with
    ``DELETION_REQUIRES_SECOND_APPROVER``, a second officer's approval: the first is recorded and the
    request waits (its status unchanged) until another officer approves."""
    if dsr.request_type == RequestType.CORRECTION.value:
        decisions = [item.decision for item in dsr.corrections]
        if any(d == "pending" for d in decisions):
            raise ActionError("Decide every proposed change (approve or reject) before approving the request.")
        if decisions and "approved" not in decisions:
            raise ActionError("Every proposed change was rejected: deny the request instead of approving it.")
        if any(c.decision == "approved" and c.field == "email" and not c.confirmed_at for c in dsr.corrections):
            raise ActionError(
                "The new email address has not confirmed the link we sent it yet; it is applied only once it has."
            )
    if dsr.request_type in STAFF_DECIDED:
        decision_text = (decision_text or "").strip()
        if not decision_text:
            raise ActionError(
                "Write what you decided and did (for example what processing is restricted, and until when); "
                "it is sent to the subject."
            )
        dsr.plan = {"decision": decision_text[:5000]}
    if dsr.request_type == RequestType.DELETION.value:
        if (confirm_reference or "").strip().upper() != dsr.reference:
            raise ActionError(
                f"Nothing was erased. To approve this deletion, type the reference {dsr.reference} to confirm "
                "you have read the plan."
            )
        if current_app.config.get("DELETION_REQUIRES_SECOND_APPROVER"):
            locked = lock_request(dsr.id)
            if locked.status not in (S.PENDING_REVIEW.value, S.ON_HOLD.value):
                raise TransitionError(locked.status, S.APPROVED.value)
            if locked.first_approved_by_id is None:
                locked.first_approved_by_id = actor.id
                locked.first_approved_at = utcnow()
                record_event("request.first_approval", actor, dsr=locked, data={"needs": "second officer"})
                if plan is not None:
                    locked.plan = plan if isinstance(plan, dict) else {"items": plan}
                return locked
            if locked.first_approved_by_id == actor.id:
                raise ActionError("You approved this deletion already: a second officer must approve it.")
    data = {"plan_items": len(plan)} if isinstance(plan, list) else {}
    if dsr.first_approved_by_id:
        data["first_approved_by"] = dsr.first_approved_by_id
    locked = transition(dsr, S.APPROVED, actor, data=data or None)
    locked.demo = False  # a staff member chose to fulfil it
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
        reason_code=reason.value,
        reason_label=DENIAL_LABELS[reason],
        reason_explained=DENIAL_EXPLANATIONS[reason],
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


def hold(dsr: DsrRequest, actor: Actor, reason: str = "") -> DsrRequest:
    """An internal hold (legal advice, a question between staff). It never stops the clock: the request
    still goes overdue on its date, and shows so everywhere."""
    locked = transition(dsr, S.ON_HOLD, actor, reason_code="internal")
    locked.hold_pauses_clock = False
    locked.hold_reason = reason.strip()[:500] or None
    return locked


def resume(dsr: DsrRequest, actor: Actor) -> DsrRequest:
    return transition(dsr, S.PENDING_REVIEW, actor, reason_code="resumed")


def retry(dsr: DsrRequest, actor: Actor) -> DsrRequest:
    if dsr.status != S.FAILED.value:
        raise ActionError("Only a failed request can be retried.")
    locked = transition(dsr, S.APPROVED, actor, reason_code="retry")
    locked.demo = False
    return locked


def staff_cancel(dsr: DsrRequest, actor: Actor, reason: str = "") -> DsrRequest:
    """Staff close a request without carrying it out; the subject is told why."""
    reason = (reason or "").strip()
    if not reason:
        raise ActionError("Give the reason for cancelling; it is sent to the subject.")
    locked = transition(dsr, S.CANCELLED, actor, reason_code="staff")
    locked.cancel_reason = reason[:1000]
    notify_subject(
        locked, "admin_cancelled", f"Your privacy request {locked.reference} was closed", reason=locked.cancel_reason
    )
    return locked


def request_info(dsr: DsrRequest, actor: Actor, message: str, *, identity: bool = False) -> DsrRequest:
    """Ask the subject a question: the request waits on hold for their answer, which they give on their
    status page or by replying. Only a GDPR request waiting for information needed to identify the
    subject stops the clock, and the notice says so and when it starts again; a CCPA clock never stops."""
    message = (message or "").strip()
    if not message:
        raise ActionError("Write the question for the subject.")
    pauses = identity and deadlines.may_pause(dsr.jurisdiction)
    if dsr.status == S.ON_HOLD.value:
        locked = lock_request(dsr.id)
        if pauses and not locked.hold_pauses_clock:
            locked.hold_started_at = utcnow()
    else:
        locked = transition(dsr, S.ON_HOLD, actor, reason_code="identity" if identity else "question")
    locked.hold_pauses_clock = bool(pauses or locked.hold_pauses_clock)
    locked.hold_reason = "Waiting for the subject's answer"
    locked.waiting_since = utcnow()
    locked.subject_reminded_at = None
    question = RequestMessage(
        request_id=locked.id,
        direction="out",
        via="staff",
        kind="identity" if identity else "question",
        author_id=actor.id if actor.kind == "staff" else None,
        body=message[:5000],
    )
    db.session.add(question)
    db.session.flush()
    record_event(
        "request.info_requested",
        actor,
        dsr=locked,
        public=True,
        message="We asked you for more information.",
        data={"message_id": question.id, "identity": bool(identity), "clock_paused": bool(pauses)},
    )
    notify_subject(
        locked,
        "admin_info_requested",
        f"We need more information: {locked.reference}",
        message=message,
        clock_paused=bool(pauses),
        identity=bool(identity),
    )
    return locked


def message_subject(dsr: DsrRequest, actor: Actor, message: str) -> RequestMessage:
    """A message to the subject in the request's thread, without putting the request on hold."""
    message = (message or "").strip()
    if not message:
        raise ActionError("Write the message.")
    locked = lock_request(dsr.id)
    if locked.status in {s.value for s in CLOSED} or locked.status == S.UNVERIFIED.value:
        raise ActionError("Messages go to open, verified requests only.")
    sent = RequestMessage(
        request_id=locked.id,
        direction="out",
        via="staff",
        kind="message",
        author_id=actor.id if actor.kind == "staff" else None,
        body=message[:5000],
    )
    db.session.add(sent)
    db.session.flush()
    record_event(
        "request.message_sent",
        actor,
        dsr=locked,
        public=True,
        message="We sent you a message.",
        data={"message_id": sent.id},
    )
    notify_subject(locked, "admin_message", f"A message about your privacy request {locked.reference}", message=message)
    return sent


def decide_correction(dsr: DsrRequest, actor: Actor, item_id: int, decision: str, reason: str = "") -> CorrectionItem:
    """Approve or reject one proposed field change, while the request is still under review. A
    rejection needs its reason (sent to the subject); approving a new email address sends it a link to
    confirm it belongs to the subject before anything is changed."""
    if decision not in ("approved", "rejected"):
        raise ActionError("Choose approve or reject for the field.")
    locked = lock_request(dsr.id)
    if locked.status not in (S.PENDING_REVIEW.value, S.ON_HOLD.value):
        raise ActionError("Proposed changes can only be decided while the request is under review.")
    item = db.session.get(CorrectionItem, item_id) if 0 < item_id < 2**31 else None
    if item is None or item.request_id != locked.id:
        raise ActionError("That proposed change does not belong to this request.")
    reason = (reason or "").strip()
    if decision == "rejected" and not reason:
        raise ActionError("Give the reason for rejecting this change; it is sent to the subject.")
    item.decision = decision
    item.reject_reason = reason[:1000] if decision == "rejected" else None
    item.decided_by_id = actor.id if actor.kind == "staff" else None
    item.decided_at = utcnow()
    record_event(
        "request.correction_decided",
        actor,
        dsr=locked,
        data={"item_id": item.id, "field": item.field, "decision": decision},
    )
    if decision == "approved" and item.field == "email" and not item.confirmed_at and item.proposed_value:
        from app.mail import queue_mail

        hours = current_app.config["VERIFY_TOKEN_HOURS"]
        raw = issue_token(locked, "email_change", lifetime=timedelta(hours=hours), max_uses=1, correction_id=item.id)
        queue_mail(
            item.proposed_value,
            "email_change_confirm",
            "Confirm your new email address",
            dsr=locked,
            link=f"{current_app.config['PORTAL_BASE_URL']}/confirm/{raw}",
            hours=hours,
            verified=False,
        )
    return item


def confirm_email_change(token: Token) -> CorrectionItem:
    """The new address opened its link: the correction may now be applied."""
    item = db.session.get(CorrectionItem, token.correction_id) if token.correction_id else None
    if item is None:
        raise TokenProblem("invalid")
    item.confirmed_at = utcnow()
    record_event(
        "request.email_change_confirmed",
        Actor.subject(),
        dsr=token.dsr,
        public=True,
        message="Your new email address was confirmed.",
        data={"item_id": item.id},
    )
    return item


def expire_unverified(now: datetime | None = None) -> int:
    """Close requests whose email was not confirmed within ``UNVERIFIED_EXPIRY_DAYS``; the caller commits.

    Returns how many were expired. Safe to run repeatedly (cron): an expired request no longer matches.
    """
    from sqlalchemy import exists

    now = now or utcnow()
    cutoff = now - timedelta(days=current_app.config["UNVERIFIED_EXPIRY_DAYS"])
    # Counted from the newest confirmation link, not from receipt: a request staff enter with its real
    # (older) receipt date gets its full week to be confirmed.
    fresh_link = exists().where(Token.request_id == DsrRequest.id, Token.purpose == "verify", Token.created_at > cutoff)
    ids = db.session.execute(
        select(DsrRequest.id).where(
            DsrRequest.status == S.UNVERIFIED.value, DsrRequest.received_at <= cutoff, ~fresh_link
        )
    ).scalars()
    count = 0
    for request_id in list(ids):
        dsr = lock_request(request_id)
        if dsr.status != S.UNVERIFIED.value:
            continue
        transition(dsr, S.EXPIRED, Actor.system("expiry"), reason_code="not_confirmed")
        count += 1
    return count
