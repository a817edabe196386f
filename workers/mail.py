"""The mail job: deliver one stored message, once.

Delivery is claimed before the SMTP conversation and recorded the moment the server accepts the
message, each in its own short transaction, so no database lock is held across network I/O:

1. *Claim*: one ``UPDATE`` moves the row from ``queued`` (or from a ``sending`` claim older than the
   send lease, whose attempt died) to ``sending`` and counts the attempt. Only one job can win it, on
   SQLite as on PostgreSQL, so two workers never send the same message side by side (after a Redis
   flush, for example, when reconcile enqueues a message a live work horse is already sending).
2. *Send*, then *record*: ``sent`` is committed as soon as the server has answered the end of DATA,
   before QUIT.

A process killed after the server accepted a message and before step 2 committed leaves it
``sending``; once the lease has passed it is sent again, with the same Message-ID, and
``interrupted_sends`` says so. No client can do better over SMTP (the server's acceptance and our
record cannot be one atomic step); the fixed Message-ID lets the receiving side recognise the copy.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, and_, case, or_, select, update
from sqlalchemy.exc import DBAPIError

from app.audit import Actor, record_event
from app.dsr.models import DsrRequest
from app.extensions import db
from app.mail import mail_job_timeout
from app.mail.backends import PermanentMailError, TransientMailError, deliver
from app.mail.models import OutgoingMail
from app.models_base import rows_changed, utcnow
from app.redact import redact_all, redact_tokens
from workers.context import job

SEND_LEASE = timedelta(seconds=120)
# rq stops a mail job at its timeout; only QUIT (bounded by MAIL_TIMEOUT) can follow, and no message data.
LEASE_MARGIN = timedelta(seconds=5)
SETTLE_TRIES = (0.2, 1.0, 3.0)


def send_lease() -> timedelta:
    """``MAIL_SEND_LEASE_SECONDS``, but never shorter than a live attempt can last (the mail job's
    timeout plus one SMTP timeout and a margin): a shorter lease would let a second attempt take
    over a message that is still being sent."""
    seconds = current_app.config.get("MAIL_SEND_LEASE_SECONDS")
    configured = SEND_LEASE if seconds is None else timedelta(seconds=float(seconds))
    floor = timedelta(seconds=mail_job_timeout() + float(current_app.config["MAIL_TIMEOUT"])) + LEASE_MARGIN
    return max(configured, floor)


def dead_claim(now: datetime | None = None) -> ColumnElement[bool]:
    """Rows claimed by a send attempt that has outlived the lease: it died holding the claim."""
    now = now or utcnow()
    return and_(OutgoingMail.status == "sending", OutgoingMail.send_started_at < now - send_lease())


def claimable(now: datetime | None = None) -> ColumnElement[bool]:
    """Rows a job may claim: queued, or claimed by a dead attempt."""
    return or_(OutgoingMail.status == "queued", dead_claim(now))


def _settle(mail_id: int, attempt: int, **values: Any) -> None:
    """Record an attempt's outcome, unless a later attempt has taken the message over."""
    done = db.session.execute(
        update(OutgoingMail)
        .where(OutgoingMail.id == mail_id, OutgoingMail.status == "sending", OutgoingMail.attempts == attempt)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if rows_changed(done) != 1:
        current_app.logger.warning(
            "mail %s: attempt %s was taken over; its outcome %s not recorded", mail_id, attempt, values.get("status")
        )


def _settle_persistently(mail_id: int, attempt: int, **values: Any) -> None:
    """``_settle`` that rides out a short database outage: after the server has accepted a message,
    failing to record it means sending it again once the lease has passed."""
    for pause in SETTLE_TRIES:
        try:
            _settle(mail_id, attempt, **values)
            return
        except DBAPIError:
            db.session.rollback()
            current_app.logger.warning("mail %s: recording %s failed; retrying", mail_id, values.get("status"))
            time.sleep(pause)
    _settle(mail_id, attempt, **values)


@job
def send_mail(mail_id: int) -> str:
    now = utcnow()
    claimed = db.session.execute(
        update(OutgoingMail)
        .where(OutgoingMail.id == mail_id, claimable(now))
        .values(
            status="sending",
            send_started_at=now,
            attempts=OutgoingMail.attempts + 1,
            interrupted_sends=OutgoingMail.interrupted_sends + case((OutgoingMail.status == "sending", 1), else_=0),
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if rows_changed(claimed) != 1:
        status = db.session.execute(select(OutgoingMail.status).where(OutgoingMail.id == mail_id)).scalar()
        return {None: "gone", "sent": "already sent", "failed": "failed"}.get(status, "in flight elsewhere")
    mail = db.session.get(OutgoingMail, mail_id)
    assert mail is not None  # this job has just claimed the row
    attempt = mail.attempts
    # Once sent, the stored copy loses its link tokens: only the development outbox (which is the mail
    # server when MAIL_SERVER is unset) keeps a clickable copy.
    redact = bool(current_app.config.get("MAIL_SERVER"))
    redacted = _redacted(mail) if redact else {}

    def accepted() -> None:
        _settle_persistently(mail_id, attempt, status="sent", sent_at=utcnow(), last_error=None, **redacted)

    try:
        return deliver(mail, accepted)
    except PermanentMailError as exc:
        db.session.rollback()
        _settle(mail_id, attempt, status="failed", last_error=redact_all(str(exc))[:2000], **_redacted(mail))
        _record_failure(mail_id)
        return "failed"
    except TransientMailError as exc:
        db.session.rollback()
        _settle(mail_id, attempt, status="queued", last_error=redact_all(str(exc))[:2000])
        raise TransientMailError(redact_all(str(exc))) from None  # rq retries; reconcile re-queues after the last


def _record_failure(mail_id: int) -> None:
    """A message about a request that will never be delivered goes on the request's timeline (as a
    bounce does), so staff know to reach the subject another way."""
    mail = db.session.get(OutgoingMail, mail_id)
    if mail is None or mail.status != "failed" or mail.request_id is None:
        return
    dsr = db.session.get(DsrRequest, mail.request_id)
    record_event("mail.failed", Actor.system("mail"), dsr=dsr, data={"mail_id": mail.id, "template": mail.template})
    db.session.commit()


def _redacted(mail: OutgoingMail) -> dict[str, Any]:
    return {
        "body_text": redact_tokens(mail.body_text),
        "body_html": redact_tokens(mail.body_html),
        "redacted_at": utcnow(),
    }
