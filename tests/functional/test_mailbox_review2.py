"""Review of the mailbox fixes (issue 14, commits 2dbe4fc and 7827282): bypasses found by a penetration
test and a data-protection audit. Each test is a confirmed finding, written as the rule the product should
keep; they fail on 7827282. Same real parts as ``test_mailbox.py``: a private dovecot per test, the real
database, real attachment files. (Pure parsing findings: ``tests/unit/test_mailbox_parse_review2.py``.)"""

from __future__ import annotations

import base64
import quopri
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from app.dsr.attachments import read_attachment
from app.extensions import db
from app.mail.models import OutgoingMail
from app.mailbox.models import InboundMail
from app.mailbox.services import read_mailbox
from tests.functional.admin_support import staff_client
from tests.functional.test_mailbox import app_config, mail, multipart, waiting_request  # noqa: F401
from tests.functional.test_mailbox_review import delivered, dsn, still_waiting

OURS = "mx.chatgpttech.test"


@pytest.fixture
def officer(app):
    return staff_client(app, "officer")


def test_review2_a_forged_reply_with_a_quoted_envelope_sender_is_not_vouched_for(app, officer, imap_server):
    """Finding A (high): with MAIL_AUTHSERV_ID set, our server's own header says the mail failed SPF and
    DMARC, but the envelope sender mallory chose (``"x;dmarc=pass"@evil.test``, a legal quoted local part)
    is cut at its ";" into a verdict of its own: the forged mail is threaded as the subject's answer."""
    app.config["MAIL_AUTHSERV_ID"] = OURS
    client, _ = officer
    dsr, question = waiting_request(client, email="sam@example.com")
    imap_server.append(
        mail(
            body="Sam here: I withdraw the request",
            sender="Sam <sam@example.com>",
            headers={
                "Authentication-Results": f'{OURS}; spf=fail smtp.mailfrom="x;dmarc=pass"@evil.test; dkim=none; '
                "dmarc=fail (p=reject) header.from=example.com",
                "In-Reply-To": question.message_id,
            },
        )
    )
    read_mailbox()
    still_waiting(dsr.id)


def test_review2_without_our_id_a_reported_dmarc_failure_cannot_be_overwritten(app, officer, imap_server):
    """Finding C (high, the default configuration): the failure our server reported is believed only until
    a later ``dmarc=pass`` in the same header (the envelope sender ``dmarc=pass@evil.test``) overwrites it."""
    client, _ = officer
    dsr, question = waiting_request(client, email="sam@example.com")
    imap_server.append(
        mail(
            body="Sam here: I withdraw the request",
            sender="Sam <sam@example.com>",
            headers={
                "Authentication-Results": f'{OURS}; dkim=none; dmarc=fail reason="No valid SPF, No valid DKIM" '
                f"header.from=example.com (policy=reject); spf=fail ({OURS}: domain of dmarc=pass@evil.test "
                "does not designate 192.0.2.1 as permitted sender) smtp.mailfrom=dmarc=pass@evil.test",
                "In-Reply-To": question.message_id,
            },
        )
    )
    read_mailbox()
    still_waiting(dsr.id)


def test_review2_a_bounce_written_by_the_subject_does_not_mark_our_delivered_mail_bounced(
    app, officer, imap_server, smtp_sink
):
    """Finding F (medium): the recipient check only stops a report naming *another* address. Whoever can
    forge a bounce (the subject, anyone with a forward: both know our Message-ID and the To address) names
    the right one, from their own mailbox, and our record of a delivered message becomes "not delivered"
    (an officer then treats the subject as unreachable; the record of what was sent changes). A real
    report comes from the null reverse-path (MAILER-DAEMON), not from a person's address; better, bind it
    to a VERP return path only we can make."""
    client, _ = officer
    dsr, question = waiting_request(client, email="sam@example.com")
    question = delivered(app, smtp_sink, question)
    imap_server.append(dsn(question.message_id, "sam@example.com", sender="Sam <sam@example.com>"))
    read_mailbox()
    db.session.expire_all()
    sent = db.session.get(OutgoingMail, question.id)
    assert sent.status == "sent", f"a bounce from the subject's own address made our mail {sent.status!r}"


def _our_status_mail(token: str) -> bytes:
    """Our status mail as the mail job writes it (``app.mail.backends``): long lines, so quoted-printable
    with soft line breaks inside the link."""
    msg = EmailMessage()
    msg["From"] = "privacy@chatgpttech.test"
    msg["To"] = "sam@example.com"
    msg["Subject"] = "Your request"
    msg.set_content(f"Hello Sam,\n\nSee your request at https://portal.chatgpttech.test/requests/status/{token}\n")
    msg.add_alternative(
        f'<p><a href="https://portal.chatgpttech.test/requests/status/{token}">status</a></p>', subtype="html"
    )
    return msg.as_bytes()


