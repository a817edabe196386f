"""SMTP failures against a real server (aiosmtpd answering the codes a real server answers): what is
retried, what fails for good, what staff see, and that STARTTLS never falls back to plain text or to a
server whose certificate nobody trusts."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import time
from pathlib import Path

import pytest
from rq import SimpleWorker
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db
from app.mail import queue_mail
from app.mail.backends import TransientMailError
from app.mail.models import OutgoingMail
from app.queue import new_worker
from tests.conftest import SmtpSink, free_port
from tests.factories import make_request
from tests.functional.admin_support import fresh_g, staff_client  # noqa: F401
from workers.mail import send_mail


class AnsweringSink(SmtpSink):
    """An SMTP server that answers RCPT and DATA with the codes it is given (``None``: accept)."""

    def __init__(self, port: int | None = None, **controller_kw):
        super().__init__(port)
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None
        self.data_delay = 0.0
        self.controller_kw = controller_kw

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply:
            return self.data_reply
        return await super().handle_DATA(server, session, envelope)

    def start(self) -> AnsweringSink:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **self.controller_kw)
        self.controller.start()
        return self


@pytest.fixture
def sink(app):
    server = AnsweringSink().start()
    app.config.update(server.config(), MAIL_TIMEOUT=2)
    try:
        yield server
    finally:
        server.stop()


def subject_mail() -> tuple[int, str]:
    """A message to a request's subject, stored and committed (its send job is queued after commit)."""
    dsr = make_request("in_progress", email="ada@example.com")
    mail = queue_mail(dsr.email, "fulfil_staff_alert", "About your request", dsr=dsr, error="x")
    db.session.commit()
    return mail.id, dsr.reference


def load(mail_id: int) -> OutgoingMail:
    db.session.expire_all()
    mail = db.session.get(OutgoingMail, mail_id)
    assert mail is not None
    return mail


def test_smtp_4xx_at_rcpt_is_retried_and_the_message_goes_once_the_server_accepts(sink):
    mail_id, _ = subject_mail()
    sink.rcpt_reply = "450 4.2.1 Mailbox busy, try again later"
    with pytest.raises(TransientMailError, match="450"):
        send_mail(mail_id)
    mail = load(mail_id)
    assert (mail.status, mail.attempts) == ("queued", 1) and "450" in mail.last_error
    assert sink.messages == []

    sink.rcpt_reply = None
    assert send_mail(mail_id) == "smtp"
    mail = load(mail_id)
    assert (mail.status, mail.attempts, mail.last_error) == ("sent", 2, None)
    assert [m["Message-ID"] for m in sink.to("ada@example.com")] == [mail.message_id]


def test_smtp_4xx_through_the_worker_schedules_an_rq_retry(sink, redis_conn):
    mail_id, _ = subject_mail()
    sink.rcpt_reply = "451 4.3.0 Temporary local problem"
    new_worker(["mail"], redis_conn, worker_class=SimpleWorker).work(burst=True)
    assert f"mail-{mail_id}" in ScheduledJobRegistry("mail", connection=redis_conn).get_job_ids()
    assert load(mail_id).status == "queued"


@pytest.mark.parametrize(
    ("where", "reply"),
    [("rcpt", "550 5.1.1 No such user here"), ("data", "554 5.7.1 Message refused as spam")],
)
def test_smtp_5xx_fails_for_good_and_the_officer_sees_why(app, sink, redis_conn, where, reply):
    mail_id, reference = subject_mail()
    setattr(sink, f"{where}_reply", reply)
    assert send_mail(mail_id) == "failed"
    mail = load(mail_id)
    code = reply.split()[0]
    assert (mail.status, mail.attempts) == ("failed", 1) and code in mail.last_error
    assert mail.redacted_at is not None  # a message that will never be sent keeps no working link
    assert sink.messages == []
    # Not retried: another run (reconcile re-enqueueing, a stale job) leaves it alone.
    assert send_mail(mail_id) == "failed"
    assert load(mail_id).attempts == 1

    client, _ = staff_client(app, "officer")
    page = client.get(f"/admin/requests/{reference}").get_data(as_text=True)
    assert "About your request" in page and "failed" in page and code in page


