"""Minimisation: what a closed request keeps, and erasing the portal's own copies of a subject.

``CLOSED_REQUEST_GRACE_DAYS`` (30) after a request closes, its record keeps what record-keeping needs
(CCPA regs section 7101: reference, type, law, channel, dates, outcome, denial code, and the staff actions
in the audit trail) plus a keyed hash of the email (HMAC-SHA256 with ``EMAIL_HASH_KEY``, its own secret)
for duplicate and repeat detection; the name, the free text, correction values, identifiers, notes,
message bodies and mail bodies go, as do its export files and link tokens, and what the privacy
mailbox recorded of mail about it (sender, subject line, text, files: ``InboundMail``).
Mail that never became a request goes the same way: a dismissed intake item after the same grace
period, and every item from an erased subject's address at once.

A completed deletion does the same at once for the subject's other closed requests, revokes every
link of their requests, deletes their export files and cuts the bodies of their sent mail to metadata:
erasure means everything we hold, the portal's copies included.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Connection, Select, delete, event, false, or_, select, update
from sqlalchemy.orm import Mapper

from app.audit import Actor, record_event
from app.dsr.attachments import delete_attachment
from app.dsr.models import (
    CorrectionItem,
    DsrRequest,
    Export,
    RequestIdentifier,
    RequestMessage,
    RequestNote,
    Token,
)
from app.dsr.services import transition
from app.dsr.states import CLOSED, RequestStatus
from app.exports import store
from app.extensions import db
from app.hashing import email_hash, normalise
from app.mail.models import OutgoingMail
from app.mailbox.models import InboundMail
from app.mailbox.services import minimise_item
from app.models_base import rows_changed, utcnow
from app.portal.mailbox import normalise_mailbox

SYSTEM = Actor.system("minimisation")
BATCH = 500


@event.listens_for(DsrRequest, "before_insert")
@event.listens_for(DsrRequest, "before_update")
def _hash_email(_mapper: Mapper[DsrRequest], _connection: Connection, target: DsrRequest) -> None:
    """Every request carries the keyed hash of its address from the start (duplicate and repeat
    detection, resend and lookup work on it), so minimisation only has to drop the address."""
    if target.email and not target.email_hash:
        target.email_hash = email_hash(target.email)


def purge_exports(request_ids: list[int], now: datetime) -> int:
    n = 0
    for export in db.session.execute(
        select(Export).where(Export.request_id.in_(request_ids), Export.status != "purged")
    ).scalars():
        store.delete(export.filename)
        export.status = "purged"
        export.purged_at = now
        n += 1
    return n


def cut_mail(request_ids: list[int], now: datetime, *, keep_recipient: bool = False) -> int:
    """Sent (failed, bounced) mail of these requests keeps template, Message-ID, recipient hash and sent-at."""
    n = 0
    for mail in db.session.execute(
        select(OutgoingMail).where(
            OutgoingMail.request_id.in_(request_ids), OutgoingMail.status.in_(["sent", "failed", "bounced"])
        )
    ).scalars():
        if mail.to_addr:
            mail.to_hash = email_hash(mail.to_addr)
        if not keep_recipient:
            mail.to_addr = None
        if mail.body_text is not None or mail.body_html is not None:
            n += 1
        mail.body_text = None
        mail.body_html = None
        mail.last_error = None
        mail.minimised_at = now
    return n


def minimise_request(dsr: DsrRequest, now: datetime | None = None) -> None:
    """Reduce one request to its record (the caller commits)."""
    now = now or utcnow()
    ids = [dsr.id]
    purge_exports(ids, now)
    db.session.execute(delete(Token).where(Token.request_id == dsr.id))
    cut_mail(ids, now)
    db.session.execute(
        update(CorrectionItem)
        .where(CorrectionItem.request_id == dsr.id)
        .values(proposed_value=None, current_value=None, reject_reason=None)
    )
    db.session.execute(delete(RequestIdentifier).where(RequestIdentifier.request_id == dsr.id))
    db.session.execute(delete(RequestNote).where(RequestNote.request_id == dsr.id))
    for message in db.session.execute(select(RequestMessage).where(RequestMessage.request_id == dsr.id)).scalars():
        if message.attachment_key:
            delete_attachment(message.attachment_key)
        message.body = None
        message.attachment_name = message.attachment_key = None
    # The replies and the mail it was made from, and mail about it that staff handled (dismissed, made a
    # request of); a late reply still waiting as an intake item is its own until staff handle it.
    minimise_inbound(
        select(InboundMail).where(
            or_(
                InboundMail.request_id == dsr.id,
                (InboundMail.related_request_id == dsr.id) & (InboundMail.status != "new"),
            ),
            InboundMail.minimised_at.is_(None),
        ),
        now,
    )
    dsr.email_hash = dsr.email_hash or email_hash(dsr.email)
    dsr.email = None
    dsr.full_name = None
    dsr.details = None
    dsr.hold_reason = None
    dsr.cancel_reason = None
    dsr.denial_text = None
    dsr.verification_evidence = None
    dsr.verification_method = None
    dsr.extension_reason = None
    if isinstance(dsr.plan, dict) and "decision" in dsr.plan:
        dsr.plan = {"decision": None}  # the officer's own words about the subject go too
    dsr.last_error = None
    dsr.progress_note = None
    dsr.minimised_at = now
    db.session.expire(dsr, ["corrections", "identifiers", "notes", "messages"])
    record_event("request.minimised", SYSTEM, dsr=dsr)


def minimise_inbound(stmt: Select[InboundMail], now: datetime, closing_reason: str | None = None) -> int:
    """Minimise the privacy-mailbox records ``stmt`` selects (``app.mailbox.services.minimise_item``)."""
    n = 0
    for item in list(db.session.execute(stmt).scalars()):
        minimise_item(item, now, closing_reason=closing_reason)
        n += 1
    return n


def minimise_closed_requests(now: datetime | None = None) -> int:
    """Minimise every request closed more than ``CLOSED_REQUEST_GRACE_DAYS`` ago; commits in batches.
    Dismissed mailbox items older than that lose their contents too."""
    now = now or utcnow()
    cutoff = now - timedelta(days=int(current_app.config["CLOSED_REQUEST_GRACE_DAYS"]))
    minimise_inbound(
        select(InboundMail).where(
            InboundMail.status == "dismissed", InboundMail.handled_at < cutoff, InboundMail.minimised_at.is_(None)
        ),
        now,
    )
    db.session.commit()
    done = 0
    while True:
        batch = list(
            db.session.execute(
                select(DsrRequest)
                .where(
                    DsrRequest.status.in_([s.value for s in CLOSED]),
                    DsrRequest.closed_at < cutoff,
                    DsrRequest.minimised_at.is_(None),
                )
                .order_by(DsrRequest.id)
                .limit(BATCH)
            ).scalars()
        )
        if not batch:
            return done
        for dsr in batch:
            minimise_request(dsr, now)
        db.session.commit()
        done += len(batch)


def _read_before_mailbox_hashes(emails: set[str]) -> list[int]:
    """Mail still holding its sender that was read before ``mailbox_hash`` was kept (migration 0010): its
    address is compared spelling-free here."""
    mailboxes = {normalise_mailbox(e) for e in emails}
    rows = db.session.execute(
        select(InboundMail.id, InboundMail.from_addr).where(
            InboundMail.mailbox_hash.is_(None), InboundMail.from_addr.is_not(None), InboundMail.minimised_at.is_(None)
        )
    ).all()
    return [row_id for row_id, addr in rows if addr and normalise_mailbox(addr) in mailboxes]


def erase_portal_copies(dsr: DsrRequest, emails: set[str], now: datetime | None = None) -> dict[str, int]:
    """After ``dsr`` erased its subject: what the portal itself holds about them goes too. The deletion
    request keeps its own status link (the subject reads the outcome there) until it is minimised."""
    now = now or utcnow()
    emails = {normalise(e) for e in emails if e}
    hashes = {email_hash(e) for e in emails}
    if not emails:
        return {"requests": 0}
    others = list(
        db.session.execute(
            select(DsrRequest).where(
                DsrRequest.id != dsr.id,
                or_(DsrRequest.email.in_(sorted(emails)), DsrRequest.email_hash.in_(sorted(hashes))),
            )
        ).scalars()
    )
    other_ids = [o.id for o in others]
    exports = purge_exports(other_ids, now)
    tokens = rows_changed(db.session.execute(delete(Token).where(Token.request_id.in_(other_ids)))) if other_ids else 0
    mails = cut_mail(other_ids, now) if other_ids else 0
    mails += cut_mail([dsr.id], now, keep_recipient=True)
    # Mail the subject sent to the privacy mailbox: intake items from their addresses, and what was
    # recorded of replies to their other requests (the deletion request's own thread stays until minimised).
    inbound = minimise_inbound(
        select(InboundMail).where(
            InboundMail.minimised_at.is_(None),
            or_(
                InboundMail.from_hash.in_(sorted(h for h in hashes if h)),
                # the same mailbox under another spelling (sam+x@gmail.com, s.am@googlemail.com)
                InboundMail.mailbox_hash.in_(sorted({email_hash(normalise_mailbox(e)) for e in emails})),
                InboundMail.id.in_(_read_before_mailbox_hashes(emails)),
                InboundMail.request_id.in_(other_ids) if other_ids else false(),
                # mail that answers one of their requests from another address (a work address, a forward)
                InboundMail.related_request_id.in_([*other_ids, dsr.id]),
            ),
            or_(InboundMail.request_id.is_(None), InboundMail.request_id != dsr.id),
        ),
        now,
        closing_reason="subject_erased",
    )
    minimised = closed = 0
    for other in others:
        if other.status in (
            RequestStatus.PENDING_REVIEW.value,
            RequestStatus.ON_HOLD.value,
            RequestStatus.UNVERIFIED.value,
        ):
            # Nothing of the subject is left to act on: the request is closed, its copies go with the rest.
            transition(other, RequestStatus.CANCELLED, SYSTEM, reason_code="subject_erased")
            other.cancel_reason = f"Closed because the subject's data was erased ({dsr.reference})."
            closed += 1
        if other.status in {s.value for s in CLOSED} and other.minimised_at is None:
            minimise_request(other, now)
            minimised += 1
    summary = {
        "requests": len(others),
        "closed": closed,
        "exports": exports,
        "tokens": tokens,
        "mails": mails,
        "minimised": minimised,
        "inbound_mail": inbound,
    }
    record_event("request.portal_copies_erased", SYSTEM, dsr=dsr, data=summary)
    return summary
