"""The privacy mailbox against a real IMAP server (a private dovecot, ``tests/imap_fixtures.py``): new mail
becomes an intake item staff turn into a request; a reply joins its request's thread, matched only by
its reply address or the Message-IDs we sent; every message is processed once; attachments are kept
within their limits; HTML is never shown as HTML."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import func, select

from app.audit.models import AuditEvent
from app.dsr.attachments import attachment_dir
from app.dsr.models import DsrRequest, RequestMessage
from app.extensions import db
from app.mail.backends import build_message
from app.mail.models import OutgoingMail
from app.mailbox.models import InboundMail
from app.mailbox.services import read_mailbox
from app.models_base import utcnow
from tests.factories import make_request
from tests.functional._fulfil import run_jobs
from tests.functional.admin_support import act, fresh_g, staff_client  # noqa: F401

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def app_config(app_config, imap_server, tmp_path):
    return {
        **app_config,
        "MAIL_IMAP_URL": imap_server.url,
        "PRIVACY_CONTACT": "privacy@chatgpttech.test",
        "ATTACHMENT_DIR": str(tmp_path / "attachments"),
    }


@pytest.fixture
def officer(app):
    return staff_client(app, "officer")


def mail(
    subject: str = "Please delete my data",
    body: str = "Hello, please delete everything you hold about me.",
    *,
    sender: str = "Wren Writer <wren@example.com>",
    to: str = "privacy@chatgpttech.test",
    headers: dict | None = None,
    date: datetime | None = None,
    message_id: str | None = None,
) -> str:
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(date or utcnow())}",
        f"Message-ID: {message_id or f'<{utcnow().timestamp()}.{id(body)}@example.com>'}",
        "MIME-Version: 1.0",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if not any(k.lower() == "content-type" for k in headers or {}):
        lines.append("Content-Type: text/plain; charset=utf-8")
    return "\n".join(lines) + "\n\n" + body + "\n"


def multipart(parts: list[tuple[str, str, bytes]], text: str = "See the attached files.", **kw) -> str:
    """A mixed message: a text part, then (filename, declared type, bytes) attachments in base64."""
    import base64

    boundary = "b0undary"
    body = [f"--{boundary}", "Content-Type: text/plain; charset=utf-8", "", text]
    for name, ctype, data in parts:
        encoded = base64.encodebytes(data).decode()
        body += [
            f"--{boundary}",
            f"Content-Type: {ctype}",
            f'Content-Disposition: attachment; filename="{name}"',
            "Content-Transfer-Encoding: base64",
            "",
            encoded,
        ]
    body.append(f"--{boundary}--")
    headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"', **kw.pop("headers", {})}
    return mail(body="\n".join(body), headers=headers, **kw)


def count(model, *where) -> int:
    return db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def waiting_request(client, **kw) -> tuple[DsrRequest, OutgoingMail]:
    """A request the officer asked a question about: on hold, waiting for the subject's answer."""
    dsr = make_request("pending_review", **kw)
    act(client, dsr, "request_info", message="Which API key prefix do you use?")
    question = db.session.execute(
        select(OutgoingMail).where(OutgoingMail.request_id == dsr.id, OutgoingMail.template == "admin_info_requested")
    ).scalar_one()
    dsr = db.session.get(DsrRequest, dsr.id)
    assert dsr.status == "on_hold" and dsr.waiting_since is not None
    return dsr, question


def test_new_mail_becomes_an_intake_item_that_staff_turn_into_a_request(app, officer, imap_server, redis_conn):
    client, _ = officer
    sent = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    imap_server.append(mail(date=sent - timedelta(minutes=2)), arrived=sent)  # sent, then received
    from app.queue import PendingJob, enqueue_now

    enqueue_now(PendingJob(queue="maintenance", func="workers.mailbox.read_mailbox_job"), redis_conn)
    run_jobs(redis_conn)  # the cron job, run by the real worker
    item = db.session.execute(select(InboundMail)).scalar_one()
    assert item.status == "new" and item.from_addr == "wren@example.com"
    assert item.received_at == sent - timedelta(minutes=2)  # the mail's own date
    assert imap_server.uids() == []  # the portal holds it now: the server's copy is gone
    listing = client.get("/admin/mailbox").get_data(as_text=True)
    assert "Please delete my data" in listing and "Wren Writer" in listing
    form = client.get(f"/admin/requests/new?mail={item.id}").get_data(as_text=True)
    sent = item.received_at
    assert 'value="wren@example.com"' in form and sent.strftime("%Y-%m-%dT%H:%M:%S") in form
    resp = client.post_form(
        "/admin/requests/new",
        {
            "request_type": "deletion",
            "email": "wren@example.com",
            "full_name": "Wren Writer",
            "jurisdiction": "gdpr",
            "channel": "email",
            "received_at": sent.strftime("%Y-%m-%dT%H:%M:%S"),
            "details": "By email.",
            "verification": "link",
            "inbound_mail_id": str(item.id),
        },
        page=f"/admin/requests/new?mail={item.id}",
    )
    assert resp.status_code == 303, resp.get_data(as_text=True)
    dsr = db.session.execute(select(DsrRequest)).scalar_one()
    assert dsr.channel == "email" and dsr.received_at == sent and dsr.request_type == "deletion"
    db.session.expire_all()
    item = db.session.get(InboundMail, item.id)
    assert item.status == "converted" and item.request_id == dsr.id and item.body_text is None
    [original] = db.session.execute(select(RequestMessage).where(RequestMessage.request_id == dsr.id)).scalars()
    assert original.kind == "original_mail" and "delete everything" in original.body
    assert "delete everything" in client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    # handled once: converting again or dismissing now is refused
    assert client.get("/admin/mailbox").get_data(as_text=True).count("Please delete my data") == 0


