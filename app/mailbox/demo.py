"""Demo mail for ``seed-demo``: two letters waiting at ``/admin/mailbox`` (one sent as HTML only), so
``make run`` shows the intake of the privacy mailbox without an IMAP server. Idempotent (by Message-ID)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import select

from app.extensions import db
from app.hashing import email_hash
from app.mailbox.models import InboundMail
from app.mailbox.parse import html_to_text
from app.portal.mailbox import normalise_mailbox

DEMO_MAIL = (
    (
        "<demo-mail-1@example.net>",
        "Jo Post",
        "jo.post@example.net",
        "Data request",
        "Hello,\n\nplease tell me what personal data ChatGPTTech holds about me and send me a copy.\n\nJo",
        False,
        2,
    ),
    (
        "<demo-mail-2@example.net>",
        "Ana Html",
        "ana.html@example.net",
        "Delete my account",
        html_to_text("<p>Please <b>delete</b> my account and everything about me.</p><p>Ana</p>"),
        True,
        1,
    ),
)


def seed_demo_mail(now: datetime) -> int:
    made = 0
    for uid, (message_id, name, addr, subject, body, html_only, days_ago) in enumerate(DEMO_MAIL, start=1):
        digest = hashlib.sha256(message_id.lower().encode()).hexdigest()
        if db.session.execute(select(InboundMail.id).where(InboundMail.message_id_hash == digest)).first():
            continue
        db.session.add(
            InboundMail(
                mailbox="demo",
                uid_validity=1,
                uid=uid,
                message_id_hash=digest,
                message_id=message_id,
                from_addr=addr,
                from_hash=email_hash(addr),
                mailbox_hash=email_hash(normalise_mailbox(addr)),
                from_name=name,
                subject=subject,
                body_text=body,
                html_only=html_only,
                received_at=now - timedelta(days=days_ago),
                fetched_at=now,
            )
        )
        made += 1
    db.session.commit()
    return made
