"""Redaction of secrets and addresses from text that is kept or logged.

Link tokens are the only credentials a subject has, so no copy of one may outlive its purpose: a sent
message's stored bodies lose them (``redact_tokens``), and every log line passes through the same
function (``RedactingFilter``, installed on the app's, werkzeug's and gunicorn's loggers), so a token in
a URL never reaches a log file. A token is any run of 32 or more URL-safe base64 characters after a
``/`` or ``=`` (ours are 43); references (13 characters) and ids are untouched.
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


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with tokens and addresses redacted (access logs included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        clean = redact_all(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_factory_installed = False


def install_record_factory() -> None:
    """Redact every log record of this process at its creation: the app's, rq's, werkzeug's and
    gunicorn's (access log included), whatever handler later writes it. Idempotent."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            return record
        clean = redact_all(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def install(*loggers: logging.Logger) -> None:
    """Put the filter on these loggers and on every handler of the root logger."""
    filt = RedactingFilter()
    for logger in loggers:
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(filt)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(filt)
