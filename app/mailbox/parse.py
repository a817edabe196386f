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

import authres

MSGID = re.compile(r"<([^<>\s]{1,250})>")
# How far a message is taken apart: parts nested deeper, or past this many, are not read in (and the
# message says so to staff). Real mail nests three or four levels and has a handful of parts.
MAX_DEPTH = 12
MAX_PARTS = 200
# The headers that make a message what it is. Trace headers (Received, Delivered-To, Return-Path) differ
# between two deliveries of one message and are left out.
IDENTITY_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References")
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
    # SHA-256 of the identity headers and the body: a copy of a message has the same; a different mail
    # that reuses its Message-ID does not.
    content_hash: str = ""
    # What could not be read in (too deep, too many parts): shown to staff with the message.
    problems: list[str] = field(default_factory=list)
    # A delivery status notification that one of our messages failed: its Message-ID, the status code
    # and the recipient it names (``Final-Recipient``).
    bounce_of: str | None = None
    bounce_status: str = ""
    bounce_recipients: list[str] = field(default_factory=list)
    # The first ``Return-Path`` (written by the delivering server): ``<>`` for a real delivery report,
    # which RFC 5321 sends from the null reverse-path; a person's own mail has their address there.
    return_path: str | None = None
    # Why the From header names no single sender we can believe ("" when it does): two From headers, two
    # mailboxes, a malformed or encoded address. Such a mail is never the subject's answer by itself.
    sender_problem: str = ""
    # The ``Authentication-Results`` headers, topmost first (RFC 8601), for ``authenticated``.
    auth_results: list[str] = field(default_factory=list)


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


def content_hash(msg: EmailMessage, raw: bytes) -> str:
    digest = hashlib.sha256()
    for name in IDENTITY_HEADERS:
        for key, value in msg.raw_items():
            if key.lower() == name.lower():
                digest.update(f"{name.lower()}:{' '.join(str(value).split())}\n".encode("utf-8", "replace"))
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    body = raw[min(ends) :] if ends else b""
    digest.update(b"\0" + body.replace(b"\r\n", b"\n").strip())
    return digest.hexdigest()


def _leaves(msg: EmailMessage, problems: list[str]) -> list[EmailMessage]:
    """The message's non-multipart parts, depth first, within ``MAX_DEPTH`` and ``MAX_PARTS``."""
    found: list[EmailMessage] = []
    stack: list[tuple[EmailMessage, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        if not part.is_multipart() or part.get_content_type() == "message/delivery-status":
            if len(found) >= MAX_PARTS:
                problems.append(f"The message has more than {MAX_PARTS} parts: the rest is not read in.")
                break
            found.append(part)
            continue
        if depth >= MAX_DEPTH:
            problems.append(f"Parts nested more than {MAX_DEPTH} deep are not read in.")
            continue
        children = part.get_payload()
        if isinstance(children, list):
            stack.extend((child, depth + 1) for child in reversed(children) if isinstance(child, EmailMessage))
    return found


def bounce(msg: EmailMessage) -> tuple[str | None, str, list[str]]:
    """(Message-ID of the message that failed, its status code, the failed recipients as the report names
    them: ``Original-Recipient`` and ``Final-Recipient``) for a delivery status notification (RFC 3464:
    ``multipart/report; report-type=delivery-status`` with an ``Action: failed`` recipient); (None, "", [])
    for anything else, a delay or a success notice included."""
    if msg.get_content_type() != "multipart/report":
        return None, "", []
    status, original, recipients = "", None, []
    for part in msg.iter_parts():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            blocks = part.get_payload()
            for block in blocks if isinstance(blocks, list) else []:
                if isinstance(block, EmailMessage) and str(block.get("Action") or "").strip().lower() == "failed":
                    status = clean_line(str(block.get("Status") or "5.0.0"), 16)
                    for field_name in ("Original-Recipient", "Final-Recipient"):
                        _, _, value = str(block.get(field_name) or "").partition(";")  # "rfc822; user@host"
                        address = parseaddr(value.strip())[1].strip().lower()
                        if "@" in address:
                            recipients.append(address)
        elif ctype == "text/rfc822-headers" and isinstance(part, EmailMessage):
            headers = message_from_bytes(_decoded(part).encode("utf-8", "replace"), policy=policy.default)
            assert isinstance(headers, EmailMessage)
            original = next(iter(message_ids(_header(headers, "Message-ID"))), None)
        elif ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], EmailMessage):
                original = next(iter(message_ids(_header(inner[0], "Message-ID"))), None)
    return (original, status, recipients) if status and original else (None, "", [])


