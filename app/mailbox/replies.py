"""Which request a mail answers: its per-request reply address, or the Message-IDs we sent.

Mail to a subject about a request carries ``Reply-To: privacy+<token>@domain`` (``MAIL_REPLY_ADDRESS``,
default ``PRIVACY_CONTACT``; the token is random and the request's own), and every message we send has a
Message-ID we stored. A reply matches by that address in its recipients, or by ``In-Reply-To`` /
``References`` naming one of our messages to a subject; never by its subject line, which anyone can type.
"""

from __future__ import annotations

import re
import secrets

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.dsr.models import DsrRequest
from app.extensions import db
from app.mail.models import OutgoingMail

TOKEN = re.compile(r"^[0-9a-f]{20}$")
# Mail about a request that goes to staff, not to the subject: a reply to it is not the subject's.
STAFF_TEMPLATE_PREFIXES = ("fulfil_staff", "admin_staff")


def mailbox_enabled() -> bool:
    return bool(current_app.config.get("MAIL_IMAP_URL"))


def base_address() -> str:
    return (current_app.config.get("MAIL_REPLY_ADDRESS") or current_app.config["PRIVACY_CONTACT"]).strip().lower()


def for_subject(template: str) -> bool:
    return not template.startswith(STAFF_TEMPLATE_PREFIXES)


def reply_address(dsr: DsrRequest) -> str | None:
    """``privacy+<token>@domain`` of this request (the token made on first use), when the mailbox is read."""
    if not mailbox_enabled() or dsr is None or dsr.id is None:
        return None
    local, _, domain = base_address().rpartition("@")
    if not local:
        return None
    if not dsr.reply_token:
        # Set once, by the statement that checks it is unset: two mails queued at once for the same
        # request (two transactions) end with one token, the one both carry.
        db.session.execute(
            update(DsrRequest)
            .where(DsrRequest.id == dsr.id, DsrRequest.reply_token.is_(None))
            .values(reply_token=secrets.token_hex(10))
            .execution_options(synchronize_session=False)
        )
        token = db.session.execute(select(DsrRequest.reply_token).where(DsrRequest.id == dsr.id)).scalar_one()
        set_committed_value(dsr, "reply_token", token)
    return f"{local.split('+', 1)[0]}+{dsr.reply_token}@{domain}"


def tokens_in(recipients: list[str]) -> list[str]:
    local, _, domain = base_address().rpartition("@")
    local = local.split("+", 1)[0]
    found = []
    for address in recipients:
        r_local, _, r_domain = address.lower().rpartition("@")
        base, plus, tag = r_local.partition("+")
        if plus and base == local and r_domain == domain and TOKEN.match(tag):
            found.append(tag)
    return found


def match_request(
    recipients: list[str], in_reply_to: list[str], references: list[str]
) -> tuple[DsrRequest | None, str | None]:
    """(request, how) or (None, None)."""
    for token in tokens_in(recipients):
        dsr = db.session.execute(select(DsrRequest).where(DsrRequest.reply_token == token)).scalar_one_or_none()
        if dsr is not None:
            return dsr, "reply_address"
    for how, ids in (("in_reply_to", in_reply_to), ("references", list(reversed(references)))):
        if not ids:
            continue
        rows = db.session.execute(
            select(OutgoingMail.message_id, OutgoingMail.request_id, OutgoingMail.template).where(
                OutgoingMail.message_id.in_(ids), OutgoingMail.request_id.is_not(None)
            )
        ).all()
        by_id = {mid: (rid, tpl) for mid, rid, tpl in rows if for_subject(tpl)}
        for mid in ids:
            if mid in by_id:
                return db.session.get(DsrRequest, by_id[mid][0]), how
    return None, None
