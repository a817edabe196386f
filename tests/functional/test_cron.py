"""The rq cron schedule and the maintenance jobs it runs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from app.dsr.models import DsrRequest, Export, Token
from app.dsr.states import RequestStatus
from app.extensions import db
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from app.queue import CronScheduler
from tests.factories import make_request, make_staff
from workers import maintenance
from workers.cron import register_schedule


def test_schedule_registers_every_maintenance_job(app, redis_conn):
    scheduler = CronScheduler(connection=redis_conn)
    register_schedule(scheduler)
    names = {j.func.__name__ for j in scheduler.get_jobs()}
    assert names == {
        "reconcile_job",
        "expire_unverified_job",
        "purge_exports_job",
        "retention_sweep_job",
        "deadline_reminders_job",
        "purge_records_job",
        "minimise_closed_requests_job",
        "read_mailbox_job",
    }
    reconcile = next(j for j in scheduler.get_jobs() if j.func.__name__ == "reconcile_job")
    assert reconcile.interval == 300


def test_expire_unverified_job_expires_after_seven_days(app):
    old = make_request(RequestStatus.UNVERIFIED, received_days_ago=8)
    fresh = make_request(RequestStatus.UNVERIFIED, received_days_ago=2)
    ids = (old.id, fresh.id)
    assert maintenance.expire_unverified_job() == 1
    assert db.session.get(DsrRequest, ids[0]).status == RequestStatus.EXPIRED.value
    assert db.session.get(DsrRequest, ids[1]).status == RequestStatus.UNVERIFIED.value


def test_purge_exports_deletes_expired_files_only(app):
    directory = Path(app.config["EXPORT_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    dsr = make_request(RequestStatus.COMPLETED)
    now = utcnow()
    rows = []
    for name, expires in (("old.zip", now - timedelta(hours=1)), ("new.zip", now + timedelta(days=3))):
        (directory / name).write_bytes(b"PK")
        export = Export(request_id=dsr.id, status="ready", filename=name, expires_at=expires)
        db.session.add(export)
        rows.append(export)
    db.session.commit()
    assert maintenance.purge_exports() == 1
    assert not (directory / "old.zip").exists() and (directory / "new.zip").exists()
    assert rows[0].status == "purged" and rows[0].purged_at is not None
    assert rows[1].status == "ready"
    assert maintenance.purge_exports() == 0


def test_deadline_reminders_email_staff_about_due_and_overdue(app):
    make_staff("officer", email="officer@staff.test")
    make_staff("auditor", email="auditor@staff.test")
    overdue = make_request(RequestStatus.PENDING_REVIEW, received_days_ago=40)
    soon = make_request(RequestStatus.APPROVED, received_days_ago=27)
    make_request(RequestStatus.PENDING_REVIEW, received_days_ago=1)  # not due for weeks
    refs = (overdue.reference, soon.reference)
    assert maintenance.deadline_reminders() == 1
    mail = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_staff_reminder")).scalar_one()
    assert mail.to_addr == "officer@staff.test"
    assert refs[0] in mail.body_text and refs[1] in mail.body_text
    assert "1 overdue, 1 due soon" in mail.subject


def test_purge_records_after_24_months_removes_request_and_its_data(app):
    from app.mail import queue_mail

    old = make_request(RequestStatus.COMPLETED, received_days_ago=800)
    old.closed_at = utcnow() - timedelta(days=731)
    recent = make_request(RequestStatus.COMPLETED, received_days_ago=100)
    recent.closed_at = utcnow() - timedelta(days=90)
    still_open = make_request(RequestStatus.PENDING_REVIEW, received_days_ago=800)
    db.session.commit()
    db.session.add(Token(token_hash="a" * 64, purpose="status", request_id=old.id))
    queue_mail(old.email, "fulfil_export_ready", "x", dsr=old, download_url="u", expires_at=utcnow(), max_uses=5)
    db.session.commit()
    ids = (old.id, recent.id, still_open.id)
    assert maintenance.purge_records() == 1
    db.session.expire_all()
    assert db.session.get(DsrRequest, ids[0]) is None
    assert db.session.get(DsrRequest, ids[1]) is not None and db.session.get(DsrRequest, ids[2]) is not None
    assert db.session.execute(select(Token)).first() is None
    assert db.session.execute(select(OutgoingMail)).first() is None