def test_a_new_mail_can_be_dismissed_and_only_by_an_officer(app, officer, imap_server):
    client, _ = officer
    imap_server.append(mail(subject="Cheap watches"))
    read_mailbox()
    item = db.session.execute(select(InboundMail)).scalar_one()
    auditor, _ = staff_client(app, "auditor")
    token = auditor.csrf_from("/admin/")
    # Unsorted mail is anyone's personal data: officers handle it, an auditor does not read it.
    for url in ("/admin/mailbox", f"/admin/mailbox/{item.id}"):
        assert auditor.get(url).status_code == 403
    assert "/admin/mailbox" not in auditor.get("/admin/").get_data(as_text=True)
    assert (
        auditor.post(f"/admin/mailbox/{item.id}/dismiss", data={"csrf_token": token, "reason": "spam"}).status_code
        == 403
    )
    resp = client.post_form(f"/admin/mailbox/{item.id}/dismiss", {"reason": "spam"}, page=f"/admin/mailbox/{item.id}")
    assert resp.status_code == 303
    db.session.expire_all()
    item = db.session.get(InboundMail, item.id)
    assert item.status == "dismissed" and item.dismiss_reason == "spam" and item.handled_at is not None
    assert count(AuditEvent, AuditEvent.event == "mailbox.item_dismissed") == 1
    from tests.functional.test_observability import samples

    metrics = samples(client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_data(as_text=True))
    assert metrics[("dsr_inbound_mail", (("status", "dismissed"),))] == 1


def test_a_reply_is_threaded_to_its_request_and_nothing_else(app, officer, imap_server):
    client, _ = officer
    dsr, question = waiting_request(client, email="sam@example.com")
    other, _ = waiting_request(client, email="other@example.com")
    assert (
        question.reply_to
        and question.reply_to.startswith("privacy+")
        and question.reply_to.endswith("@chatgpttech.test")
    )
    assert build_message(question)["Reply-To"] == question.reply_to  # what the subject's client replies to
    # 1. a reply by In-Reply-To, quoting our message (with its status link)
    quoted = "\n".join(f"> {line}" for line in question.body_text.splitlines())
    imap_server.append(
        mail(
            subject=f"Re: {question.subject}",
            body=f"My prefix is sk-abc1.\n\nOn Tue, Sam wrote:\n{quoted}",
            sender="sam@example.com",
            headers={"In-Reply-To": question.message_id, "References": question.message_id},
        )
    )
    # 2. a reply-looking mail: same subject, the request's reference, no header of ours: an intake item
    imap_server.append(
        mail(subject=f"Re: {question.subject}", body=f"About {dsr.reference}: ignore the above.", sender="x@evil.test")
    )
    summary = read_mailbox()
    assert summary["threaded"] == 1 and summary["intake"] == 1
    db.session.expire_all()
    dsr, other = db.session.get(DsrRequest, dsr.id), db.session.get(DsrRequest, other.id)
    assert dsr.status == "pending_review" and dsr.waiting_since is None  # back to review, by the state service
    assert other.status == "on_hold"  # untouched
    answers = [m for m in dsr.messages if m.direction == "in"]
    assert [(m.via, m.body) for m in answers] == [("email", "My prefix is sk-abc1.")]
    assert not [m for m in other.messages if m.direction == "in"]
    threaded, intake = db.session.execute(select(InboundMail).order_by(InboundMail.uid)).scalars()
    assert threaded.status == "threaded" and threaded.matched_by == "in_reply_to" and threaded.request_id == dsr.id
    assert intake.status == "new" and intake.request_id is None and intake.related_request_id is None
    status_changes = db.session.execute(
        select(AuditEvent).where(AuditEvent.request_id == dsr.id, AuditEvent.event == "request.status_changed")
    ).scalars()
    assert [e.data.get("reason_code") for e in status_changes][-1] == "answered"
    # 3. a reply to the request's own address, without any In-Reply-To (some clients drop it)
    imap_server.append(mail(subject="my answer", body="Also sk-abc2.", sender="sam@example.com", to=question.reply_to))
    assert read_mailbox()["threaded"] == 1
    db.session.expire_all()
    assert [m.body for m in db.session.get(DsrRequest, dsr.id).messages if m.direction == "in"][-1] == "Also sk-abc2."
    page = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert "My prefix is sk-abc1." in page and "reply address" in page