def sender(msg: EmailMessage) -> tuple[str, str | None, str]:
    """(display name, address, problem) of the From header.

    The address is believed only when the header is unambiguous: one From header naming one mailbox,
    parsed without defects, whose address stands in the header as sent (not made by decoding an encoded
    word, which RFC 2047 forbids in an address). Otherwise ``problem`` says why, and the address is the
    one a lenient parser reads (for staff and for erasure, never for threading)."""
    froms = [value for key, value in msg.raw_items() if key.lower() == "from"]
    name, lenient = parseaddr(_header(msg, "From"))
    fallback = lenient.strip().lower() if lenient and "@" in lenient and len(lenient) <= 254 else None
    if len(froms) != 1:
        return clean_line(name, 200), fallback, "The mail has more than one From header." if froms else "No From."
    raw = " ".join(str(froms[0]).split()).lower()
    try:
        header = msg["From"]
        addresses = list(header.addresses)
        defects = list(header.defects)
        grouped = any(group.display_name is not None for group in header.groups)
    except (ValueError, TypeError, IndexError, AttributeError, LookupError):
        return clean_line(name, 200), fallback, "The From header cannot be read."
    if len(addresses) != 1 or grouped:
        return clean_line(name, 200), fallback, "The From header names more than one sender, or a group."
    address = (addresses[0].addr_spec or "").strip().lower()
    if defects or "@" not in address or len(address) > 254 or address not in raw or raw.count("@") != 1:
        return clean_line(name, 200), fallback, "The From header is malformed or ambiguous."
    return clean_line(addresses[0].display_name, 200), address, ""


def _results(header: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]] | None:
    """(authserv-id, [(method, result, {"ptype.property": value})]) of one ``Authentication-Results``
    header, read by ``authres`` (RFC 8601's grammar: comments, quoted strings and ``;`` inside them are
    text, never a verdict); None when it does not parse."""
    try:
        parsed = authres.AuthenticationResultsHeader.parse_value(header)
    except Exception:  # noqa: BLE001 - authres raises its own and the parser's errors alike
        return None
    verdicts = [
        (
            str(r.method).lower(),
            str(r.result).lower(),
            {f"{p.type}.{p.name}".lower(): str(p.value).lower() for p in r.properties},
        )
        for r in parsed.results
    ]
    return str(parsed.authserv_id).lower(), verdicts


def _aligned(domain: str, signer: str) -> bool:
    return bool(signer) and "." in signer and (domain == signer or domain.endswith("." + signer))


def authenticated(results: list[str], authserv_id: str, from_addr: str | None) -> bool:
    """Whether our receiving server vouched for the From domain (RFC 8601 ``Authentication-Results``).

    With ``authserv_id`` (``MAIL_AUTHSERV_ID``: the id our own server writes), only the topmost header
    bearing it counts (a sender can write headers too, and our server removes or precedes any claiming
    its id), and the mail must pass DMARC for the From domain itself, or DKIM signed by that domain.
    Without it, no header can be told from a forged one, so none makes a mail more trusted, and a failure
    reported by any of them (DMARC failed, or SPF and DKIM both failed), or a header that does not parse,
    is believed: only the attacker would forge one. Either way any failure is final."""
    domain = (from_addr or "").rpartition("@")[2].lower()
    read = [_results(r) for r in results]
    if authserv_id:
        ours = [r for r in read if r is not None and r[0] == authserv_id.lower()]
        if not ours or not domain:
            return False
        verdicts = ours[0][1]
        if any(method == "dmarc" and result in ("fail", "temperror", "permerror") for method, result, _ in verdicts):
            return False
        for method, result, props in verdicts:
            if method == "dmarc" and result == "pass" and props.get("header.from") == domain:
                return True
            if method == "dkim" and result == "pass" and _aligned(domain, props.get("header.d", "")):
                return True
        return False
    for found in read:
        if found is None:
            return False
        outcomes: dict[str, set[str]] = {}
        for method, result, _ in found[1]:
            outcomes.setdefault(method, set()).add(result)
        if "fail" in outcomes.get("dmarc", set()):
            return False
        if "fail" in outcomes.get("spf", set()) and "fail" in outcomes.get("dkim", set()):
            return False
    return True


