"""Fulfilment jobs: permanent errors fail the request and alert staff; transient ones are retried."""

from __future__ import annotations

from sqlalchemy import select

from app.audit import Actor
from app.dsr import services
from app.dsr.models import DsrRequest
from app.dsr.states import RequestStatus
from app.extensions import db
from app.mail.models import OutgoingMail
from app.queue import get_queue
from tests.factories import make_request, make_staff
from tests.functional._fulfil import make_subject_data, run_jobs


def approved(kind: str = "access", email: str = "ada@example.com") -> int:
    dsr = make_request(RequestStatus.PENDING_REVIEW, kind, email=email)
    services.transition(dsr, RequestStatus.APPROVED, Actor.staff(make_staff("officer")))
    db.session.commit()
    return dsr.id


def alerts() -> list[OutgoingMail]:
    return list(db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_staff_alert")).scalars())


def test_permanent_error_fails_request_and_alerts_staff(app, redis_conn, tmp_path):
    make_subject_data(usage=5)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    app.config["EXPORT_DIR"] = str(blocker)
    make_staff("admin", email="boss@staff.test")
    make_staff("auditor", email="reader@staff.test")
    dsr_id = approved()
    run_jobs(redis_conn)

    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == RequestStatus.FAILED.value
    assert dsr.last_error
    to = sorted(m.to_addr for m in alerts())
    assert "boss@staff.test" in to and "reader@staff.test" not in to
    assert all("ada@example.com" not in m.body_text for m in alerts())
    # Staff retry (failed -> approved) runs it again once the cause is fixed.
    app.config["EXPORT_DIR"] = str(tmp_path / "exports")
    services.transition(dsr, RequestStatus.APPROVED, Actor.system("test"))
    db.session.commit()
    run_jobs(redis_conn)
    assert db.session.get(DsrRequest, dsr_id).status == RequestStatus.COMPLETED.value


def test_transient_stripe_error_is_retried_not_failed(app, redis_conn):
    acct = make_subject_data(usage=5)
    acct.stripe_customer_id = "cus_unreachable"
    db.session.commit()
    app.config.update(STRIPE_API_KEY="sk_test_x", STRIPE_API_BASE="http://127.0.0.1:9", STAFF_ALERT_EMAIL="ops@x.test")
    dsr_id = approved()
    run_jobs(redis_conn)

    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == RequestStatus.IN_PROGRESS.value
    assert "will retry" in dsr.last_error
    job = get_queue("fulfilment", redis_conn).fetch_job(f"fulfil-{dsr_id}")
    assert job.get_status() == "scheduled" and job.retries_left == 3
    assert alerts() == []


def test_transient_error_on_last_attempt_fails_and_alerts(app, redis_conn):
    from workers.jobs import build_export

    acct = make_subject_data(usage=5)
    acct.stripe_customer_id = "cus_unreachable"
    db.session.commit()
    app.config.update(STRIPE_API_KEY="sk_test_x", STRIPE_API_BASE="http://127.0.0.1:9", STAFF_ALERT_EMAIL="ops@x.test")
    dsr_id = approved()
    redis_conn.flushdb()  # run it here, outside rq: no retries left
    assert build_export(dsr_id) == "failed"
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == RequestStatus.FAILED.value and "Stripe" in dsr.last_error
    assert [m.to_addr for m in alerts()] == ["ops@x.test"]


def test_job_for_closed_request_does_nothing(app, redis_conn):
    from workers.jobs import apply_corrections, build_export, erase_subject

    dsr = make_request(RequestStatus.CANCELLED, "deletion")
    assert erase_subject(dsr.id).startswith("nothing to do")
    assert build_export(999999) == "gone"
    assert apply_corrections(dsr.id).startswith("wrong job")