def test_a_reply_to_a_closed_request_or_to_staff_mail_is_not_threaded(app, officer, imap_server):
    client, _ = officer
    dsr, question = waiting_request(client)
    from app.audit import Actor
    from app.dsr.services import staff_cancel

    staff_cancel(db.session.get(DsrRequest, dsr.id), Actor.system(), "duplicate")
    db.session.commit()
    imap_server.append(mail(body="late answer", headers={"In-Reply-To": question.message_id}))
    read_mailbox()
    item = db.session.execute(select(InboundMail)).scalar_one()
    assert item.status == "new" and item.related_request_id == dsr.id and item.body_text == "late answer"
    assert not [m for m in db.session.get(DsrRequest, dsr.id).messages if m.direction == "in"]


def test_each_message_is_processed_once_however_often_the_job_runs(app, officer, imap_server):
    app.config["MAIL_IMAP_KEEP"] = True  # messages stay on the server: every run sees them again
    client, _ = officer
    dsr, question = waiting_request(client, email="wren@example.com")
    imap_server.append(mail(body="answer", headers={"In-Reply-To": question.message_id}))
    imap_server.append(mail(subject="a new request"))
    first, second = read_mailbox(), read_mailbox()
    assert first["new"] == 2 and second["new"] == 0
    assert imap_server.uids() == [1, 2]
    assert count(InboundMail) == 2
    assert count(RequestMessage, RequestMessage.request_id == dsr.id, RequestMessage.direction == "in") == 1
    assert count(AuditEvent, AuditEvent.event == "request.subject_answered") == 1
    # the same message again under another UID (copied back, or a new UIDVALIDITY): its Message-ID matches
    raw = mail(body="answer", headers={"In-Reply-To": question.message_id}, message_id="<same@example.com>")
    imap_server.append(raw)
    imap_server.append(raw)
    again = read_mailbox()
    assert again["new"] == 1 and again["duplicate"] == 1
    assert count(InboundMail) == 4  # every message on the server has its row: the copy's says "duplicate"
    copy = db.session.execute(select(InboundMail).where(InboundMail.status == "duplicate")).scalar_one()
    assert copy.duplicate_of_id is not None and copy.body_text is None and copy.from_addr is None


def test_a_killed_run_is_finished_by_the_next_and_two_runs_at_once_process_each_message_once(app, imap_server):
    from app.mailbox.imap import Mailbox, parse_imap_url
    from app.mailbox.services import record_message

    for i in range(6):
        imap_server.append(mail(subject=f"request {i}", message_id=f"<m{i}@example.com>"))
    # A run killed after committing the first message and before deleting it from the server:
    url = parse_imap_url(app.config["MAIL_IMAP_URL"])
    with Mailbox(url, readonly=True) as box:
        record_message(url.name, box.uid_validity, box.fetch(1, 10**6))
    db.session.commit()
    # Two runs at once, each in its own app context and database session (as two workers would be):
    results, errors = [], []

    def run():
        try:
            with app.app_context():
                results.append(read_mailbox())
                db.session.remove()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    db.session.expire_all()
    assert sorted(db.session.execute(select(InboundMail.uid)).scalars()) == [1, 2, 3, 4, 5, 6]
    assert sum(r["new"] for r in results) == 5  # message 1 was not processed again
    assert count(AuditEvent, AuditEvent.event == "mailbox.intake_item") == 6
    assert imap_server.uids() == []


def test_oversize_and_forbidden_attachments_are_refused_and_the_rest_kept(app, officer, imap_server):
    app.config["ATTACHMENT_MAX_BYTES"] = 1000
    client, _ = officer
    dsr, question = waiting_request(client, email="wren@example.com")
    imap_server.append(
        multipart(
            [
                ("passport.png", "image/png", PNG),
                ("big.pdf", "application/pdf", b"%PDF-1.4 " + b"x" * 2000),
                ("tool.exe", "application/x-msdownload", b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 50),
                ("fake.pdf", "application/pdf", b"MZ\x90\x00 an executable, declared a PDF"),
            ],
            headers={"In-Reply-To": question.message_id},
        )
    )
    read_mailbox()
    db.session.expire_all()
    item = db.session.execute(select(InboundMail)).scalar_one()
    assert {f["name"] for f in item.refused} == {"big.pdf", "tool.exe", "fake.pdf"}
    files = [m for m in db.session.get(DsrRequest, dsr.id).messages if m.attachment_key]
    assert [(m.attachment_name, m.attachment_type, m.attachment_size) for m in files] == [
        ("passport.png", "image/png", len(PNG))
    ]
    assert sorted(p.name for p in attachment_dir().iterdir()) == [files[0].attachment_key]
    page = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert "big.pdf" in page and "refused" in page
    download = client.get(f"/admin/requests/{dsr.reference}/messages/{files[0].id}/attachment")
    assert download.status_code == 200 and download.data == PNG


