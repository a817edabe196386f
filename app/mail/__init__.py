"""Outgoing mail: stored first, sent by a job.

``queue_mail`` renders ``templates/email/<template>.txt`` (and ``.html`` when present), writes an
``OutgoingMail`` row in the caller's transaction and registers the send job to run after commit.
``workers.mail.send_mail`` delivers it through the configured backend (SMTP when ``MAIL_SERVER`` is
set, otherwise the development outbox), retrying with backoff, so an SMTP outage delays mail and loses
none; each message carries a fixed Message-ID, one send attempt at a time claims it, and it is marked
sent the moment the server accepts it (see ``workers.mail``).
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask import current_app, render_template
from jinja2 import TemplateNotFound
from rq import Retry

from app.extensions import db
from app.mail.models import OutgoingMail
from app.queue import DEFAULTS, PendingJob, enqueue_after_commit

if TYPE_CHECKING:
    from app.dsr.models import DsrRequest

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


# Control characters and the bidirectional overrides/isolates that can make text read differently.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def mail_text(value: str | None, limit: int = 80) -> str:
    """Text from a subject, fit to be shown in our mail: one line, no control or bidi characters,
    at most ``limit`` characters."""
    clean = _UNSAFE.sub("", unicodedata.normalize("NFC", value or "")).strip()
    return clean if len(clean) <= limit else clean[: limit - 1].rstrip() + "…"


def queue_mail(
    to: str,
    template: str,
    subject: str,
    *,
    dsr: DsrRequest | None = None,
    verified: bool | None = None,
    **context: Any,  # template variables, whatever the template reads
) -> OutgoingMail:
    """Render and store a message; it is sent after the current transaction commits.

    Templates greet by ``name``: the subject's name, cleaned by ``mail_text``, and only once their address
    is verified (``verified``; by default, whether the request is). Mail to an address that has not
    proved itself carries no text the sender typed, so nobody can send our mail with their words in it.
    """
    from app.dsr.law import authority_lines, law_for

    context.setdefault("base_url", current_app.config["PORTAL_BASE_URL"])
    context.setdefault("dsr", dsr)
    if dsr is not None:
        context.setdefault("law", law_for(dsr.jurisdiction))
        context.setdefault("authorities", authority_lines(context["law"]))
        if verified is None:
            verified = dsr.verified_at is not None
        context.setdefault("name", mail_text(dsr.full_name) if verified else "")
    context.setdefault("name", "")
    context.setdefault("privacy_contact", current_app.config["PRIVACY_CONTACT"])
    body_text, body_html = render_message(template, subject, context)
    domain = current_app.config["MAIL_DEFAULT_SENDER"].rpartition("@")[2] or "localhost"
    from app.hashing import email_hash
    from app.mailbox.replies import for_subject, reply_address

    mail = OutgoingMail(
        message_id=f"<{secrets.token_hex(16)}@{domain}>",
        reply_to=reply_address(dsr) if dsr is not None and for_subject(template) else None,
        to_addr=to,
        to_hash=email_hash(to),
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


def render_message(template: str, subject: str, context: Mapping[str, Any]) -> tuple[str, str | None]:
    """(text, html) of a message. ``email/<template>.mail`` is one template for both parts (rendered with
    ``fmt`` = "text", then "html", in the branded layout ``email/_base.mail``); an older ``.txt`` template
    (with an optional ``.html``) still works."""
    text: str | None
    html: str | None
    try:
        text = render_template(f"email/{template}.mail", fmt="text", mail_subject=subject, **context)
    except TemplateNotFound:
        text = None
    if text is not None:
        html = render_template(f"email/{template}.mail", fmt="html", mail_subject=subject, **context)
        return _tidy(text), html
    text = render_template(f"email/{template}.txt", **context)
    try:
        html = render_template(f"email/{template}.html", **context)
    except TemplateNotFound:
        html = None
    return text, html


def _tidy(text: str) -> str:
    """At most one blank line in a row, and none at the start."""
    return re.sub(r"\n{3,}", "\n\n", text).lstrip("\n")


def outbox_enabled() -> bool:
    return not current_app.config.get("MAIL_SERVER") and current_app.config["APP_ENV"] != "production"
