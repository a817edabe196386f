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

import hashlib
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app.audit import Actor, record_event
from app.dsr.attachments import attachment_problem, delete_attachment, save_attachment, sniff_type
from app.dsr.models import DsrRequest, RequestMessage
from app.dsr.services import ActionError
from app.dsr.states import CLOSED
from app.extensions import db
from app.hashing import email_hash
from app.mailbox.imap import HEADER_BYTES, Fetched, Mailbox, MailboxError, parse_imap_url
from app.mailbox.models import InboundMail
from app.mailbox.parse import ParsedMail, authenticated, parse_mail, sender, without_quote
from app.mailbox.replies import match_request
from app.models_base import utcnow
from app.portal.mailbox import normalise_mailbox
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
# What one message on a request's thread shows; a longer mail is cut there with a note and its whole
# text attached as a file, so nothing the subject wrote is lost without a word.
THREAD_TEXT = 10_000
FULL_TEXT_NAME = "full-text.txt"


def _senders(addr: str | None) -> tuple[str | None, str | None]:
    """(keyed hash of the address, keyed hash of its mailbox however spelled)."""
    if not addr:
        return None, None
    return email_hash(addr), email_hash(normalise_mailbox(addr))


def _whole_text_file(text: str, saved: list[str]) -> dict | None:
    """The whole text of a long mail as a file to attach (None when even that is over the size limit)."""
    data = text.encode("utf-8")
    if attachment_problem(len(data), "text/plain"):
        return None
    key = save_attachment(data, "text/plain")
    saved.append(key)
    return {"name": FULL_TEXT_NAME, "type": "text/plain", "size": len(data), "key": key, "whole_text": True}


def _fit(text: str, saved: list[str], files: list[dict] | None = None) -> tuple[str, dict | None]:
    """``text`` as one thread message: unchanged when it fits, else cut with a note saying so and the
    whole text kept as a file (returned, to attach; or the one ``files`` already holds, made when the
    mail was read, which is then not made again)."""
    if len(text) <= THREAD_TEXT:
        return text, None
    if any(f.get("whole_text") for f in files or []):
        note = (
            f"\n\n[The mail is longer: it is cut here on the thread; the whole text is attached as {FULL_TEXT_NAME}.]"
        )
        return text[: THREAD_TEXT - len(note)] + note, None
    whole = _whole_text_file(text, saved)
    if whole is None:
        note = f"\n\n[The mail is {len(text):,} characters long: it was cut here, and is too large to attach whole.]"
    else:
        note = (
            f"\n\n[The mail is {len(text):,} characters long: it is cut here on the thread; the whole text is "
            f"attached as {FULL_TEXT_NAME}.]"
        )
    return text[: THREAD_TEXT - len(note)] + note, whole


def _received(parsed: ParsedMail, fetched: Fetched, now: datetime) -> datetime:
    """When the mail reached us: the server's receipt time (INTERNALDATE), or the mail's own Date when it
    is earlier by less than a day (the time it was sent); never later than now. A Date further back is a
    wrong clock or a forgery and would shorten nobody's deadline but ours, so it is not believed."""
    arrived = min(fetched.internal_date or now, now)
    if parsed.date is not None and arrived - timedelta(days=1) <= parsed.date < arrived:
        return parsed.date
    return arrived


MAIL_HEADERS = ("from", "to", "subject", "date", "message-id", "mime-version", "content-type", "received")


def _as_text(data: bytes) -> bytes:
    """A text file as kept: tokens redacted. A saved mail (``.eml``, a forward as a file) is flattened to
    its headers and decoded text first, since quoted-printable soft breaks or base64 would hide a status
    link's token from redaction; the files inside it are named, not kept."""
    text = data.decode("utf-8")
    head = message_from_bytes(data[:HEADER_BYTES], policy=policy.default)
    if sum(1 for key in {k.lower() for k in head.keys()} if key in MAIL_HEADERS) >= 2:
        inner = parse_mail(data)
        lines = [f"{name}: {_header_line(head, name)}" for name in ("From", "To", "Date", "Subject")]
        files = [f"[a file inside this mail, not kept: {p.name}]" for p in inner.attachments]
        text = "\n".join([*lines, "", inner.text, *([""] + files if files else [])])
    return redact_tokens(text).encode("utf-8")