def test_smtp_5xx_from_the_worker_leaves_no_retry_scheduled(sink, redis_conn):
    mail_id, _ = subject_mail()
    sink.data_reply = "552 5.3.4 Message too big"
    new_worker(["mail"], redis_conn, worker_class=SimpleWorker).work(burst=True)
    assert ScheduledJobRegistry("mail", connection=redis_conn).get_job_ids() == []
    assert load(mail_id).status == "failed"


def test_smtp_connection_refused_is_retried_and_says_so(app):
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), MAIL_TIMEOUT=2)
    mail_id, _ = subject_mail()
    with pytest.raises(TransientMailError, match="ConnectionRefused"):
        send_mail(mail_id)
    mail = load(mail_id)
    assert mail.status == "queued" and "ConnectionRefused" in mail.last_error


def test_smtp_server_that_never_answers_times_out_and_is_retried(app):
    """A server that takes the connection and says nothing (a black hole) costs one MAIL_TIMEOUT."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the handshake; nobody ever greets
        app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=silent.getsockname()[1], MAIL_TIMEOUT=1)
        mail_id, _ = subject_mail()
        started = time.monotonic()
        with pytest.raises(TransientMailError, match="timed out"):
            send_mail(mail_id)
        assert time.monotonic() - started < 5
    mail = load(mail_id)
    assert mail.status == "queued" and "timed out" in mail.last_error


def test_smtp_server_stalling_after_data_is_retried_with_the_same_message_id(sink):
    """No answer to the end of DATA within MAIL_TIMEOUT: we cannot know whether it was taken, so the
    message waits for a retry and goes again with the Message-ID the receiving side can recognise."""
    sink.data_delay = 3
    mail_id, _ = subject_mail()
    with pytest.raises(TransientMailError):
        send_mail(mail_id)
    assert load(mail_id).status == "queued"
    sink.data_delay = 0
    assert send_mail(mail_id) == "smtp"
    deadline = time.monotonic() + 5
    while len(sink.to("ada@example.com")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the stalled conversation's copy arrives late
    ids = {m["Message-ID"] for m in sink.to("ada@example.com")}
    assert ids == {load(mail_id).message_id}


# --- STARTTLS -------------------------------------------------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signed for 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test mail CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def tls_sink(app, tmp_path):
    """A server that offers STARTTLS with a certificate from a private CA and refuses mail without it."""
    ca, cert, key = _certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = AnsweringSink(tls_context=context, require_starttls=True).start()
    app.config.update(server.config(), MAIL_USE_TLS=True, MAIL_TIMEOUT=3)
    server.ca = ca
    try:
        yield server
    finally:
        server.stop()


def test_starttls_to_a_certificate_nobody_trusts_sends_nothing(tls_sink):
    mail_id, _ = subject_mail()
    with pytest.raises(TransientMailError, match="CERTIFICATE_VERIFY_FAILED"):
        send_mail(mail_id)
    mail = load(mail_id)
    assert mail.status == "queued" and "certificate" in mail.last_error.lower()
    assert tls_sink.messages == []


def test_starttls_to_a_trusted_certificate_delivers(tls_sink, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_sink.ca))  # the operator's CA in the system's trust store
    mail_id, _ = subject_mail()
    assert send_mail(mail_id) == "smtp"
    assert load(mail_id).status == "sent"
    assert len(tls_sink.to("ada@example.com")) == 1


def test_starttls_required_but_not_offered_never_falls_back_to_plain(sink, app):
    app.config.update(MAIL_USE_TLS=True)
    mail_id, _ = subject_mail()
    with pytest.raises(TransientMailError, match="STARTTLS"):
        send_mail(mail_id)
    assert load(mail_id).status == "queued"
    assert sink.messages == []


def test_a_failed_message_is_recorded_in_the_request_audit(sink):
    mail_id, _ = subject_mail()
    sink.rcpt_reply = "550 5.1.1 No such user here"
    assert send_mail(mail_id) == "failed"
    events = db.session.execute(select(AuditEvent).where(AuditEvent.event == "mail.failed")).scalars().all()
    assert [e.data.get("mail_id") for e in events] == [mail_id]
