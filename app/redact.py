"""Redaction of secrets and addresses from text that is kept or logged.

Link tokens are the only credentials a subject has, so no copy of one may outlive its purpose: a sent
message's stored bodies lose them (``redact_tokens``), and every log line passes through the same
function (``redact_record``, applied to every record as it is made), so a token in a URL or in an
exception's message never reaches a log file, in text or JSON: message, traceback and stack alike. A
token is any run of 32 or more URL-safe base64 characters after a ``/`` or ``=`` (ours are 43);
references (13 characters) and ids are untouched.
"""

from __future__ import annotations

import logging
import re
from typing import Any, overload

# After "/" or "=", also percent-encoded once or twice (a link scanner such as Outlook's Safe Links
# wraps our links as ``?url=https%3A%2F%2F...%3Ftoken%3D<token>``).
TOKEN = re.compile(r"(?:(?<=[/=])|(?<=%2[fF])|(?<=%3[dD])|(?<=%252[fF])|(?<=%253[dD]))[A-Za-z0-9_-]{32,}")
EMAIL = re.compile(r"[A-Za-z0-9._+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", re.IGNORECASE)
REDACTED = "[redacted]"


@overload
def redact_tokens(text: str) -> str: ...
@overload
def redact_tokens(text: str | None) -> str | None: ...
def redact_tokens(text: str | None) -> str | None:
    if not text:
        return text
    return TOKEN.sub(REDACTED, text)


@overload
def redact_all(text: str) -> str: ...
@overload
def redact_all(text: str | None) -> str | None: ...
def redact_all(text: str | None) -> str | None:
    """Tokens and email addresses (for error texts and log lines)."""
    if not text:
        return text
    return EMAIL.sub("[address]", TOKEN.sub(REDACTED, text))


_formatter = logging.Formatter()


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a record's message, traceback and stack in place, whatever later formats it.

    The traceback is rendered here once, redacted, into ``exc_text``: every ``logging.Formatter`` (the
    text ones of Flask, rq, gunicorn and pytest) writes that cached text instead of rendering
    ``exc_info`` again, so text lines lose tokens and addresses as JSON lines do (``app.logs``)."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError, KeyError):
        message = None
    if message is not None:
        clean = redact_all(message)
        if clean != message:
            record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = _formatter.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_all(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_all(record.stack_info)
    return record


_factory_installed = False


def install_record_factory() -> None:
    """Redact every log record of this process at its creation: the app's, rq's, werkzeug's and
    gunicorn's (access log included), whatever handler later writes it. Idempotent."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _factory_installed = True