def _header_line(msg: EmailMessage, name: str) -> str:
    try:
        return " ".join(str(msg.get(name) or "").split())[:500]
    except (ValueError, TypeError, IndexError, AttributeError, LookupError):
        return ""


def _files(parsed: ParsedMail) -> tuple[list[dict], list[dict]]:
    kept, refused = [], []
    for part in parsed.attachments:
        kind = sniff_type(part.data)
        data = part.data
        if kind == "text/plain":
            # A forwarded mail of ours, attached as text, quotes its status link: no working token is kept.
            data = _as_text(data)
        problem = attachment_problem(len(data), kind)
        info = {"name": part.name, "type": kind, "size": len(data)}
        if problem:
            refused.append({**info, "declared": part.declared_type[:100], "reason": problem})
        else:
            kept.append({**info, "key": save_attachment(data, kind)})
    return kept, refused


def _identity(parsed: ParsedMail) -> tuple[str, str]:
    """(content hash, dedupe key) of a message: a copy has both the same as its original."""
    return parsed.content_hash, hashlib.sha256(f"{parsed.message_id_hash}:{parsed.content_hash}".encode()).hexdigest()


def _original_of(parsed: ParsedMail, key: str) -> InboundMail | None:
    """The row that acted on this message when it was read before (by another UID or folder)."""
    stmt = select(InboundMail).where(
        (InboundMail.dedupe_key == key)
        # Rows from before content hashes were kept are known by their Message-ID alone.
        | ((InboundMail.dedupe_key == parsed.message_id_hash) & InboundMail.content_hash.is_(None))
    )
    return db.session.execute(stmt).scalars().first()


def record_message(mailbox: str, uid_validity: int, fetched: Fetched) -> InboundMail | None:
    """Record and act on one message; the caller commits. None when this UID was recorded already.

    Every message gets a row of its own, so nothing leaves the server unrecorded: a copy of a message
    read before is a ``duplicate`` row (never acted on twice); a different mail that reuses an earlier
    Message-ID is read as the new message it is."""
    now = utcnow()
    raw = fetched.raw if fetched.raw is not None else fetched.header
    seen = db.session.execute(
        select(InboundMail.id).where(
            InboundMail.mailbox == mailbox, InboundMail.uid_validity == uid_validity, InboundMail.uid == fetched.uid
        )
    ).first()
    if seen is not None:
        return None
    parsed = parse_mail(raw)  # lenient (email.policy.default): a malformed part is read as far as it goes
    digest, key = _identity(parsed)
    original = _original_of(parsed, key)
    item = InboundMail(
        mailbox=mailbox,
        uid_validity=uid_validity,
        uid=fetched.uid,
        message_id_hash=parsed.message_id_hash,
        content_hash=digest,
        message_id=(parsed.message_id or "")[:255] or None,
        size=fetched.size,
        received_at=_received(parsed, fetched, now),
        fetched_at=now,
        on_server=True,
    )
    if original is not None:
        # A copy (copied back, or the folder's UIDVALIDITY changed): its row records that it was read;
        # what it says lives on the original's row. An erased original's copies go from the server too.
        item.status, item.duplicate_of_id, item.message_id = "duplicate", original.id, None
        item.from_hash, item.mailbox_hash = _senders(parsed.from_addr)
        item.too_large = fetched.raw is None
        item.minimised_at = now if original.minimised_at is not None else None
        db.session.add(item)
        db.session.flush()
        return item
    item.dedupe_key = key
    item.from_addr = parsed.from_addr
    item.from_hash, item.mailbox_hash = _senders(parsed.from_addr)
    item.from_name = parsed.from_name or None
    item.subject = parsed.subject or None
    item.html_only = parsed.html_only
    item.auto_submitted = parsed.auto_submitted
    item.too_large = fetched.raw is None
    item.status = "new"
    db.session.add(item)
    db.session.flush()  # the claim: a second reader of this message fails here (unique keys)
    saved: list[str] = []
    try:
        return _act(item, parsed, fetched, saved)
    except BaseException:
        for saved_key in saved:  # nothing of this attempt is committed: its files go too
            delete_attachment(saved_key)
        raise


