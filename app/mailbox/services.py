"""Reading the privacy mailbox into the portal, once per message, and what staff do with an intake item.

``read_mailbox`` (the cron job ``workers.mailbox.read_mailbox_job``) lists the folder's UIDs, skips
those recorded already, and for each new message inserts its ``InboundMail`` row first: the unique
``(mailbox, uid_validity, uid)`` and ``message_id_hash`` make that insert the claim, so of two jobs
reading at once (or a job re-run after one was killed) only one records and acts on a message; the
other's insert fails and it moves on. The row, the thread message, the state change and the audit
events commit together. After the commit the message is deleted from the server (unless
``MAIL_IMAP_KEEP``), so the portal's copy is the only one, and minimisation and erasure reach it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.audit import Actor, record_event
from app.dsr.attachments import attachment_problem, delete_attachment, save_attachment, sniff_type
from app.dsr.models import DsrRequest, RequestMessage
from app.dsr.services import ActionError
from app.dsr.states import CLOSED
from app.extensions import db
from app.hashing import email_hash
from app.mailbox.imap import Fetched, Mailbox, MailboxError, parse_imap_url
from app.mailbox.models import InboundMail
from app.mailbox.parse import ParsedMail, parse_mail, without_quote
from app.mailbox.replies import match_request
from app.models_base import utcnow
from app.redact import redact_tokens

SYSTEM = Actor.system("mailbox")
BATCH = 100
DISMISS_REASONS = {
    "spam": "Spam or advertising",
    "not_a_request": "Not a privacy request",
    "duplicate": "Already handled",
    "auto_reply": "Automatic reply or bounce",
}
TEXT_LIMIT = 100_000


def _received(parsed: ParsedMail, fetched: Fetched, now: datetime) -> datetime:
    """When the mail reached us: the server's receipt time (INTERNALDATE), or the mail's own Date when it
    is earlier by less than a day (the time it was sent); never later than now. A Date further back is a
    wrong clock or a forgery and would shorten nobody's deadline but ours, so it is not believed."""
    arrived = min(fetched.internal_date or now, now)
    if parsed.date is not None and arrived - timedelta(days=1) <= parsed.date < arrived:
        return parsed.date
    return arrived


def _files(parsed: ParsedMail) -> tuple[list[dict], list[dict]]:
    kept, refused = [], []
    for part in parsed.attachments:
        kind = sniff_type(part.data)
        problem = attachment_problem(len(part.data), kind)
        info = {"name": part.name, "type": kind, "size": len(part.data)}
        if problem:
            refused.append({**info, "declared": part.declared_type[:100], "reason": problem})
        else:
            kept.append({**info, "key": save_attachment(part.data, kind)})
    return kept, refused


def record_message(mailbox: str, uid_validity: int, fetched: Fetched) -> InboundMail | None:
    """Record and act on one message; the caller commits. None when it was recorded already."""
    now = utcnow()
    raw = fetched.raw if fetched.raw is not None else fetched.header
    parsed = parse_mail(raw)  # lenient (email.policy.default): a malformed part is read as far as it goes
    seen = db.session.execute(
        select(InboundMail.id).where(
            (InboundMail.message_id_hash == parsed.message_id_hash)
            | (
                (InboundMail.mailbox == mailbox)
                & (InboundMail.uid_validity == uid_validity)
                & (InboundMail.uid == fetched.uid)
            )
        )
    ).first()
    if seen is not None:
        return None
    item = InboundMail(
        mailbox=mailbox,
        uid_validity=uid_validity,
        uid=fetched.uid,
        message_id_hash=parsed.message_id_hash,
        message_id=(parsed.message_id or "")[:255] or None,
        from_addr=parsed.from_addr,
        from_hash=email_hash(parsed.from_addr) if parsed.from_addr else None,
        from_name=parsed.from_name or None,
        subject=parsed.subject or None,
        html_only=parsed.html_only,
        auto_submitted=parsed.auto_submitted,
        too_large=fetched.raw is None,
        size=fetched.size,
        received_at=_received(parsed, fetched, now),
        fetched_at=now,
        status="new",
    )
    db.session.add(item)
    db.session.flush()  # the claim: a second reader of this message fails here (unique keys)
    saved: list[str] = []
    try:
        return _act(item, parsed, fetched, saved)
    except BaseException:
        for key in saved:  # nothing of this attempt is committed: its files go too
            delete_attachment(key)
        raise


