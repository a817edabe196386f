"""Outgoing mail: stored first, sent by a job.

``queue_mail`` renders ``templates/email/<template>.txt`` (and ``.html`` when present), writes an
``OutgoingMail`` row in the caller's transaction and registers the send job to run after commit.
``workers.mail.send_mail`` delivers it through the configured backend (SMTP when ``MAIL_SERVER`` is
set, otherwise the development outbox), retrying with backoff, so an SMTP outage delays mail and loses
none; each message carries a fixed Message-ID, one send attempt at a time claims it, and it is marked
sent the moment the server accepts it (see ``workers.mail``).
"""

from __future__ import annotations

import secrets

from flask import current_app, render_template
from jinja2 import TemplateNotFound
from rq import Retry

from app.extensions import db
from app.mail.models import OutgoingMail
from app.queue import DEFAULTS, PendingJob, enqueue_after_commit

MAIL_JOB = "workers.mail.send_mail"
# Backoff for SMTP trouble: about 25 minutes of retries in all, then reconcile picks it up again.
MAIL_RETRY = Retry(max=8, interval=[2, 5, 15, 30, 60, 120, 300, 900])


def mail_retry() -> Retry:
    """``MAIL_RETRY_INTERVALS`` (seconds, a list) overrides the backoff, e.g. short intervals in tests."""
    intervals = current_app.config.get("MAIL_RETRY_INTERVALS")
    if not intervals:
        return MAIL_RETRY
    return Retry(max=len(intervals), interval=list(intervals))


def mail_job_timeout() -> float:
    """Seconds rq lets one send attempt run (``MAIL_JOB_TIMEOUT_SECONDS``; the send lease is longer)."""
    return float(current_app.config.get("MAIL_JOB_TIMEOUT_SECONDS") or DEFAULTS["mail"]["job_timeout"])


def mail_job(mail_id: int) -> PendingJob:
    return PendingJob(
        queue="mail",
        func=MAIL_JOB,
        args=(mail_id,),
        job_id=f"mail-{mail_id}",
        retry=mail_retry(),
        options={"job_timeout": mail_job_timeout()},
    )


def queue_mail(to: str, template: str, subject: str, *, dsr=None, **context) -> OutgoingMail:
    """Render and store a message; it is sent after the current transaction commits."""
    context.setdefault("base_url", current_app.config["PORTAL_BASE_URL"])
    context.setdefault("dsr", dsr)
    body_text = render_template(f"email/{template}.txt", **context)
    try:
        body_html = render_template(f"email/{template}.html", **context)
    except TemplateNotFound:
        body_html = None
    domain = current_app.config["MAIL_DEFAULT_SENDER"].rpartition("@")[2] or "localhost"
    mail = OutgoingMail(
        message_id=f"<{secrets.token_hex(16)}@{domain}>",
        to_addr=to,
        subject=subject[:254],
        body_text=body_text,
        body_html=body_html,
        template=template,
        request_id=getattr(dsr, "id", None),
    )
    db.session.add(mail)
    db.session.flush()
    enqueue_after_commit(db.session, mail_job(mail.id))
    return mail


def outbox_enabled() -> bool:
    return not current_app.config.get("MAIL_SERVER") and current_app.config["APP_ENV"] != "production"