def record_unreadable(mailbox: str, uid_validity: int, fetched: Fetched, error: BaseException) -> InboundMail:
    """A message that failed in a way nobody foresaw (a parser's recursion limit, a full disk): it waits
    for staff as an intake item that says so, stays on the server for a person to open there, and the
    mail behind it is read on. The caller commits."""
    now = utcnow()
    raw = fetched.raw if fetched.raw is not None else fetched.header
    try:  # the sender, from the header alone, so that erasure of that sender reaches this mail too
        _, from_addr, _ = sender(message_from_bytes(fetched.header, policy=policy.default))
    except Exception:  # noqa: BLE001 - the header is as unreadable as the rest: no sender is known
        from_addr = None
    from_hash, mailbox_hash = _senders(from_addr)
    item = InboundMail(
        mailbox=mailbox,
        uid_validity=uid_validity,
        uid=fetched.uid,
        from_hash=from_hash,
        mailbox_hash=mailbox_hash,
        message_id_hash=hashlib.sha256(raw).hexdigest(),
        size=fetched.size,
        received_at=min(fetched.internal_date or now, now),
        fetched_at=now,
        status="new",
        unreadable=True,
        on_server=True,
        refused=[
            {
                "name": "(the whole message)",
                "size": fetched.size,
                "reason": f"could not be read in ({type(error).__name__})",
            }
        ],
    )
    db.session.add(item)
    db.session.flush()
    record_event("mailbox.unreadable", SYSTEM, data={"inbound_mail_id": item.id, "error": type(error).__name__})
    return item


def _subject_hashes(dsr: DsrRequest) -> set[str]:
    """The addresses a reply may come from and be the subject's: the request's own and any identifier
    email that confirmed its link or that staff recorded as the subject's."""
    from app.dsr.models import RequestIdentifier

    hashes = {dsr.email_hash or email_hash(dsr.email)}
    for value in db.session.execute(
        select(RequestIdentifier.value).where(
            RequestIdentifier.request_id == dsr.id,
            RequestIdentifier.kind == "email",
            RequestIdentifier.status == "verified",
        )
    ).scalars():
        hashes.add(email_hash(value))
    return {h for h in hashes if h}


def _act(item: InboundMail, parsed: ParsedMail, fetched: Fetched, saved: list[str]) -> InboundMail:
    text = redact_tokens(parsed.text) or ""  # a quoted status link is no working token in our copy
    refused: list[dict] = [{"name": "(parts of the message)", "size": 0, "reason": p} for p in parsed.problems]
    if item.too_large:
        limit = int(current_app.config["MAIL_IMAP_MAX_BYTES"])
        reason = f"its header is over {HEADER_BYTES} bytes" if fetched.header_too_large else f"over {limit} bytes"
        refused.append({"name": "(the whole message)", "size": fetched.size, "reason": reason})
        kept: list[dict] = []
    else:
        kept, refused_files = _files(parsed)
        saved.extend(f["key"] for f in kept)
        refused += refused_files
    item.refused = refused or None
    if parsed.bounce_of and _bounced(item, parsed, text, kept):
        return item
    dsr, how = match_request(parsed.recipients, parsed.in_reply_to, parsed.references)
    open_request = dsr is not None and dsr.status not in {s.value for s in CLOSED}
    from_subject = dsr is not None and item.from_hash in _subject_hashes(dsr)
    vouched = authenticated(parsed.auth_results, _authserv_id(), parsed.from_addr)
    if dsr is not None and open_request and not item.too_large and from_subject and not parsed.sender_problem:
        if vouched:
            assert how is not None  # match_request names how it matched whenever it found a request
            _thread(item, dsr, how, without_quote(text), kept, saved)
            return item
        refused.append(
            {
                "name": "(the sender)",
                "size": 0,
                "reason": "Our mail server could not confirm the sender's address (SPF, DKIM, DMARC): "
                "check it is the subject before adding it to the thread.",
            }
        )
        item.refused = refused
    if dsr is not None:
        # A reply to a closed request, one too large to read, or one that carries a request's reply address
        # or Message-ID but comes from an address that is not the subject's (a forwarded or leaked mail):
        # staff decide; it is never the subject's answer by itself.
        item.related_request_id = dsr.id
        item.matched_by = how
    if len(text) > TEXT_LIMIT:
        whole = _whole_text_file(text, saved)
        if whole is not None:
            kept = [*kept, whole]
            note = (
                f"\n\n[The mail is {len(text):,} characters long: it is cut here; the whole text is attached "
                f"as {FULL_TEXT_NAME}.]"
            )
        else:
            note = f"\n\n[The mail is {len(text):,} characters long: it is cut here.]"
        text = text[: TEXT_LIMIT - len(note)] + note
    item.body_text = text
    item.attachments = kept or None
    record_event(
        "mailbox.intake_item",
        SYSTEM,
        data={
            "inbound_mail_id": item.id,
            "files": len(kept),
            "refused": len(item.refused or []),
            "related_request_id": item.related_request_id,
        },
    )
    return item


