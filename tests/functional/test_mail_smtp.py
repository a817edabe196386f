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
from app.queue import get_queue
from tests.conftest import SmtpSink, free_port

FORM = {
    "request_type": "access",
    "email": "grace@example.com",
    "full_name": "Grace Hopper",
    "jurisdiction": "ccpa",
    "details": "",
}


def run_mail_worker(redis_conn) -> None:
    SimpleWorker([get_queue("mail", redis_conn)], connection=redis_conn).work(burst=True, with_scheduler=True)


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
        assert client.post_form("/requests/new", FORM).status_code == 200
        run_mail_worker(redis_conn)
        msgs = sink.to("grace@example.com")
        assert len(msgs) == 1
        msg = msgs[0]
        assert msg["Subject"] == "Confirm your privacy request"
        assert {p.get_content_type() for p in msg.walk()} >= {"text/plain", "text/html"}
        link = sink.links("grace@example.com", "/verify/")[0]
        path = urlparse(link).path
        page = client.post_form(path)
        assert page.status_code == 200
        reference = db.session.execute(select(DsrRequest.reference)).scalar_one()
        assert reference in page.get_data(as_text=True)
        run_mail_worker(redis_conn)
        status_links = sink.links("grace@example.com", "/requests/")
        assert len(status_links) == 1 and reference in status_links[0]
        status = urlparse(status_links[0])
        assert client.get(f"{status.path}?{status.query}").status_code == 200
    finally:
        sink.stop()


def test_smtp_outage_delays_mail_and_delivers_exactly_once(client, redis_conn, sink_port):
    assert client.post_form("/requests/new", FORM).status_code == 200
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
