"""Files a subject attaches to a message: kept outside the web root under ``ATTACHMENT_DIR``
(``instance/attachments``), written 0600 under a random name, served only to staff, deleted with the
request's personal data. Size and type are limited (``ATTACHMENT_MAX_BYTES``, ``ATTACHMENT_TYPES``)."""

from __future__ import annotations

import io
import os
import secrets
from pathlib import Path

from flask import Response, current_app, send_file

DEFAULT_TYPES = ("application/pdf", "image/png", "image/jpeg", "text/plain")


class AttachmentRefused(Exception):
    pass


def attachment_dir() -> Path:
    return Path(current_app.config.get("ATTACHMENT_DIR") or Path(current_app.instance_path) / "attachments")


def _path(key: str) -> Path | None:
    if not key or not key.isalnum() or len(key) > 64:
        return None
    return attachment_dir() / key


def sniff_type(data: bytes) -> str:
    """The type the bytes show (of those we take), whatever a sender declared: a file from a mail
    arrives with whatever Content-Type its sender chose."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if b"\x00" not in data:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return "application/octet-stream"
        return "text/plain"
    return "application/octet-stream"


def attachment_problem(size: int, content_type: str) -> str | None:
    """Why a file of this size and type is refused (``ATTACHMENT_MAX_BYTES``, ``ATTACHMENT_TYPES``)."""
    limit = int(current_app.config.get("ATTACHMENT_MAX_BYTES") or 5 * 1024 * 1024)
    if size > limit:
        return f"The file is larger than {limit / (1024 * 1024):g} MB."
    allowed = current_app.config.get("ATTACHMENT_TYPES") or DEFAULT_TYPES
    if content_type not in allowed:
        return "Attach a PDF, PNG, JPEG or plain text file."
    return None


def save_attachment(data: bytes, content_type: str) -> str:
    """Store the bytes; returns the key. Refuses what is too large or of a type we do not take."""
    problem = attachment_problem(len(data), content_type)
    if problem:
        raise AttachmentRefused(problem)
    directory = attachment_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_hex(16)
    fd = os.open(directory / key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return key


# The file-name endings a download of each type may keep (the first is given to one that has none of them).
EXTENSIONS = {
    "application/pdf": (".pdf",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "text/plain": (".txt", ".text", ".log"),
}


def attachment_response(data: bytes, name: str) -> Response:
    """A stored file as a download, never inline: ``application/octet-stream`` with the file's name in
    ``Content-Disposition`` (RFC 6266, with an RFC 5987 ``filename*`` when it is not ASCII, by Werkzeug),
    ``no-store``, and a sandbox CSP should anything still try to render it. The name is the sender's:
    control characters and path separators are dropped first."""
    clean = "".join(c for c in name if c.isprintable() and c not in "/\\").strip()[:200] or "attachment"
    # The name ends as the bytes are: an HTML or SVG file (plain text to the sniffer) saved under its own
    # name would open as a page on the officer's machine, outside this response's sandbox.
    stem, dot, ext = clean.rpartition(".")
    fitting = EXTENSIONS.get(sniff_type(data), (".bin",))
    if not dot or f".{ext.lower()}" not in fitting:
        clean = f"{stem if dot else clean}{fitting[0]}"
    response = send_file(
        io.BytesIO(data),
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=clean,
        etag=False,
        conditional=False,
        max_age=None,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def read_attachment(key: str) -> bytes | None:
    path = _path(key)
    return path.read_bytes() if path is not None and path.is_file() else None


def delete_attachment(key: str | None) -> None:
    path = _path(key or "")
    if path is not None:
        path.unlink(missing_ok=True)