def _authserv_id() -> str:
    return str(current_app.config.get("MAIL_AUTHSERV_ID") or "").strip().lower()


def _bounced(item: InboundMail, parsed: ParsedMail, text: str, kept: list[dict]) -> bool:
    """A delivery status notification that one of our messages to a subject failed: the message is marked
    ``bounced`` in the outbox and staff read the notice on the request's thread (never the subject's
    answer; it changes no state or deadline, so a forged one can only ask staff to check the address)."""
    from app.mail.models import OutgoingMail

    sent = db.session.execute(
        select(OutgoingMail).where(OutgoingMail.message_id == parsed.bounce_of)
    ).scalar_one_or_none()
    if sent is None or sent.request_id is None:
        return False
    # A real report comes from the null reverse-path (RFC 5321 4.5.5: the delivering server writes it as
    # ``Return-Path: <>``; a person's own mail carries their address) and names the address we wrote to:
    # anyone holding our Message-ID (the subject, a forward's reader) could otherwise mark a delivered
    # message undelivered. What fails these checks is an intake item for staff to read.
    if (parsed.return_path or "").replace(" ", "") != "<>":
        return False
    ours = sent.to_hash or (email_hash(sent.to_addr) if sent.to_addr else None)
    if not ours or ours not in {email_hash(r) for r in parsed.bounce_recipients}:
        return False
    dsr = db.session.get(DsrRequest, sent.request_id)
    if dsr is None:
        return False
    for f in kept:
        delete_attachment(f["key"])
    item.status, item.matched_by, item.request_id = "threaded", "bounce", dsr.id
    sent.status = "bounced"
    if sent.minimised_at is not None or dsr.minimised_at is not None:
        # Only the fact is recorded: the notice names the subject's address, and nothing would minimise
        # a thread message or an error text written back now.
        minimise_item(item)
        db.session.flush()
        record_event(
            "mail.bounced",
            SYSTEM,
            dsr=dsr,
            data={"mail_id": sent.id, "template": sent.template, "status": parsed.bounce_status},
        )
        return True
    sent.last_error = f"bounced: {parsed.bounce_status} (reported by the receiving mail system)"
    note = (
        f"Our message \u201c{sent.subject}\u201d could not be delivered (status {parsed.bounce_status}). "
        "Check the address, or reach the subject another way.\n\n" + text
    )
    db.session.add(
        RequestMessage(request_id=dsr.id, direction="in", via="email", kind="auto_reply", body=note[:THREAD_TEXT])
    )
    db.session.flush()
    record_event(
        "mail.bounced",
        SYSTEM,
        dsr=dsr,
        data={
            "mail_id": sent.id,
            "template": sent.template,
            "status": parsed.bounce_status,
            "inbound_mail_id": item.id,
        },
    )
    return True