def _act(item: InboundMail, parsed: ParsedMail, fetched: Fetched, saved: list[str]) -> InboundMail:
    text = redact_tokens(parsed.text) or ""  # a quoted status link is no working token in our copy
    if item.too_large:
        limit = int(current_app.config["MAIL_IMAP_MAX_BYTES"])
        item.refused = [{"name": "(the whole message)", "size": fetched.size, "reason": f"over {limit} bytes"}]
        kept: list[dict] = []
    else:
        kept, refused = _files(parsed)
        saved.extend(f["key"] for f in kept)
        item.refused = refused or None
    dsr, how = match_request(parsed.recipients, parsed.in_reply_to, parsed.references)
    if dsr is not None and dsr.status not in {s.value for s in CLOSED} and not item.too_large:
        assert how is not None  # match_request names how it matched whenever it found a request
        _thread(item, dsr, how, without_quote(text), kept)
        return item
    if dsr is not None:
        item.related_request_id = dsr.id  # a reply to a closed request: staff decide
    item.body_text = text[:TEXT_LIMIT]
    item.attachments = kept or None
    record_event(
        "mailbox.intake_item",
        SYSTEM,
        data={"inbound_mail_id": item.id, "files": len(kept), "refused": len(item.refused or [])},
    )
    return item


def _thread(item: InboundMail, dsr: DsrRequest, how: str, text: str, kept: list[dict]) -> None:
    from app.dsr import portal

    item.status = "threaded"
    item.matched_by = how
    item.request_id = dsr.id
    if item.auto_submitted:
        # An out-of-office answer or a bounce is shown to staff; it is not the subject's answer.
        note = RequestMessage(request_id=dsr.id, direction="in", via="email", kind="auto_reply", body=text[:10000])
        db.session.add(note)
        db.session.flush()
        for f in kept:
            delete_attachment(f["key"])
    else:
        body = text or ("(no text)" if not kept else "")
        portal.answer(dsr, body, via="email", files=kept)
    record_event(
        "mailbox.reply_threaded",
        SYSTEM,
        dsr=dsr,
        data={
            "inbound_mail_id": item.id,
            "matched_by": how,
            "automatic": item.auto_submitted,
            "refused": len(item.refused or []),
        },
    )


def read_mailbox() -> dict[str, Any]:
    """Read new mail from ``MAIL_IMAP_URL``: returns counts. Raises ``MailboxError`` when unreachable."""
    cfg = current_app.config
    if not cfg.get("MAIL_IMAP_URL"):
        return {"configured": False}
    url = parse_imap_url(cfg["MAIL_IMAP_URL"])
    keep = bool(cfg.get("MAIL_IMAP_KEEP"))
    limit = int(cfg["MAIL_IMAP_MAX_BYTES"])
    summary = {"configured": True, "new": 0, "threaded": 0, "intake": 0, "skipped": 0, "deleted": 0}
    with Mailbox(url, timeout=float(cfg.get("MAIL_IMAP_TIMEOUT") or 30), readonly=keep) as box:
        name, validity = url.name, box.uid_validity
        uids = box.uids()
        known = set()
        for start in range(0, len(uids), 500):
            chunk = uids[start : start + 500]
            known |= set(
                db.session.execute(
                    select(InboundMail.uid).where(
                        InboundMail.mailbox == name,
                        InboundMail.uid_validity == validity,
                        InboundMail.uid.in_(chunk),
                    )
                ).scalars()
            )
        done = [u for u in uids if u in known]
        kept_on_server = set(
            db.session.execute(
                select(InboundMail.uid).where(
                    InboundMail.mailbox == name, InboundMail.uid_validity == validity, InboundMail.too_large.is_(True)
                )
            ).scalars()
        )
        db.session.rollback()
        for uid in [u for u in uids if u not in known][:BATCH]:
            fetched = box.fetch(uid, limit)
            if fetched is None:
                continue
            try:
                item = record_message(name, validity, fetched)
                db.session.commit()
            except IntegrityError:  # another reader recorded it first
                db.session.rollback()
                summary["skipped"] += 1
                continue
            if item is None:  # the same message (by Message-ID) was recorded from another UID
                summary["skipped"] += 1
                done.append(uid)
                continue
            summary["new"] += 1
            summary["threaded" if item.status == "threaded" else "intake"] += 1
            if not item.too_large:
                done.append(uid)
        if not keep:
            # The portal holds the message now: the server's copy goes, so erasure reaches every copy.
            # A message too large to read stays for a person to open in the mailbox.
            to_delete = [u for u in done if u not in kept_on_server]
            box.delete(to_delete)
            summary["deleted"] = len(to_delete)
    return summary


