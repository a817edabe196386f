"""Mail through a real SMTP server (aiosmtpd): the verification link works; an outage delays, never loses."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
from rq import SimpleWorker
from sqlalchemy import select

from app.dsr.models import DsrRequest
from app.extensions import db
from app.mail.models import OutgoingMail
from app.queue import new_worker
from tests.conftest import SmtpSink, free_port

FORM = {
    "request_type": "access",
    "email": "grace@example.com",
    "full_name": "Grace Hopper",
    "jurisdiction": "ccpa",
    "details": "",
}


def run_mail_worker(redis_conn) -> None:
    new_worker(["mail"], redis_conn, worker_class=SimpleWorker).work(burst=True, with_scheduler=True)


@pytest.fixture
def sink_port():
    return free_port()


@pytest.fixture
def app_config(app_config, sink_port):
    return {
        **app_config,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": sink_port,
        "MAIL_TIMEOUT": 3,
        "MAIL_RETRY_INTERVALS": [1, 1, 1],
    }


def test_verification_mail_arrives_by_smtp_and_its_link_confirms(client, redis_conn, sink_port):
    sink = SmtpSink(sink_port).start()
    try:
        assert client.post_form("/requests/new", FORM).status_code == 303
        run_mail_worker(redis_conn)
        msgs = sink.to("grace@example.com")
        assert len(msgs) == 1
        msg = msgs[0]
        assert msg["Subject"] == "Confirm your privacy request"
        assert {p.get_content_type() for p in msg.walk()} >= {"text/plain", "text/html"}
        link = sink.links("grace@example.com", "/verify/")[0]
        path = urlparse(link).path
        hop = client.get(path)
        assert hop.status_code == 303 and hop.headers["Location"] == "/verify"
        page = client.post_form("/verify")
        assert page.status_code == 200
        reference = db.session.execute(select(DsrRequest.reference)).scalar_one()
        assert reference in page.get_data(as_text=True)
        run_mail_worker(redis_conn)
        status_links = sink.links("grace@example.com", "/requests/DSR-")
        assert len(status_links) == 1 and reference in status_links[0]
        status = urlparse(status_links[0])
        assert client.get(f"{status.path}?{status.query}", follow_redirects=True).status_code == 200
        # what the database keeps of sent mail holds no working link
        for mail in db.session.execute(select(OutgoingMail)).scalars():
            assert mail.status == "sent" and mail.redacted_at is not None
            assert "[redacted]" in mail.body_text and path not in mail.body_text and status.query not in mail.body_text
    finally:
        sink.stop()


def test_smtp_outage_delays_mail_and_delivers_exactly_once(client, redis_conn, sink_port):
    assert client.post_form("/requests/new", FORM).status_code == 303
    mail_id = db.session.execute(select(OutgoingMail.id)).scalar_one()

    def load() -> OutgoingMail:
        # The job removes the shared session when it finishes, so read the row afresh each time.
        return db.session.get(OutgoingMail, mail_id)

    # Nothing listens on the port: the first attempt fails and a retry is scheduled.
    run_mail_worker(redis_conn)
    mail = load()
    assert mail.status == "queued" and mail.attempts == 1
    assert "Error" in (mail.last_error or "") or "refused" in (mail.last_error or "").lower()

    sink = SmtpSink(sink_port).start()
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            time.sleep(1.1)  # let the scheduled retry fall due
            run_mail_worker(redis_conn)
            mail = load()
            if mail.status == "sent":
                break
        assert mail.status == "sent"
        message_id = mail.message_id
        assert len(sink.to("grace@example.com")) == 1
        # Running the worker again (or reconcile re-enqueueing) never sends it twice.
        from app.mail import mail_job
        from app.queue import enqueue_now

        enqueue_now(mail_job(mail_id), redis_conn)
        run_mail_worker(redis_conn)
        assert len(sink.to("grace@example.com")) == 1
        assert sink.to("grace@example.com")[0]["Message-ID"] == message_id
    finally:
        sink.stop()


def _stored_mail() -> int:
    from app.mail import queue_mail

    mail = queue_mail("ada@example.com", "fulfil_staff_alert", "Claimed", error="x")
    db.session.commit()
    return mail.id


def _claim(mail_id: int, started_ago) -> None:
    """What a send attempt leaves behind when it is killed mid-conversation."""
    from app.models_base import utcnow

    db.session.execute(
        OutgoingMail.__table__.update()
        .where(OutgoingMail.id == mail_id)
        .values(status="sending", send_started_at=utcnow() - started_ago, attempts=1)
    )
    db.session.commit()


def test_a_message_claimed_by_a_live_attempt_is_not_sent_beside_it(app, sink_port):
    """After a Redis flush reconcile may enqueue a message that a live work horse is sending: the
    second job finds the claim and leaves the message alone (SQLite has no row locks to rely on)."""
    from datetime import timedelta

    from workers.mail import send_mail

    sink = SmtpSink(sink_port).start()
    try:
        mail_id = _stored_mail()
        _claim(mail_id, timedelta(seconds=5))
        assert send_mail(mail_id) == "in flight elsewhere"
        assert sink.to("ada@example.com") == []
        mail = db.session.get(OutgoingMail, mail_id)
        assert (mail.status, mail.attempts, mail.interrupted_sends) == ("sending", 1, 0)
    finally:
        sink.stop()


def test_a_claim_outliving_the_lease_is_taken_over_and_sent_once_with_the_same_message_id(app, redis_conn, sink_port):
    from datetime import timedelta

    from workers.mail import SEND_LEASE, send_mail
    from workers.reconcile import reconcile

    sink = SmtpSink(sink_port).start()
    try:
        mail_id = _stored_mail()
        redis_conn.flushall()  # the first attempt's job is gone with its worker
        _claim(mail_id, SEND_LEASE - timedelta(seconds=10))
        assert reconcile()["mail"] == 0  # still within the lease: the attempt may be alive
        _claim(mail_id, SEND_LEASE + timedelta(seconds=1))
        assert reconcile()["mail"] == 1
        run_mail_worker(redis_conn)
        mail = db.session.get(OutgoingMail, mail_id)
        assert (mail.status, mail.attempts, mail.interrupted_sends) == ("sent", 2, 1)
        got = sink.to("ada@example.com")
        assert [m["Message-ID"] for m in got] == [mail.message_id]
        assert send_mail(mail_id) == "already sent"
        assert reconcile()["mail"] == 0
    finally:
        sink.stop()


def test_an_attempt_overtaken_by_a_later_one_does_not_overwrite_its_outcome(app, sink_port):
    """A stale attempt that comes back after the lease (a paused process) records nothing: the row
    belongs to the attempt that claimed it last."""
    from workers.mail import _settle

    mail_id = _stored_mail()
    db.session.execute(
        OutgoingMail.__table__.update().where(OutgoingMail.id == mail_id).values(status="sending", attempts=2)
    )
    db.session.commit()
    _settle(mail_id, 1, status="queued", last_error="late failure of attempt 1")
    mail = db.session.get(OutgoingMail, mail_id)
    assert (mail.status, mail.last_error) == ("sending", None)


def test_the_send_lease_never_ends_before_a_live_attempt_can(app):
    """A lease set shorter than a send attempt can last would let a second attempt send beside it."""
    from datetime import timedelta

    from workers.mail import send_lease

    app.config.update(MAIL_SEND_LEASE_SECONDS=5, MAIL_JOB_TIMEOUT_SECONDS=60, MAIL_TIMEOUT=3)
    assert send_lease() >= timedelta(seconds=60 + 3)
    app.config.update(MAIL_SEND_LEASE_SECONDS=600)
    assert send_lease() == timedelta(seconds=600)


def test_a_message_that_cannot_be_built_fails_for_good_instead_of_retrying(app, sink_port):
    """A header with a line break (an injected Bcc) is refused before any SMTP conversation."""
    from workers.mail import send_mail

    sink = SmtpSink(sink_port).start()
    try:
        mail_id = _stored_mail()
        db.session.execute(
            OutgoingMail.__table__.update()
            .where(OutgoingMail.id == mail_id)
            .values(to_addr="ada@example.com\nBcc: eve@example.com")
        )
        db.session.commit()
        assert send_mail(mail_id) == "failed"
        mail = db.session.get(OutgoingMail, mail_id)
        assert mail.status == "failed" and "cannot build the message" in mail.last_error
        assert sink.messages == []
    finally:
        sink.stop()


def test_recording_an_accepted_message_rides_out_a_database_hiccup(app, sink_port, monkeypatch):
    """The server has the message: failing to record that would mean sending it again after the
    lease. A database error at that moment (injected once: SQLite cannot drop a connection on cue)
    is retried, and the message is sent once and recorded once."""
    from sqlalchemy.exc import OperationalError

    import workers.mail as mail_worker

    real_settle = mail_worker._settle
    failures = []

    def flaky_settle(mail_id, attempt, **values):
        if values.get("status") == "sent" and not failures:
            failures.append(values)
            raise OperationalError("UPDATE outgoing_mail", {}, Exception("server closed the connection"))
        return real_settle(mail_id, attempt, **values)

    monkeypatch.setattr(mail_worker, "_settle", flaky_settle)
    monkeypatch.setattr(mail_worker, "SETTLE_TRIES", (0.01, 0.01, 0.01))
    sink = SmtpSink(sink_port).start()
    try:
        mail_id = _stored_mail()
        assert mail_worker.send_mail(mail_id) == "smtp"
        assert len(failures) == 1
        mail = db.session.get(OutgoingMail, mail_id)
        assert (mail.status, mail.attempts, mail.interrupted_sends) == ("sent", 1, 0)
        assert len(sink.to("ada@example.com")) == 1
    finally:
        sink.stop()