def test_html_only_mail_is_kept_as_text_and_never_rendered_as_html(app, officer, imap_server):
    client, _ = officer
    html = (
        "<html><head><style>p{color:red}</style><script>alert('head')</script></head><body>"
        "<p>Please <b>delete</b> my data &amp; account.</p><script>alert('xss')</script>"
        '<img src="x" onerror="alert(1)"><a href="javascript:alert(2)">click</a></body></html>'
    )
    imap_server.append(mail(body=html, headers={"Content-Type": "text/html; charset=utf-8"}))
    read_mailbox()
    item = db.session.execute(select(InboundMail)).scalar_one()
    assert item.html_only is True
    assert "Please delete my data & account." in item.body_text
    for raw in ("<script", "alert", "onerror", "<img", "javascript:", "color:red"):
        assert raw not in item.body_text
    page = client.get(f"/admin/mailbox/{item.id}").get_data(as_text=True)
    assert "Please delete my data &amp; account." in page
    assert "<script>alert" not in page and "onerror" not in page and "<b>delete</b>" not in page


def test_erasure_and_minimisation_reach_inbound_mail(app, officer, imap_server):
    from app.dsr.minimise import erase_portal_copies, minimise_request

    client, _ = officer
    dsr, question = waiting_request(client, email="gone@example.com")
    imap_server.append(multipart([("id.png", "image/png", PNG)], sender="gone@example.com", subject="new one"))
    imap_server.append(mail(body="my answer", sender="gone@example.com", headers={"In-Reply-To": question.message_id}))
    read_mailbox()
    intake, reply = db.session.execute(select(InboundMail).order_by(InboundMail.uid)).scalars()
    assert intake.status == "new" and reply.status == "threaded"
    key = intake.attachments[0]["key"]
    deletion = make_request("completed", "deletion", email="gone@example.com")
    erase_portal_copies(deletion, {"gone@example.com"})
    db.session.commit()
    db.session.expire_all()
    intake = db.session.get(InboundMail, intake.id)
    assert intake.minimised_at is not None and intake.from_addr is None and intake.body_text is None
    assert intake.subject is None and intake.attachments is None and intake.message_id_hash  # still known
    assert intake.status == "dismissed" and intake.dismiss_reason == "subject_erased"
    assert not (attachment_dir() / key).exists()
    minimise_request(db.session.get(DsrRequest, dsr.id))
    db.session.commit()
    reply = db.session.get(InboundMail, reply.id)
    assert reply.minimised_at is not None and reply.from_addr is None and reply.subject is None
    # minimised, the records still keep the messages from being read in again
    app.config["MAIL_IMAP_KEEP"] = True
    assert read_mailbox()["new"] == 0


def test_automatic_replies_and_other_senders_are_shown_to_staff_and_change_nothing(app, officer, imap_server):
    client, _ = officer
    dsr, question = waiting_request(client, email="sam@example.com")
    imap_server.append(
        mail(
            subject="Out of office",
            body="I am away until Monday.",
            sender="sam@example.com",
            headers={"In-Reply-To": question.message_id, "Auto-Submitted": "auto-replied"},
        )
    )
    read_mailbox()
    db.session.expire_all()
    dsr = db.session.get(DsrRequest, dsr.id)
    assert dsr.status == "on_hold"  # still waiting for a real answer
    [auto] = [m for m in dsr.messages if m.direction == "in"]
    assert auto.kind == "auto_reply"
    token = client.get(f"/admin/requests/{dsr.reference}")  # staff see it
    assert "I am away until Monday." in token.get_data(as_text=True)
    # a reply from another address waits for staff; an officer who checked it is the subject's adds it
    imap_server.append(mail(body="answer from my work address", sender="sam@work.example", to=question.reply_to))
    read_mailbox()
    db.session.expire_all()
    assert db.session.get(DsrRequest, dsr.id).status == "on_hold"
    item = db.session.execute(select(InboundMail).where(InboundMail.from_addr == "sam@work.example")).scalar_one()
    assert item.status == "new" and item.related_request_id == dsr.id and item.matched_by == "reply_address"
    assert "data-waiting-reply" in client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    page = client.get(f"/admin/mailbox/{item.id}").get_data(as_text=True)
    assert "data-other-sender" in page and "data-add-to-thread" in page
    where = f"/admin/mailbox/{item.id}"
    unconfirmed = client.post_form(f"{where}/thread", {}, page=where)
    assert unconfirmed.status_code == 303
    db.session.expire_all()
    assert db.session.get(InboundMail, item.id).status == "new"
    added = client.post_form(f"{where}/thread", {"confirm": "yes"}, page=where)
    assert added.status_code == 303 and added.headers["Location"].endswith(f"/admin/requests/{dsr.reference}")
    db.session.expire_all()
    dsr = db.session.get(DsrRequest, dsr.id)
    assert dsr.status == "pending_review"
    assert [m.body for m in dsr.messages if m.kind == "answer"] == ["answer from my work address"]
    assert count(AuditEvent, AuditEvent.event == "mailbox.reply_added_by_staff") == 1
    again = client.post_form(f"{where}/thread", {"confirm": "yes"}, page=f"/admin/requests/{dsr.reference}")
    assert again.status_code == 303
    assert count(RequestMessage, RequestMessage.kind == "answer") == 1  # once only