@pytest.mark.parametrize("declared", ["application/octet-stream", "text/plain"])
def test_review2_a_forwarded_eml_file_keeps_no_working_token(app, officer, imap_server, declared):
    """Finding G (medium): a subject who attaches our mail as a saved ``.eml`` file (proof of what we sent)
    gives us its raw source: sniffed as text, it is redacted as it stands, but its parts are
    quoted-printable (soft breaks split the 43-character token into pieces under 32) or base64, so the
    status link's token is stored, and served to officers, in working form."""
    token = "Q" * 43
    eml = _our_status_mail(token)
    assert b"=\n" in eml and token.encode() not in eml  # the token is split by soft line breaks
    imap_server.append(multipart([("our-mail.eml", declared, eml)], text="Here is the mail you sent me."))
    read_mailbox()
    item = db.session.execute(select(InboundMail)).scalar_one()
    stored = [read_attachment(f["key"]) or b"" for f in item.attachments or []]
    assert stored, item.refused
    for data in stored:
        decoded = quopri.decodestring(data)
        assert token.encode() not in decoded, "the forwarded .eml keeps the status link's token (QP)"
        assert base64.b64encode(token.encode())[:40] not in data


def test_review2_erasure_reaches_mail_read_before_migration_0010_under_another_spelling(app, officer, imap_server):
    """Finding H (medium, data protection): migration 0010 adds ``mailbox_hash`` but fills it for no
    existing row, and erasure matches other spellings by that column alone: mail read before the upgrade
    from ``s.am+news@googlemail.com`` (still waiting in the mailbox, its text and files kept) survives the
    erasure of sam@gmail.com. Here the row is made as 0010 leaves an old one: ``mailbox_hash`` empty."""
    from app.dsr.minimise import erase_portal_copies
    from tests.factories import make_request

    imap_server.append(
        mail(subject="Delete me", body="My address is s.am+news@googlemail.com", sender="s.am+news@googlemail.com")
    )
    read_mailbox()
    item = db.session.execute(select(InboundMail)).scalar_one()
    assert item.from_addr == "s.am+news@googlemail.com" and item.status == "new"
    item.mailbox_hash = None  # as every row read before migration 0010
    db.session.commit()
    deletion = make_request("completed", "deletion", email="sam@gmail.com")
    erase_portal_copies(deletion, {"sam@gmail.com"})
    db.session.commit()
    db.session.expire_all()
    item = db.session.get(InboundMail, item.id)
    assert item.body_text is None and item.from_addr is None, "erasure left mail read before the upgrade"


def test_review2_a_long_mail_added_by_staff_is_attached_whole_as_the_thread_says(app, officer, imap_server):
    """Finding I (low, integrity): an intake item's text is cut at TEXT_LIMIT (100,000 characters) when it
    is read; when an officer later adds it to a thread (or makes a request of it), ``_fit`` attaches that
    cut text as full-text.txt under a note saying the *whole* text is attached: what the subject wrote
    after 100,000 characters is gone, and the thread says otherwise. Keep the whole text as a file when
    the mail is read (within ATTACHMENT_MAX_BYTES), or make the note say what was lost."""
    from app.audit import Actor
    from app.dsr.models import RequestMessage
    from app.mailbox.services import add_to_thread

    client, user = officer
    dsr, question = waiting_request(client, email="sam@example.com")
    body = "\n".join(f"line {i}: " + "x" * 60 for i in range(2000)) + "\nTHE END: my real answer is no."
    assert len(body) > 100_000
    imap_server.append(
        mail(body=body, sender="Sam at work <sam@work.example>", headers={"In-Reply-To": question.message_id})
    )
    read_mailbox()
    item = db.session.execute(select(InboundMail)).scalar_one()
    assert item.status == "new" and item.related_request_id == dsr.id
    add_to_thread(item.id, Actor.staff(db.session.merge(user)))
    db.session.commit()
    files = (
        db.session.execute(
            select(RequestMessage).where(
                RequestMessage.request_id == dsr.id, RequestMessage.attachment_name == "full-text.txt"
            )
        )
        .scalars()
        .all()
    )
    assert len(files) == 1
    whole = read_attachment(files[0].attachment_key).decode()
    assert "THE END: my real answer is no." in whole, "full-text.txt, 'the whole text', lacks the mail's end"
