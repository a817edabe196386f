"""What the public portal does, as services: intake, verification, the status page and the subject's
cancellation and answers, confirming an added address or a new email. Downloads: ``app.dsr.downloads``.

Views parse the input, call one of these, and render. Each function leaves the commit to its caller. A
link that does not work raises ``services.TokenProblem`` (the view answers 404 for ``invalid``, 410
otherwise); ``SpentLink`` when it was found but could not be used (always 410).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update

from app.audit import Actor, record_event
from app.audit.models import AuditEvent
from app.dsr import services
from app.dsr.attachments import save_attachment
from app.dsr.downloads import PackageLink, package_links
from app.dsr.models import CorrectionItem, DsrRequest, RequestIdentifier, RequestMessage, Token
from app.dsr.states import CLOSED, OPEN, STATUS_LABELS, SUBJECT_CANCELLABLE, RequestStatus
from app.extensions import db
from app.hashing import email_hash
from app.mail import queue_mail
from app.models_base import rows_changed, utcnow

S = RequestStatus
TYPE_LABELS = {
    "access": "Access (a copy of your data)",
    "correction": "Correction",
    "deletion": "Deletion",
    "restriction": "Restriction of processing",
    "objection": "Objection to processing",
    "opt_out": "Opt-out (analytics, sale or sharing)",
}
JURISDICTION_LABELS = {"gdpr": "GDPR", "ccpa": "CCPA", "other": "Other"}


class PortalError(Exception):
    """Something the subject should be told (the message is for them)."""


class SpentLink(services.TokenProblem):
    """A link that was found but could not be used once opened: gone (410), never "no such link"."""


# A file a mail brought, already stored (``app.mailbox``): ``{"name", "type", "size", "key"}``, as JSON.
StoredFile = Mapping[str, Any]


def _address(dsr: DsrRequest) -> str:
    """An open request's address (only a closed request, once minimised, has none)."""
    if not dsr.email:
        raise ValueError(f"Request {dsr.reference} has no email address to write to.")
    return dsr.email


def send_verification(dsr: DsrRequest) -> None:
    """A fresh single-use confirmation link; the mail carries nothing the requester typed."""
    hours = current_app.config["VERIFY_TOKEN_HOURS"]
    raw = services.issue_token(dsr, "verify", lifetime=timedelta(hours=hours), max_uses=1)
    queue_mail(
        _address(dsr),
        "verify",
        "Confirm your privacy request",
        dsr=dsr,
        verified=False,
        link=f"{current_app.config['PORTAL_BASE_URL']}/verify/{raw}",
        hours=hours,
        type_label=TYPE_LABELS[dsr.request_type],
    )