def test_a_message_over_the_size_limit_is_not_read_in_and_stays_on_the_server(app, officer, imap_server):
    app.config["MAIL_IMAP_MAX_BYTES"] = 2000
    client, _ = officer
    dsr, question = waiting_request(client)
    imap_server.append(mail(body="x" * 5000, headers={"In-Reply-To": question.message_id}))
    imap_server.append(mail(subject="small"))
    assert read_mailbox()["new"] == 2
    big = db.session.execute(select(InboundMail).where(InboundMail.too_large.is_(True))).scalar_one()
    assert big.status == "new" and big.body_text == "" and big.related_request_id == dsr.id
    assert imap_server.uids() == [big.uid]  # only the small one was deleted
    assert read_mailbox()["new"] == 0  # and the big one is not read in again
    assert "too large" in client.get(f"/admin/mailbox/{big.id}").get_data(as_text=True)


def test_read_mailbox_command_and_an_unreachable_server(app, imap_server):
    from app.mailbox.imap import MailboxError

    imap_server.append(mail())
    result = app.test_cli_runner().invoke(args=["read-mailbox"])
    assert result.exit_code == 0 and "new: 1" in result.output
    imap_server.stop()
    with pytest.raises(MailboxError) as info:
        read_mailbox()
    assert "mailbox-test-password" not in str(info.value)
    assert count(InboundMail) == 1


def test_a_date_far_before_the_server_received_the_mail_is_not_believed(app, imap_server):
    arrived = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    imap_server.append(mail(date=arrived - timedelta(days=90)), arrived=arrived)
    imap_server.append(mail(subject="from the future", date=utcnow() + timedelta(days=3)))
    read_mailbox()
    old, future = db.session.execute(select(InboundMail).order_by(InboundMail.uid)).scalars()
    assert old.received_at == arrived
    assert future.received_at <= utcnow()


def test_mail_no_one_handled_for_a_day_is_in_the_staff_reminder(app, officer, imap_server):
    from workers.maintenance import deadline_reminders

    imap_server.append(mail(date=utcnow() - timedelta(days=2)))
    read_mailbox()
    assert deadline_reminders() == 0  # read in just now: not yet a day unhandled
    assert deadline_reminders(now=utcnow() + timedelta(days=1, minutes=1)) == 1
    [reminder] = db.session.execute(
        select(OutgoingMail).where(OutgoingMail.template == "fulfil_staff_reminder")
    ).scalars()
    assert "1 mail not handled" in reminder.subject and "/admin/mailbox" in reminder.body_text


def test_the_mailbox_lists_new_mail_oldest_first(app, officer, imap_server):
    client, _ = officer
    now = datetime.now(UTC).replace(microsecond=0)
    imap_server.append(mail(subject="newer letter", date=now - timedelta(hours=1)), arrived=now - timedelta(hours=1))
    imap_server.append(mail(subject="older letter", date=now - timedelta(days=3)), arrived=now - timedelta(days=3))
    read_mailbox()
    page = client.get("/admin/mailbox").get_data(as_text=True)
    assert page.index("older letter") < page.index("newer letter")


def test_a_malformed_mail_does_not_stop_the_mail_after_it(app, imap_server):
    from tests.unit.test_mailbox_parse import BROKEN

    for raw in BROKEN:
        imap_server.append(raw + b"\r\n\r\nbody\r\n")
    imap_server.append(mail(subject="after the broken ones"))
    assert read_mailbox()["new"] == 3
    assert imap_server.uids() == []


# --- the review's findings (pen test and data-protection audit of the mailbox) -----------------------


