"""The mail job: deliver one stored message, exactly once."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.mail.backends import PermanentMailError, TransientMailError, deliver
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from workers.context import job


@job
def send_mail(mail_id: int) -> str:
    mail = db.session.execute(
        select(OutgoingMail).where(OutgoingMail.id == mail_id).with_for_update()
    ).scalar_one_or_none()
    if mail is None:
        return "gone"
    if mail.status == "sent":
        return "already sent"
    mail.attempts = (mail.attempts or 0) + 1
    try:
        backend = deliver(mail)
    except PermanentMailError as exc:
        mail.status = "failed"
        mail.last_error = str(exc)[:2000]
        db.session.commit()
        return "failed"
    except TransientMailError as exc:
        mail.last_error = str(exc)[:2000]
        db.session.commit()
        raise  # rq retries with backoff; reconcile re-queues after the last retry
    mail.status = "sent"
    mail.sent_at = utcnow()
    mail.last_error = None
    db.session.commit()
    return backend