def submit(
    *,
    request_type: str,
    email: str,
    full_name: str,
    jurisdiction: str,
    details: str,
    corrections: list[tuple[str, str]],
    channel: str = "web",
    requester: str = "self",
    agent: tuple[str, str] | None = None,
    permission: tuple[str, str, bytes] | None = None,
    gpc: bool = False,
) -> DsrRequest:
    """A request from the portal. The same request twice (a reload, a double click, the same form sent
    again) makes one: an open request of the same type for the address takes it, and a confirmed one
    is mailed its status link again, so the page the sender sees is the same whatever we hold."""
    digest = email_hash(email)
    existing = db.session.execute(
        select(DsrRequest)
        .where(
            DsrRequest.email_hash == digest,
            DsrRequest.request_type == request_type,
            DsrRequest.status.in_([s.value for s in OPEN]),
        )
        .order_by(DsrRequest.received_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if existing is not None and existing.status != S.UNVERIFIED.value:
        # Confirmed by the address's owner: the new one joins it, and the owner is mailed its link.
        record_event("request.duplicate_submitted", Actor.subject(), dsr=existing, data={"channel": channel})
        raw = services.issue_token(existing, "status", lifetime=services.status_link_lifetime())
        queue_mail(
            _address(existing),
            "duplicate_notice",
            f"You already have an open request: {existing.reference}",
            dsr=existing,
            link=services.status_url(existing, raw),
            type_label=TYPE_LABELS[existing.request_type],
        )
        return existing
    if existing is not None and _same_submission(existing, full_name, jurisdiction, details, corrections):
        # The same form again within moments (a double click, a resent POST) sends nothing more. Anything
        # else is a request of its own: an unconfirmed one may have been written by anybody, so it never
        # absorbs what the address's owner sends later.
        last = db.session.execute(
            select(func.max(Token.created_at)).where(Token.request_id == existing.id, Token.purpose == "verify")
        ).scalar()
        window = timedelta(seconds=int(current_app.config.get("DUPLICATE_SUBMIT_SECONDS") or 5))
        if last is not None and utcnow() - last <= window:
            record_event("request.duplicate_submitted", Actor.subject(), dsr=existing, data={"channel": channel})
            return existing
    if requester == "agent":
        channel = "agent"
    dsr = DsrRequest(
        request_type=request_type,
        status=S.UNVERIFIED.value,
        email=email,
        email_hash=digest,
        full_name=full_name,
        jurisdiction=jurisdiction,
        details=details or "",
        channel=channel,
    )
    if requester == "guardian":
        # Never verified by the child's address alone: the guardian confirms their own address, and
        # staff verify the guardian and add the child's identifiers with their reasons.
        dsr.verification_method = "Guardian's report: staff must verify the guardian before acting"
    for field, value in corrections:
        dsr.corrections.append(CorrectionItem(field=field, proposed_value=value))
    db.session.add(dsr)
    db.session.flush()
    if requester == "agent" and agent is not None:
        note = RequestMessage(
            request_id=dsr.id,
            direction="in",
            via="web",
            kind="agent_permission",
            body=f"Submitted by an authorised agent: {agent[0]} <{agent[1]}>. The consumer confirms by their "
            "own link; check the signed permission before approving.",
        )
        if permission is not None:
            name, content_type, data = permission
            note.attachment_key = save_attachment(data, content_type)
            note.attachment_name, note.attachment_type, note.attachment_size = name[:200], content_type[:100], len(data)
        db.session.add(note)
    send_verification(dsr)
    record_event(
        "request.submitted",
        Actor.subject(),
        dsr=dsr,
        public=True,
        message="We received your request and sent a confirmation link to your email address.",
        data={
            "type": dsr.request_type,
            "jurisdiction": dsr.jurisdiction,
            "corrections": len(dsr.corrections),
            "requester": requester,
            "gpc": bool(gpc),
        },
    )
    return dsr


def _same_submission(
    dsr: DsrRequest, full_name: str, jurisdiction: str, details: str, corrections: list[tuple[str, str]]
) -> bool:
    return (
        dsr.full_name == full_name
        and dsr.jurisdiction == jurisdiction
        and (dsr.details or "") == (details or "")
        and [(c.field, c.proposed_value) for c in dsr.corrections] == list(corrections)
    )


@dataclass
class Verified:
    dsr: DsrRequest
    status_token: str


def verification(raw: str, *, lock: bool = False) -> Token:
    """The token of a confirmation link whose request still waits for it; ``services.TokenProblem``
    otherwise (``closed``: the request was confirmed, cancelled or expired already)."""
    token = services.find_token(raw, "verify", lock=lock)
    if token.dsr.status != S.UNVERIFIED.value:
        raise services.TokenProblem("closed", token)
    return token


def verify(raw: str) -> Verified:
    """The subject confirmed by the link: the request enters review (linked to an open duplicate), and
    a receipt with a status link is emailed. Raises ``services.TokenProblem`` for a link that no longer
    works, ``SpentLink`` when another confirmation used it first."""
    token = verification(raw, lock=True)
    _use_once(token)
    dsr = services.transition(token.dsr, S.PENDING_REVIEW, Actor.subject())
    duplicate = services.find_open_duplicate(dsr)
    if duplicate is not None:
        dsr.duplicate_of_id = duplicate.id
        record_event(
            "request.duplicate_linked",
            Actor.system("duplicate check"),
            dsr=dsr,
            data={"duplicate_of": duplicate.reference, "duplicate_of_id": duplicate.id},
        )
    return Verified(dsr, receipt(dsr))


def receipt(dsr: DsrRequest) -> str:
    """Email the receipt of a verified request with its status link; returns the link's token."""
    raw_status = services.issue_token(dsr, "status", lifetime=services.status_link_lifetime())
    queue_mail(
        _address(dsr),
        "receipt",
        f"We received your privacy request {dsr.reference}",
        dsr=dsr,
        link=services.status_url(dsr, raw_status),
        link_days=current_app.config["STATUS_LINK_DAYS"],
        type_label=TYPE_LABELS[dsr.request_type],
        law_label=JURISDICTION_LABELS.get(dsr.jurisdiction, dsr.jurisdiction),
    )
    return raw_status


def cancel(dsr: DsrRequest) -> DsrRequest | None:
    """The subject cancels from the status page; None when it is too late (staff acted already)."""
    if dsr.status not in {s.value for s in SUBJECT_CANCELLABLE}:
        return None
    try:
        cancelled = services.transition(dsr, S.CANCELLED, Actor.subject(), reason_code="subject")
    except services.TransitionError:  # staff acted between our read and the row lock
        return None
    raw = services.issue_token(cancelled, "status", lifetime=services.status_link_lifetime())
    queue_mail(
        _address(cancelled),
        "cancelled",
        f"Your privacy request {cancelled.reference} was cancelled",
        dsr=cancelled,
        link=services.status_url(cancelled, raw),
        type_label=TYPE_LABELS[cancelled.request_type],
    )
    return cancelled


def answer(
    dsr: DsrRequest,
    body: str,
    *,
    via: str = "web",
    attachment: tuple[str, str, bytes] | None = None,
    files: Sequence[StoredFile] | None = None,
) -> RequestMessage:
    """The subject answers in the request's thread (status page or email). A request on hold waiting for
    them goes back to review (a lawful GDPR pause ends: the clock runs again). ``files``: attachments
    already stored (a mail's), one message each after the first. Raises ``PortalError`` (for the
    subject) and ``AttachmentRefused``."""
    body = (body or "").strip()
    stored = list(files or [])
    if not body and attachment is None and not stored:
        raise PortalError("Write your answer, or attach a file.")
    if dsr.status in {s.value for s in CLOSED}:
        raise PortalError("This request is closed. Make a new request, or write to us.")
    message = RequestMessage(request_id=dsr.id, direction="in", via=via, kind="answer", body=body[:10000])
    if attachment is not None:
        name, content_type, data = attachment
        key = save_attachment(data, content_type)
        stored.insert(0, {"name": name, "type": content_type, "size": len(data), "key": key})
    messages = [message]
    for i, f in enumerate(stored):
        target = message if i == 0 else RequestMessage(request_id=dsr.id, direction="in", via=via, kind="answer")
        target.attachment_key = str(f["key"])
        target.attachment_name = str(f["name"])[:200]
        target.attachment_type = str(f["type"])[:100]
        target.attachment_size = int(f["size"])
        if target is not message:
            messages.append(target)
    db.session.add_all(messages)
    db.session.flush()
    record_event(
        "request.subject_answered",
        Actor.subject(),
        dsr=dsr,
        public=True,
        message="You sent us a message.",
        data={"message_id": message.id, "via": via, "files": len(stored)},
    )
    if dsr.status == S.ON_HOLD.value and dsr.waiting_since is not None:
        services.transition(dsr, S.PENDING_REVIEW, Actor.subject(), reason_code="answered")
    return message


def confirm(purpose: str, raw: str) -> None:
    """A single-use emailed link confirmed (``identifier``: an added address is the subject's;
    ``email_change``: the new address of an email correction is theirs)."""
    token = services.find_token(raw, purpose, lock=True)
    try:
        if purpose == "identifier":
            confirm_identifier(token)
        else:
            confirm_email_change(token)
    except services.TokenProblem as problem:
        raise SpentLink(problem.kind, token) from problem


def confirm_identifier(token: Token) -> RequestIdentifier:
    ident = db.session.get(RequestIdentifier, token.identifier_id) if token.identifier_id else None
    if ident is None:
        raise services.TokenProblem("invalid")
    _use_once(token)
    ident.status = "verified"
    ident.verified_at = utcnow()
    record_event(
        "request.identifier_verified",
        Actor.subject(),
        dsr=token.dsr,
        data={"identifier_id": ident.id, "kind": ident.kind, "method": "link"},
    )
    return ident


def confirm_email_change(token: Token) -> CorrectionItem:
    _use_once(token)
    return services.confirm_email_change(token)


def _use_once(token: Token) -> None:
    """Spend a single-use link, in the statement that checks it (no double use under a race)."""
    used = db.session.execute(
        update(Token)
        .where(Token.id == token.id, Token.used_at.is_(None))
        .values(use_count=Token.use_count + 1, used_at=utcnow())
    )
    if rows_changed(used) != 1:
        raise services.TokenProblem("used")


# --- the status page ----------------------------------------------------------------------------------


def status_request(reference: str, raw: str) -> DsrRequest:
    """The request behind a status link; ``services.TokenProblem`` (the view answers 404, whichever part
    was wrong) when the link does not work or names another reference."""
    if not raw or len(reference) > 32:
        raise services.TokenProblem("invalid")
    token = services.find_token(raw, "status")
    if token.dsr is None or token.dsr.reference != reference:
        raise services.TokenProblem("invalid", token)
    return token.dsr


@dataclass(frozen=True)
class StatusPage:
    """What the subject's status page shows of a request (the template's names)."""

    dsr: DsrRequest
    events: list[AuditEvent]  # the public audit events, oldest first
    downloads: list[PackageLink]
    thread: list[RequestMessage]
    status_label: str
    type_label: str
    law: str
    cancellable: bool
    can_reply: bool
    outcome: str | None

    def context(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def status_page(dsr: DsrRequest) -> StatusPage:
    events = (
        db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.request_id == dsr.id, AuditEvent.public.is_(True))
            .order_by(AuditEvent.id)
        )
        .scalars()
        .all()
    )
    # An automatic answer (out of office, a bounce) that reached the privacy mailbox is for staff only.
    thread = [m for m in dsr.messages if (m.body or m.attachment_name) and m.kind != "auto_reply"]
    return StatusPage(
        dsr=dsr,
        events=list(events),
        downloads=package_links(dsr),
        thread=thread,
        status_label=STATUS_LABELS[S(dsr.status)],
        type_label=TYPE_LABELS.get(dsr.request_type, dsr.request_type),
        law=JURISDICTION_LABELS.get(dsr.jurisdiction, dsr.jurisdiction),
        cancellable=dsr.status in {s.value for s in SUBJECT_CANCELLABLE},
        can_reply=dsr.status not in ("completed", "denied", "cancelled", "expired"),
        outcome=outcome(dsr),
    )


def outcome(dsr: DsrRequest) -> str | None:
    """The ``data-outcome`` of a closed request (INTERFACE.md)."""
    if dsr.status == S.COMPLETED.value:
        return dsr.outcome or "completed"
    if dsr.status in (S.DENIED.value, S.CANCELLED.value, S.EXPIRED.value):
        return dsr.status
    return None