def test_a_leaked_reply_address_or_message_id_from_another_sender_is_never_the_subjects_answer(
    app, officer, imap_server, client
):
    """A forwarded or CC'd mail of ours carries the request's reply token and Message-ID; whoever holds it
    must not answer for the subject, lift their hold, or write on their status page."""
    staff, _ = officer
    dsr, question = waiting_request(staff, email="sam@example.com")
    imap_server.append(mail(body="I am Sam, here is my passport", sender="mallory@evil.test", to=question.reply_to))
    imap_server.append(
        mail(body="Sam here, cancel it", sender="mallory@evil.test", headers={"In-Reply-To": question.message_id})
    )
    # Delivered-To is written by whoever sends the mail: it names no request, even from the subject's address
    imap_server.append(mail(body="from sam", sender="sam@example.com", headers={"Delivered-To": question.reply_to}))
    summary = read_mailbox()
    assert summary["threaded"] == 0 and summary["intake"] == 3
    db.session.expire_all()
    dsr = db.session.get(DsrRequest, dsr.id)
    assert dsr.status == "on_hold" and dsr.waiting_since is not None  # still waiting for the subject
    assert not [m for m in dsr.messages if m.direction == "in"]
    assert count(AuditEvent, AuditEvent.event == "request.subject_answered") == 0
    leaked, by_header, delivered = db.session.execute(select(InboundMail).order_by(InboundMail.uid)).scalars()
    assert (leaked.status, leaked.related_request_id, leaked.matched_by) == ("new", dsr.id, "reply_address")
    assert (by_header.status, by_header.related_request_id, by_header.matched_by) == ("new", dsr.id, "in_reply_to")
    assert delivered.related_request_id is None and delivered.matched_by is None
    # the subject's status page (the link in our question) shows nothing of it
    import re

    link = re.search(r"https?://[^/\s]+(/requests/\S+)", question.body_text).group(1)
    page = client.get(link, follow_redirects=True)
    assert page.status_code == 200 and dsr.reference in page.get_data(as_text=True)
    assert "passport" not in page.get_data(as_text=True) and "cancel it" not in page.get_data(as_text=True)


def test_a_different_mail_that_reuses_a_message_id_is_read_and_nothing_leaves_the_server_unrecorded(
    app, officer, imap_server
):
    imap_server.append(mail(subject="first", body="my first mail", message_id="<reused@example.com>"))
    assert read_mailbox()["new"] == 1
    imap_server.append(
        mail(
            subject="second",
            body="a different mail under the same id",
            sender="Other <other@example.com>",
            message_id="<reused@example.com>",
        )
    )
    summary = read_mailbox()
    assert summary["new"] == 1 and summary["duplicate"] == 0
    first, second = db.session.execute(select(InboundMail).order_by(InboundMail.uid)).scalars()
    assert second.status == "new" and second.body_text == "a different mail under the same id"
    assert first.message_id_hash == second.message_id_hash and first.content_hash != second.content_hash
    assert imap_server.uids() == []
    # every UID that left the server has its own row
    assert sorted(db.session.execute(select(InboundMail.uid)).scalars()) == [1, 2]


def test_the_same_message_delivered_twice_is_one_intake_item(app, imap_server):
    raw = mail(subject="twice", body="one message", message_id="<twice@example.com>")
    imap_server.append("Received: from a.example by mx1\n" + raw)
    imap_server.append("Received: from b.example by mx2\nDelivered-To: privacy@chatgpttech.test\n" + raw)
    summary = read_mailbox()
    assert summary["new"] == 1 and summary["duplicate"] == 1
    assert count(InboundMail, InboundMail.status == "new") == 1
    assert imap_server.uids() == []


def nested(depth: int) -> str:
    body = "the innermost text"
    for i in range(depth):
        body = f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n{body}\n--b{i}--\n'
    return (
        "From: deep@example.com\nTo: privacy@chatgpttech.test\nSubject: deep\n"
        f"Message-ID: <deep{depth}@example.com>\nMIME-Version: 1.0\n{body}"
    )


def test_a_message_that_fails_in_an_unforeseen_way_waits_for_staff_and_the_mail_behind_it_is_read(
    app, officer, imap_server
):
    client, _ = officer
    imap_server.append(nested(3000))  # Python's own email parser gives up (RecursionError)
    imap_server.append(mail(subject="behind it"))
    summary = read_mailbox()
    assert summary["new"] == 2 and summary["unreadable"] == 1 and summary["intake"] == 1
    bad = db.session.execute(select(InboundMail).where(InboundMail.unreadable.is_(True))).scalar_one()
    assert bad.status == "new" and bad.on_server is True and "RecursionError" in bad.refused[0]["reason"]
    assert imap_server.uids() == [bad.uid]  # left for a person to open in the mailbox
    assert read_mailbox()["new"] == 0  # and not read again every minute
    assert "data-unreadable" in client.get(f"/admin/mailbox/{bad.id}").get_data(as_text=True)
    assert count(AuditEvent, AuditEvent.event == "mailbox.unreadable") == 1