def _thread(item: InboundMail, dsr: DsrRequest, how: str, text: str, kept: list[dict], saved: list[str]) -> None:
    from app.dsr import portal

    item.status = "threaded"
    item.matched_by = how
    item.request_id = dsr.id
    if item.auto_submitted:
        # An out-of-office answer or a bounce is shown to staff; it is not the subject's answer.
        note = RequestMessage(
            request_id=dsr.id, direction="in", via="email", kind="auto_reply", body=text[:THREAD_TEXT]
        )
        db.session.add(note)
        db.session.flush()
        for f in kept:
            delete_attachment(f["key"])
    else:
        body, whole = _fit(text, saved)
        files = [*kept, whole] if whole else kept
        portal.answer(dsr, body or ("(no text)" if not files else ""), via="email", files=files)
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


def _delete_erased_copies(box: Mailbox, name: str, validity: int) -> int:
    """Messages whose row was minimised (erasure, retention) but which the server still holds (too large,
    unreadable, ``MAIL_IMAP_KEEP``): the server's copy goes now, so erasure reaches every copy we know of."""
    rows = list(
        db.session.execute(
            select(InboundMail).where(
                InboundMail.mailbox == name,
                InboundMail.uid_validity == validity,
                InboundMail.on_server.is_(True),
                InboundMail.minimised_at.is_not(None),
            )
        ).scalars()
    )
    if not rows:
        return 0
    box.delete([r.uid for r in rows])
    for row in rows:
        row.on_server = False
    db.session.commit()
    return len(rows)


def _erased_copies_waiting(name: str) -> bool:
    return (
        db.session.execute(
            select(InboundMail.id).where(
                InboundMail.mailbox == name, InboundMail.on_server.is_(True), InboundMail.minimised_at.is_not(None)
            )
        ).first()
        is not None
    )


def read_mailbox() -> dict[str, Any]:
    """Read new mail from ``MAIL_IMAP_URL``: returns counts. Raises ``MailboxError`` when unreachable.

    Each message is recorded in its own transaction. One that fails in an unforeseen way is recorded as
    unreadable (and kept on the server) so the mail behind it is still read; a database that cannot be
    written stops the run (the next run starts where it stopped)."""
    cfg = current_app.config
    if not cfg.get("MAIL_IMAP_URL"):
        return {"configured": False}
    url = parse_imap_url(cfg["MAIL_IMAP_URL"])
    keep = bool(cfg.get("MAIL_IMAP_KEEP"))
    limit = int(cfg["MAIL_IMAP_MAX_BYTES"])
    summary = {
        "configured": True,
        "new": 0,
        "threaded": 0,
        "intake": 0,
        "duplicate": 0,
        "unreadable": 0,
        "skipped": 0,
        "deleted": 0,
        "erased_copies": 0,
    }
    name = url.name
    readonly = keep and not _erased_copies_waiting(name)
    db.session.rollback()
    with Mailbox(url, timeout=float(cfg.get("MAIL_IMAP_TIMEOUT") or 30), readonly=readonly) as box:
        validity = box.uid_validity
        if not readonly:
            summary["erased_copies"] = _delete_erased_copies(box, name, validity)
        uids = box.uids()
        known: set[int] = set()
        # Recorded, but still on the server because a run stopped before deleting it: deleted now.
        leftover: list[int] = []
        for start in range(0, len(uids), 500):
            rows = db.session.execute(
                select(InboundMail.uid, InboundMail.on_server, InboundMail.too_large, InboundMail.unreadable).where(
                    InboundMail.mailbox == name,
                    InboundMail.uid_validity == validity,
                    InboundMail.uid.in_(uids[start : start + 500]),
                )
            ).all()
            for uid, on_server, too_large, unreadable in rows:
                known.add(uid)
                if on_server and not (too_large or unreadable or keep):
                    leftover.append(uid)
        db.session.rollback()
        done: list[int] = list(leftover)
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
            except (SQLAlchemyError, MailboxError):
                db.session.rollback()
                raise
            except Exception as exc:  # noqa: BLE001 - one message must not stop the mail behind it
                db.session.rollback()
                current_app.logger.exception("mailbox: message uid=%s could not be read in", uid)
                record_unreadable(name, validity, fetched, exc)
                db.session.commit()
                summary["new"] += 1
                summary["unreadable"] += 1
                continue
            if item is None:
                summary["skipped"] += 1
                continue
            if item.status == "duplicate":
                summary["duplicate"] += 1
                if not keep or item.minimised_at is not None:
                    done.append(uid)
                continue
            if item.minimised_at is not None and keep:
                done.append(uid)  # a bounce recorded only as a fact: nothing of it is kept, here or there
                continue
            summary["new"] += 1
            summary["threaded" if item.status == "threaded" else "intake"] += 1
            if not item.too_large and not keep:
                done.append(uid)
        if done and readonly:
            # Only copies of erased mail are to go under MAIL_IMAP_KEEP, and this session cannot delete:
            # they stay marked as on the server, so the next run opens the folder to delete them.
            done = []
        if done:
            # The portal holds the message now: the server's copy goes, so erasure reaches every copy.
            # A message too large or unreadable stays for a person to open in the mailbox.
            box.delete(done)
            db.session.execute(
                update(InboundMail)
                .where(
                    InboundMail.mailbox == name,
                    InboundMail.uid_validity == validity,
                    InboundMail.uid.in_(done),
                )
                .values(on_server=False)
            )
            db.session.commit()
            summary["deleted"] = len(done)
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
    made: list[str] = []
    body, whole = _fit(item.body_text or "", made, item.attachments)
    files = [*(item.attachments or []), *([whole] if whole else [])]
    first = RequestMessage(request_id=dsr.id, direction="in", via="email", kind="original_mail", body=body)
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