# --- staff: intake items ------------------------------------------------------------------------


def get_item(item_id: int) -> InboundMail | None:
    return db.session.get(InboundMail, item_id) if 0 < item_id < 2**31 else None


def lock_item(item_id: int) -> InboundMail:
    stmt = select(InboundMail).where(InboundMail.id == item_id).with_for_update()
    item = db.session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()
    if item is None:
        raise ActionError("That mail is not in the mailbox.")
    return item


def dismiss(item_id: int, actor: Actor, reason: str) -> InboundMail:
    if reason not in DISMISS_REASONS:
        raise ActionError("Choose why the mail is dismissed.")
    item = lock_item(item_id)
    if item.status != "new":
        raise ActionError("This mail was handled already.")
    item.status = "dismissed"
    item.dismiss_reason = reason
    item.handled_by_id = actor.id
    item.handled_at = utcnow()
    record_event("mailbox.item_dismissed", actor, data={"inbound_mail_id": item.id, "reason": reason})
    return item


def attach_to_request(item_id: int, dsr: DsrRequest, actor: Actor) -> InboundMail:
    """Staff made ``dsr`` of this intake item: the mail (text and files) opens its thread."""
    item = lock_item(item_id)
    if item.status != "new":
        raise ActionError("This mail was handled already.")
    files = list(item.attachments or [])
    first = RequestMessage(
        request_id=dsr.id, direction="in", via="email", kind="original_mail", body=(item.body_text or "")[:10000]
    )
    messages = [first]
    for i, f in enumerate(files):
        target = (
            first if i == 0 else RequestMessage(request_id=dsr.id, direction="in", via="email", kind="original_mail")
        )
        target.attachment_key, target.attachment_name = f["key"], f["name"][:200]
        target.attachment_type, target.attachment_size = f["type"][:100], f["size"]
        if target is not first:
            messages.append(target)
    db.session.add_all(messages)
    item.status = "converted"
    item.request_id = dsr.id
    item.handled_by_id = actor.id
    item.handled_at = utcnow()
    item.body_text = None  # the text and the files live on the request's thread now
    item.attachments = None
    db.session.flush()
    record_event("mailbox.item_converted", actor, dsr=dsr, data={"inbound_mail_id": item.id, "files": len(files)})
    return item


def minimise_item(item: InboundMail, now: datetime | None = None, *, closing_reason: str | None = None) -> None:
    """Keep the record that the message was processed (ids, dates, status); its contents go. With
    ``closing_reason`` an item nobody handled yet is closed too (its subject was erased: nothing is left
    to act on)."""
    if closing_reason and item.status == "new":
        item.status = "dismissed"
        item.dismiss_reason = closing_reason
        item.handled_at = now or utcnow()
    for f in item.attachments or []:
        delete_attachment(f.get("key"))
    item.attachments = None
    item.refused = None
    item.body_text = None
    item.subject = None
    item.from_name = None
    if item.from_addr and not item.from_hash:
        item.from_hash = email_hash(item.from_addr)
    item.from_addr = None
    item.message_id = None
    item.minimised_at = now or utcnow()


__all__ = ["MailboxError", "read_mailbox", "record_message", "dismiss", "attach_to_request", "minimise_item"]