def test_a_full_disk_on_one_message_does_not_stop_the_others(app, imap_server, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the attachment directory should be")
    app.config["ATTACHMENT_DIR"] = str(blocked / "attachments")
    imap_server.append(multipart([("id.png", "image/png", PNG)], subject="with a file"))
    imap_server.append(mail(subject="plain"))
    summary = read_mailbox()
    assert summary["new"] == 2 and summary["unreadable"] == 1
    items = {i.subject: i for i in db.session.execute(select(InboundMail)).scalars()}
    assert items["plain"].status == "new" and not items["plain"].unreadable
    assert list(tmp_path.iterdir()) == [blocked]  # nothing half-written


def test_deep_nesting_and_many_parts_are_read_within_limits(app, imap_server):
    from app.mailbox.parse import MAX_PARTS

    imap_server.append(nested(40))
    many = multipart([(f"f{i}.txt", "text/plain", b"x") for i in range(MAX_PARTS + 20)], subject="many")
    imap_server.append(many)
    assert read_mailbox()["new"] == 2
    deep, wide = db.session.execute(select(InboundMail).order_by(InboundMail.uid)).scalars()
    assert any("nested" in f["reason"] for f in deep.refused)
    assert any(f"more than {MAX_PARTS} parts" in f["reason"] for f in wide.refused)
    assert len(wide.attachments) == MAX_PARTS - 1  # the text part is one of the parts read


def test_only_the_start_of_a_huge_header_is_fetched(app, imap_server):
    from app.mailbox.imap import HEADER_BYTES, Mailbox, parse_imap_url

    junk = "".join(f"X-Junk-{i}: {'y' * 200}\n" for i in range(1500))  # ~300 KB of header
    imap_server.append(mail(subject="huge header", headers={"X-A": "b"}).replace("MIME-Version", junk + "MIME-Version"))
    url = parse_imap_url(app.config["MAIL_IMAP_URL"])
    with Mailbox(url, readonly=True) as box:
        fetched = box.fetch(imap_server.uids()[0], 1000)  # over the limit: only the header is fetched
    assert fetched is not None and fetched.raw is None
    assert len(fetched.header) == HEADER_BYTES and fetched.size > 300_000


def test_erasure_reaches_the_servers_copy_of_mail_that_stayed_there(app, officer, imap_server):
    from app.dsr.minimise import erase_portal_copies

    app.config["MAIL_IMAP_MAX_BYTES"] = 3000
    imap_server.append(mail(body="x" * 5000, sender="gone@example.com", subject="too large"))
    read_mailbox()
    assert len(imap_server.uids()) == 1  # too large to read in: it stays
    app.config["MAIL_IMAP_KEEP"] = True
    imap_server.append(mail(body="kept", sender="gone@example.com", subject="kept on the server"))
    imap_server.append(mail(body="someone else's", sender="stays@example.com", subject="not theirs"))
    read_mailbox()
    assert len(imap_server.uids()) == 3
    deletion = make_request("completed", "deletion", email="gone@example.com")
    erase_portal_copies(deletion, {"gone@example.com"})
    db.session.commit()
    summary = read_mailbox()  # the next run deletes the erased subject's copies, even under MAIL_IMAP_KEEP
    assert summary["erased_copies"] == 2
    remaining = imap_server.uids()
    assert len(remaining) == 1
    stays = db.session.execute(select(InboundMail).where(InboundMail.uid == remaining[0])).scalar_one()
    assert stays.subject == "not theirs" and stays.minimised_at is None
    assert read_mailbox()["new"] == 0


def test_erasure_and_minimisation_reach_mail_related_to_a_request_from_another_address(app, officer, imap_server):
    from app.dsr.minimise import erase_portal_copies, minimise_request

    client, _ = officer
    dsr, question = waiting_request(client, email="gone@example.com")
    imap_server.append(mail(body="from my work address", sender="gone@work.example", to=question.reply_to))
    closed, closed_q = waiting_request(client, email="old@example.com")
    imap_server.append(mail(body="about the old one", sender="old@work.example", to=closed_q.reply_to))
    read_mailbox()
    related, old = db.session.execute(select(InboundMail).order_by(InboundMail.uid)).scalars()
    assert related.related_request_id == dsr.id and old.related_request_id == closed.id
    deletion = make_request("completed", "deletion", email="gone@example.com")
    erase_portal_copies(deletion, {"gone@example.com"})
    db.session.commit()
    db.session.expire_all()
    related = db.session.get(InboundMail, related.id)
    assert related.minimised_at is not None and related.body_text is None and related.from_addr is None
    # minimising a request minimises the mail about it that staff handled
    from app.audit import Actor
    from app.mailbox.services import dismiss

    dismiss(old.id, Actor.system(), "duplicate")
    minimise_request(db.session.get(DsrRequest, closed.id))
    db.session.commit()
    assert db.session.get(InboundMail, old.id).body_text is None


def test_mail_attachments_download_safely_and_text_files_lose_their_tokens(app, officer, imap_server):
    client, _ = officer
    note = b"Forwarded: your status link https://portal.example/requests/status/" + b"A" * 43 + b"\n"
    imap_server.append(multipart([("Ausweis \u00fcber.png", "image/png", PNG), ("fwd.txt", "text/plain", note)]))
    read_mailbox()
    item = db.session.execute(select(InboundMail)).scalar_one()
    png = client.get(f"/admin/mailbox/{item.id}/attachments/1")
    assert png.status_code == 200 and png.data == PNG
    disposition = png.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''Ausweis%20%C3%BCber.png" in disposition
    assert png.headers["X-Content-Type-Options"] == "nosniff"
    assert png.headers["Content-Type"] == "application/octet-stream" and png.headers["Cache-Control"] == "no-store"
    text = client.get(f"/admin/mailbox/{item.id}/attachments/2").data
    assert b"A" * 43 not in text and b"Forwarded: your status link" in text


def test_a_request_made_from_a_mail_cannot_be_dated_after_the_mail_arrived(app, officer, imap_server):
    client, _ = officer
    arrived = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
    imap_server.append(mail(date=arrived), arrived=arrived)
    read_mailbox()
    item = db.session.execute(select(InboundMail)).scalar_one()
    form = {
        "request_type": "access",
        "email": "wren@example.com",
        "full_name": "Wren Writer",
        "jurisdiction": "gdpr",
        "channel": "email",
        "verification": "link",
        "inbound_mail_id": str(item.id),
    }
    page = f"/admin/requests/new?mail={item.id}"
    later = client.post_form(
        "/admin/requests/new", {**form, "received_at": (arrived + timedelta(days=2)).strftime("%Y-%m-%d")}, page=page
    )
    assert later.status_code == 400 and "reached us on" in later.get_data(as_text=True)
    assert count(DsrRequest) == 0
    ok = client.post_form(
        "/admin/requests/new", {**form, "received_at": arrived.strftime("%Y-%m-%dT%H:%M:%S")}, page=page
    )
    assert ok.status_code == 303
    dsr = db.session.execute(select(DsrRequest)).scalar_one()
    assert dsr.received_at == arrived


def dsn(original_message_id: str, action: str = "failed", status: str = "5.1.1") -> str:
    return (
        # the delivering server writes the envelope's reverse-path, null for a delivery report (RFC 5321)
        "Return-Path: <>\n"
        "From: Mail Delivery System <MAILER-DAEMON@mx.example>\nTo: privacy@chatgpttech.test\n"
        f"Subject: Undelivered Mail Returned to Sender\nMessage-ID: <dsn{utcnow().timestamp()}@mx.example>\n"
        "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nYour message could not be delivered to one or more recipients.\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n"
        f"Final-Recipient: rfc822; sam@nowhere.example\nAction: {action}\nStatus: {status}\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\n\n"
        "--B\nContent-Type: text/rfc822-headers\n\nFrom: privacy@chatgpttech.test\nTo: sam@nowhere.example\n"
        f"Subject: Which API key?\nMessage-ID: {original_message_id}\n\n--B--\n"
    )


def test_a_bounce_of_our_message_marks_it_bounced_and_tells_staff_on_the_thread(app, officer, imap_server):
    client, _ = officer
    dsr, question = waiting_request(client, email="sam@nowhere.example")
    imap_server.append(dsn(question.message_id))
    imap_server.append(dsn(question.message_id, action="delayed", status="4.4.1"))  # only a delay: not a bounce
    imap_server.append(dsn("<not-ours@elsewhere.example>"))
    read_mailbox()
    db.session.expire_all()
    sent = db.session.get(OutgoingMail, question.id)
    assert sent.status == "bounced" and "5.1.1" in sent.last_error
    dsr = db.session.get(DsrRequest, dsr.id)
    assert dsr.status == "on_hold"  # nothing changes for the request: staff check the address
    [notice] = [m for m in dsr.messages if m.direction == "in"]
    assert notice.kind == "auto_reply" and "could not be delivered (status 5.1.1)" in notice.body
    bounce, delayed, unknown = db.session.execute(select(InboundMail).order_by(InboundMail.uid)).scalars()
    assert (bounce.status, bounce.matched_by, bounce.request_id) == ("threaded", "bounce", dsr.id)
    assert delayed.status == "new" and unknown.status == "new"  # staff see them in the mailbox
    assert count(AuditEvent, AuditEvent.event == "mail.bounced") == 1
    page = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert "could not be delivered" in page
