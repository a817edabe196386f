"""A message from the mailbox, taken apart: who sent it, what it answers, its text and its files.

HTML is never kept: the text part is used, and a message with only HTML is turned into plain text here
(script, style and head dropped, block elements as line breaks, entities decoded), which every page then
shows escaped like any other text. Attachments are returned with the type their bytes show
(``app.dsr.attachments.sniff_type``), whatever the sender declared.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from html.parser import HTMLParser

MSGID = re.compile(r"<([^<>\s]{1,250})>")
# Control and bidirectional-override characters: never part of a name or subject we show.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


@dataclass
class Part:
    name: str
    declared_type: str
    data: bytes


@dataclass
class ParsedMail:
    message_id: str | None
    message_id_hash: str
    from_addr: str | None
    from_name: str
    subject: str
    date: datetime | None
    recipients: list[str]
    in_reply_to: list[str]
    references: list[str]
    text: str
    html_only: bool
    auto_submitted: bool
    attachments: list[Part] = field(default_factory=list)


def clean_line(value: str | None, limit: int) -> str:
    clean = _UNSAFE.sub("", unicodedata.normalize("NFC", str(value or ""))).replace("\r", " ").replace("\n", " ")
    return clean.strip()[:limit]


def message_ids(value: str | None) -> list[str]:
    return [f"<{m}>" for m in MSGID.findall(str(value or ""))][:50]


def _header(msg: EmailMessage, name: str) -> str:
    """A header as text; one the parser cannot decode (the email package raises on some malformed
    address and encoded-word headers) is taken as it stands, undecoded."""
    try:
        return str(msg.get(name) or "")
    except (ValueError, TypeError, IndexError, AttributeError, LookupError):
        for key, value in msg.raw_items():
            if key.lower() == name.lower():
                return str(value)
        return ""


def _decoded(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError, KeyError):  # unknown charset, broken encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else bytes(content).decode("utf-8", "replace")


class _TextFromHtml(HTMLParser):
    SKIP = {"script", "style", "head", "title", "template", "noscript", "svg", "object", "iframe"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(data)


def html_to_text(html: str) -> str:
    parser = _TextFromHtml()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):
        pass
    text = "".join(parser.out)
    lines = [re.sub(r"[ \t\xa0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def parse_mail(raw: bytes) -> ParsedMail:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    found_ids = message_ids(_header(msg, "Message-ID"))
    message_id = found_ids[0] if found_ids else None
    digest = hashlib.sha256(message_id.lower().encode() if message_id else raw).hexdigest()
    name, from_field = parseaddr(_header(msg, "From"))
    addr = from_field.strip().lower() if from_field and "@" in from_field and len(from_field) <= 254 else None
    recipients = [
        a.strip().lower()
        for header in ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")
        for _, a in getaddresses([_header(msg, header)])
        if a and "@" in a
    ]
    date = None
    try:
        date = parsedate_to_datetime(_header(msg, "Date")) if _header(msg, "Date") else None
        if date is not None:
            date = date.replace(tzinfo=UTC) if date.tzinfo is None else date.astimezone(UTC)
    except (TypeError, ValueError, IndexError):
        date = None
    auto = (
        _header(msg, "Auto-Submitted").strip().lower() not in ("", "no")
        or _header(msg, "Precedence").strip().lower() in ("bulk", "junk", "list", "auto_reply")
        or msg.get_content_type() == "multipart/report"
    )
    text_body, html_body, attachments = None, None, []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        if disposition == "attachment" or filename or ctype not in ("text/plain", "text/html"):
            if ctype.startswith("multipart/") or ctype == "message/delivery-status":
                continue
            try:
                payload = part.get_payload(decode=True)
            except (ValueError, AssertionError):
                payload = None
            data = payload if isinstance(payload, bytes) else b""
            safe_name = clean_line(filename or "attachment", 200).replace("/", "_").replace("\\", "_") or "attachment"
            attachments.append(Part(safe_name, ctype, data))
        elif ctype == "text/plain" and text_body is None:
            text_body = _decoded(part)
        elif ctype == "text/html" and html_body is None:
            html_body = _decoded(part)
    html_only = text_body is None and html_body is not None
    text = text_body if text_body is not None else html_to_text(html_body or "")
    return ParsedMail(
        message_id=message_id,
        message_id_hash=digest,
        from_addr=addr,
        from_name=clean_line(name, 200),
        subject=clean_line(_header(msg, "Subject"), 254),
        date=date,
        recipients=recipients,
        in_reply_to=message_ids(_header(msg, "In-Reply-To")),
        references=message_ids(_header(msg, "References")),
        text=_UNSAFE.sub("", text.replace("\r\n", "\n")).strip(),
        html_only=html_only,
        auto_submitted=auto,
        attachments=attachments,
    )


ATTRIBUTION = re.compile(r"^(On .{4,200} wrote:|-{2,} ?Original Message ?-{2,}|From: .+)$", re.IGNORECASE)


def without_quote(text: str) -> str:
    """The new part of a reply: cut at the first attribution line ("On ... wrote:") or quoted block
    that runs to the end of the message (the quote is our own message, which the thread has already)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        rest = [x for x in lines[i + 1 :] if x.strip()]
        if ATTRIBUTION.match(line.strip()) and (not rest or all(x.lstrip().startswith(">") for x in rest)):
            head = "\n".join(lines[:i]).strip()
            return head or text
        if line.lstrip().startswith(">") and all(x.lstrip().startswith(">") for x in rest):
            head = "\n".join(lines[:i]).strip()
            return head or text
    return text
