"""Log lines with a request id: text for a person at a terminal, one JSON object a line for a collector.

``LOG_FORMAT=json`` writes every record of the process (the app's, werkzeug's, rq's and gunicorn's error
and access logs) as one JSON object on one line with ``time``, ``level``, ``logger``, ``message`` and
``request_id`` (in a job, the id of the request that queued it; ``exception`` for a traceback, on the
same line). Only these fields are written, never a record's extras, and message and traceback pass
through the same redaction as every other log line (``app.redact``): no token or address reaches a
collector. Production defaults
to JSON (a collector parses it without patterns, and a multi-line traceback stays one record);
development and tests keep text.

The request id comes from ``REQUEST_ID_HEADER`` (default ``X-Request-ID``) when the proxy sent one that
looks like an id (1 to 64 letters, digits, ``.``, ``_``, ``:``, ``-``; one of 32 or more characters only
if hex and hyphens, as UUIDs are, so a link token sent there is never copied into a log), otherwise a new
one is made. It is echoed in the response's header, so gunicorn's access line carries it too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from flask import Flask, Response

from app.redact import redact_all

FORMATS = ("text", "json")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
HEX_ID = re.compile(r"[0-9A-Fa-f-]+")
HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


def accept_request_id(value: str | None) -> str:
    """The incoming id if it looks like one (never like a token or an address), else a new one."""
    if value and REQUEST_ID.fullmatch(value) and (len(value) < 32 or HEX_ID.fullmatch(value)):
        return value
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The id of the request being handled (made on first use), or None outside a request."""
    from flask import current_app, has_request_context, request

    if not has_request_context():
        return None
    rid = request.environ.get("dsr.request_id")  # the request's own (``g`` may outlive it in tests)
    if rid is None:
        rid = accept_request_id(request.headers.get(current_app.config["REQUEST_ID_HEADER"]))
        request.environ["dsr.request_id"] = rid
    return rid


def _job_request_id() -> str | None:
    """In a job: the id of the web request that queued it (``app.queue.enqueue_now`` keeps it)."""
    try:
        from rq import get_current_job

        job = get_current_job()
    except Exception:  # noqa: BLE001 - outside a worker rq has nothing to say
        return None
    meta = getattr(job, "meta", None) or {}
    return meta.get("request_id") if isinstance(meta, dict) else None


_header_atom = "{x-request-id}o"  # gunicorn's access-log atom of our response header
_factory_installed = False


def install_request_id_factory(header: str | None = None) -> None:
    """Stamp each record with the request id (None outside a request) when it is made. Installed
    before ``app.redact``'s factory, which wraps it: gunicorn's access record still has its atoms here."""
    global _factory_installed, _header_atom
    if header:
        _header_atom = "{%s}o" % header.lower()  # noqa: UP031 - gunicorn's own atom syntax
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        rid = None
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            rid = record.args.get(_header_atom)
        if rid is None:
            try:
                rid = current_request_id()
            except RuntimeError:
                rid = None
        if rid is None:
            rid = _job_request_id()
        record.request_id = rid if rid is None else accept_request_id(str(rid))
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, with a fixed set of fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict = {
            "time": stamp.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_all(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            entry["exception"] = redact_all(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact_all(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact_all(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class _JsonHandler(logging.StreamHandler):
    """The root handler this module adds (recognised so that a second app in the process adds none);
    it writes to whatever ``sys.stderr`` is at the time (a test's capture, a redirected stream)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure(app: Flask) -> None:
    """Request ids on every request; with ``LOG_FORMAT=json``, JSON lines from every logger."""
    header = app.config["REQUEST_ID_HEADER"]
    install_request_id_factory(header)

    @app.before_request
    def _request_id() -> None:
        current_request_id()

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        rid = current_request_id()
        if rid:
            response.headers[header] = rid
        return response

    if app.config["LOG_FORMAT"] != "json":
        return
    from flask.logging import default_handler

    app.logger.removeHandler(default_handler)
    formatter = JsonFormatter()
    root = logging.getLogger()
    if not any(isinstance(h, _JsonHandler) for h in root.handlers):
        json_handler = _JsonHandler()
        json_handler.setFormatter(formatter)
        root.addHandler(json_handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    # gunicorn's error and access logs have handlers of their own (and do not propagate): same lines.
    for name in ("gunicorn.error", "gunicorn.access"):
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)
