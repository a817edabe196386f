"""Mail backends: SMTP (``MAIL_SERVER`` set) and the development outbox (the database row is the mail)."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate

from flask import current_app

from app.mail.models import OutgoingMail


class TransientMailError(Exception):
    """Try again later (server down, temporary refusal)."""


class PermanentMailError(Exception):
    """Retrying will not help (address refused)."""


def build_message(mail: OutgoingMail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = current_app.config["MAIL_DEFAULT_SENDER"]
    msg["To"] = mail.to_addr
    msg["Subject"] = mail.subject
    msg["Message-ID"] = mail.message_id
    if mail.reply_to:  # the request's own reply address: the privacy mailbox threads the answer
        msg["Reply-To"] = mail.reply_to
    msg["Date"] = formatdate(localtime=False)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(mail.body_text)
    if mail.body_html:
        msg.add_alternative(mail.body_html, subtype="html")
    return msg


def send_smtp(mail: OutgoingMail, accepted: Callable[[], None]) -> None:
    """Send by SMTP; ``accepted`` runs as soon as the server has taken the message, before QUIT."""
    cfg = current_app.config
    try:
        message = build_message(mail)
    except (ValueError, TypeError) as exc:  # e.g. a header with a line break: no retry will fix it
        raise PermanentMailError(f"cannot build the message: {exc}") from exc
    try:
        smtp = smtplib.SMTP(cfg["MAIL_SERVER"], cfg["MAIL_PORT"], timeout=cfg["MAIL_TIMEOUT"])
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientMailError(f"{type(exc).__name__}: {exc}") from exc
    try:
        try:
            if cfg["MAIL_USE_TLS"]:
                # Verified against the system's trust store and MAIL_SERVER's name (smtplib's own default
                # context checks nothing); a server without STARTTLS raises, it never falls back to plain.
                smtp.starttls(context=ssl.create_default_context())
            if cfg.get("MAIL_USERNAME"):
                smtp.login(cfg["MAIL_USERNAME"], cfg.get("MAIL_PASSWORD") or "")
            smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(500 <= code < 600 for code in codes):
                raise PermanentMailError(str(exc)) from exc
            raise TransientMailError(str(exc)) from exc
        except smtplib.SMTPDataError as exc:  # the message itself refused at DATA: 5xx is final
            if 500 <= exc.smtp_code < 600:
                raise PermanentMailError(f"SMTPDataError: {exc}") from exc
            raise TransientMailError(f"SMTPDataError: {exc}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientMailError(f"{type(exc).__name__}: {exc}") from exc
        accepted()
    finally:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            smtp.quit()
        smtp.close()


def deliver(mail: OutgoingMail, accepted: Callable[[], None]) -> str:
    """Send through the configured backend, calling ``accepted`` once it has the message; returns
    the backend's name."""
    if current_app.config.get("MAIL_SERVER"):
        send_smtp(mail, accepted)
        return "smtp"
    if current_app.config.get("APP_ENV") == "production":
        # Never "sent" into an outbox nobody reads: production must name its mail server.
        raise TransientMailError("MAIL_SERVER is not set: production mail waits until it is")
    accepted()
    return "outbox"