def add_to_thread(item_id: int, actor: Actor) -> InboundMail:
    """Staff checked that a mail which carries an open request's reply address or Message-ID, sent from
    another address, is the subject's (a work address, say): it joins the thread as their answer, with what
    that does (a request waiting for them goes back to review), and the audit trail says who decided."""
    from app.dsr import portal

    item = lock_item(item_id)
    if item.status != "new" or item.related_request_id is None or item.too_large or item.unreadable:
        raise ActionError("Only a reply waiting in the mailbox can be added to its request's thread.")
    dsr = db.session.get(DsrRequest, item.related_request_id)
    if dsr is None or dsr.status in {s.value for s in CLOSED}:
        raise ActionError("Its request is closed: make a new request of this mail, or dismiss it.")
    made: list[str] = []
    text, whole = _fit(without_quote(item.body_text or ""), made, item.attachments)
    files = [*(item.attachments or []), *([whole] if whole else [])]
    try:
        portal.answer(dsr, text or ("(no text)" if not files else ""), via="email", files=files)
    except BaseException:
        for key in made:  # nothing of this attempt is kept: its file goes too
            delete_attachment(key)
        raise
    item.status = "threaded"
    item.request_id = dsr.id
    item.handled_by_id = actor.id
    item.handled_at = utcnow()
    item.body_text = None  # the text and the files live on the request's thread now
    item.attachments = None
    db.session.flush()
    record_event(
        "mailbox.reply_added_by_staff",
        actor,
        dsr=dsr,
        data={"inbound_mail_id": item.id, "matched_by": item.matched_by, "files": len(files)},
    )
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
    # Its copies (read again under other UIDs) hold nothing but their place on the server, which the next
    # run of the mailbox job deletes, as it does this message's own server copy.
    db.session.execute(
        update(InboundMail)
        .where(InboundMail.duplicate_of_id == item.id, InboundMail.minimised_at.is_(None))
        .values(minimised_at=item.minimised_at, from_hash=None, mailbox_hash=None)
        .execution_options(synchronize_session=False)
    )


__all__ = [
    "MailboxError",
    "read_mailbox",
    "record_message",
    "dismiss",
    "attach_to_request",
    "add_to_thread",
    "minimise_item",
]
