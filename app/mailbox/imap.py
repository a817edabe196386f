"""Reading the privacy mailbox over IMAP (the standard library's ``imaplib``), by UID.

``MAIL_IMAP_URL`` is ``imaps://user:pass@host[:port]/FOLDER`` (TLS with certificate checks) or
``imap://`` (plain: tests, and a server on the loopback interface; production refuses it elsewhere).
User and password are percent-decoded; the folder defaults to ``INBOX``. Nothing here logs or raises
the password: errors name the host only.
"""

from __future__ import annotations

import imaplib
import ipaddress
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit


class MailboxError(Exception):
    """The mailbox could not be read (server down, login refused, folder missing); try again later."""


@dataclass(frozen=True)
class MailboxURL:
    secure: bool
    host: str
    port: int
    username: str
    password: str
    folder: str

    @property
    def name(self) -> str:
        """What identifies the mailbox in the database (never the password)."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"[:200]

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_imap_url(url: str) -> MailboxURL:
    """Raises ValueError with a message that never contains the password."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("imap", "imaps"):
        raise ValueError("MAIL_IMAP_URL must start with imaps:// (or imap:// for a server on this machine)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("MAIL_IMAP_URL has an invalid port") from None
    if not parts.hostname or not parts.username:
        raise ValueError("MAIL_IMAP_URL needs a user and a host: imaps://user:password@host/INBOX")
    secure = parts.scheme == "imaps"
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    return MailboxURL(
        secure=secure,
        host=parts.hostname,
        port=port or (993 if secure else 143),
        username=unquote(parts.username),
        password=unquote(parts.password or ""),
        folder=folder,
    )


@dataclass
class Fetched:
    uid: int
    size: int
    internal_date: datetime | None
    raw: bytes | None  # None: larger than the limit (or its header is), only the header was fetched
    header: bytes
    # The header alone is over HEADER_BYTES: the message is not parsed whole (the email package's
    # address parsing is quadratic), it waits for staff like a message over the size limit.
    header_too_large: bool = False


HEADER_BYTES = 65536
_FETCH_META = re.compile(rb"UID (\d+)|RFC822\.SIZE (\d+)|INTERNALDATE \"([^\"]+)\"")


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Mailbox:
    """One IMAP session on the configured folder; use as a context manager."""

    def __init__(self, url: MailboxURL, *, timeout: float = 30, readonly: bool = False):
        self.url, self.timeout, self.readonly = url, timeout, readonly
        self.conn: imaplib.IMAP4 | None = None
        self.uid_validity = 0

    def __enter__(self) -> Mailbox:
        url = self.url
        try:
            if url.secure:
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    url.host, url.port, ssl_context=ssl.create_default_context(), timeout=self.timeout
                )
            else:
                conn = imaplib.IMAP4(url.host, url.port, timeout=self.timeout)
                if "STARTTLS" in conn.capabilities:
                    conn.starttls(ssl.create_default_context())
            conn.login(url.username, url.password)
            typ, _ = conn.select(_quote(url.folder), readonly=self.readonly)
            if typ != "OK":
                raise MailboxError(f"folder {url.folder!r} cannot be opened on {url.host}")
            _, validity = conn.response("UIDVALIDITY")
            self.uid_validity = int(validity[0]) if validity and validity[0] else 0
            conn.capability()  # after login the server may offer more (UIDPLUS)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(f"cannot read the mailbox on {url.host}:{url.port}: {type(exc).__name__}") from None
        self.conn = conn
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is None:
            return
        try:
            self.conn.close()
            self.conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
        self.conn = None

    def _uid(self, command: str, *args: str) -> list[Any]:
        assert self.conn is not None
        try:
            typ, data = self.conn.uid(command, *args)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(f"IMAP {command} failed on {self.url.host}: {type(exc).__name__}") from None
        if typ != "OK":
            raise MailboxError(f"IMAP {command} refused on {self.url.host}")
        return data

    def uids(self) -> list[int]:
        data = self._uid("SEARCH", "ALL")
        return sorted(int(u) for u in (data[0] or b"").split())

    def fetch(self, uid: int, max_bytes: int) -> Fetched | None:
        """The message (``BODY.PEEK``: flags untouched), or only its header when it is over ``max_bytes``."""
        # The header's first HEADER_BYTES only: a header of any size the server holds is not read whole.
        meta = self._uid("FETCH", str(uid), f"(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER]<0.{HEADER_BYTES}>)")
        found = _parse_fetch(meta, uid)
        if found is None:
            return None  # expunged meanwhile
        size, internal, header = found
        if len(header) >= HEADER_BYTES and not header.endswith((b"\r\n\r\n", b"\n\n")):
            return Fetched(uid, size, internal, None, header, header_too_large=True)
        if size > max_bytes:
            return Fetched(uid, size, internal, None, header)
        body = _parse_fetch(self._uid("FETCH", str(uid), "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[])"), uid)
        if body is None:
            return None
        return Fetched(uid, size, internal, body[2], header)

    def delete(self, uids: list[int]) -> None:
        """Flag and expunge these messages (only these, where the server has UIDPLUS)."""
        if not uids:
            return
        assert self.conn is not None
        uid_set = ",".join(str(u) for u in uids)
        self._uid("STORE", uid_set, "+FLAGS.SILENT", "(\\Deleted)")
        if "UIDPLUS" in self.conn.capabilities:
            self._uid("EXPUNGE", uid_set)
        else:
            try:
                self.conn.expunge()
            except (OSError, imaplib.IMAP4.error) as exc:
                raise MailboxError(f"IMAP EXPUNGE failed on {self.url.host}: {type(exc).__name__}") from None


def _parse_fetch(data: list[Any], uid: int) -> tuple[int, datetime | None, bytes] | None:
    for item in data or []:
        if not isinstance(item, tuple) or len(item) < 2:
            continue
        head, payload = item[0], item[1]
        fields: dict[str, bytes] = {}
        for m in _FETCH_META.finditer(head):
            if m.group(1):
                fields["uid"] = m.group(1)
            elif m.group(2):
                fields["size"] = m.group(2)
            elif m.group(3):
                fields["date"] = m.group(3)
        if fields.get("uid") and int(fields["uid"]) != uid:
            continue
        internal = None
        if fields.get("date"):
            try:
                internal = datetime.strptime(fields["date"].decode(), "%d-%b-%Y %H:%M:%S %z").astimezone(UTC)
            except ValueError:
                internal = None
        return int(fields.get("size", b"0")), internal, bytes(payload)
    return None