def parse_mail(raw: bytes) -> ParsedMail:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    found_ids = message_ids(_header(msg, "Message-ID"))
    message_id = found_ids[0] if found_ids else None
    digest = hashlib.sha256(message_id.lower().encode() if message_id else raw).hexdigest()
    name, addr, sender_problem = sender(msg)
    # Only what the sender addressed: Delivered-To and its kind are headers anyone can write into a mail.
    recipients = [
        a.strip().lower() for header in ("To", "Cc") for _, a in getaddresses([_header(msg, header)]) if a and "@" in a
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
        # not "list": a forwarder or list a person replies through adds it to the person's own mail
        or _header(msg, "Precedence").strip().lower() in ("bulk", "junk", "auto_reply")
        or msg.get_content_type() == "multipart/report"
    )
    text_body, html_body, attachments = None, None, []
    problems: list[str] = []
    for part in _leaves(msg, problems):
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
    try:
        bounce_of, bounce_status, bounce_recipients = bounce(msg)
    except (ValueError, TypeError, IndexError, AttributeError, LookupError):
        bounce_of, bounce_status, bounce_recipients = None, "", []
    if sender_problem:
        problems.append(sender_problem + " It is never taken as the subject's answer by itself.")
    html_only = text_body is None and html_body is not None
    text = text_body if text_body is not None else html_to_text(html_body or "")
    return ParsedMail(
        message_id=message_id,
        message_id_hash=digest,
        from_addr=addr,
        from_name=name,
        subject=clean_line(_header(msg, "Subject"), 254),
        date=date,
        recipients=recipients,
        in_reply_to=message_ids(_header(msg, "In-Reply-To")),
        references=message_ids(_header(msg, "References")),
        text=_UNSAFE.sub("", text.replace("\r\n", "\n")).strip(),
        html_only=html_only,
        auto_submitted=auto,
        attachments=attachments,
        content_hash=content_hash(msg, raw),
        problems=problems,
        bounce_of=bounce_of,
        bounce_status=bounce_status,
        bounce_recipients=bounce_recipients,
        return_path=next((" ".join(str(v).split()) for k, v in msg.raw_items() if k.lower() == "return-path"), None),
        sender_problem=sender_problem,
        auth_results=[
            " ".join(str(v).split())[:2000].lower() for k, v in msg.raw_items() if k.lower() == "authentication-results"
        ][:20],
    )


ATTRIBUTION = re.compile(r"^(On .{4,200} wrote:|-{2,} ?Original Message ?-{2,}|From: .+)$", re.IGNORECASE)


def without_quote(text: str) -> str:
    """The new part of a reply: cut at the first attribution line ("On ... wrote:") or quoted block
    that runs to the end of the message (the quote is our own message, which the thread has already).
    One pass from the end marks where only quoted lines follow, so the cost is linear in the text."""
    lines = text.splitlines()
    # quoted_after[i]: every non-blank line after line i is quoted
    quoted_after = [True] * (len(lines) + 1)
    for i in range(len(lines) - 1, -1, -1):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        quoted_after[i] = quoted_after[i + 1] and (not following.strip() or following.lstrip().startswith(">"))
    for i, line in enumerate(lines):
        if not quoted_after[i]:
            continue
        if ATTRIBUTION.match(line.strip()) or line.lstrip().startswith(">"):
            head = "\n".join(lines[:i]).strip()
            return head or text
    return text
