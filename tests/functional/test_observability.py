"""/metrics in Prometheus text, and a stopped cron noticed by /readyz and by staff."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from app.mail.models import OutgoingMail
from app.models_base import utcnow
from app.schedule import record_success
from tests.factories import make_request, make_staff


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_metrics_count_requests_overdue_mail_and_queues(app, client):
    make_request("pending_review", received_days_ago=40)
    make_request("pending_review")
    resp = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    got = samples(resp.get_data(as_text=True))
    assert got[("dsr_requests", (("status", "pending_review"), ("type", "access")))] == 2
    assert got[("dsr_requests_overdue", ())] == 1
    assert ("dsr_queue_depth", (("queue", "fulfilment"),)) in got


def test_metrics_are_private(app, client):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.7"}).status_code == 404
    app.config["METRICS_TOKEN"] = "s3cret-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


def test_a_daily_job_that_stopped_makes_readyz_not_ready_and_alerts_staff(app, client):
    from workers.maintenance import alert_stale_jobs, purge_records_job

    make_staff("officer")
    purge_records_job()  # a run records its success
    assert client.get("/readyz").get_json()["scheduled"]["purge_records_job"] != "not run yet"
    assert client.get("/readyz").status_code == 200
    record_success("purge_records_job", utcnow() - timedelta(hours=27))
    body = client.get("/readyz")
    assert body.status_code == 503 and "purge_records_job" in body.get_json()["checks"]["scheduled_jobs"]
    assert alert_stale_jobs() == ["purge_records_job"]
    alert_stale_jobs()  # once a day
    mails = select(OutgoingMail).where(OutgoingMail.template == "fulfil_staff_stale_jobs")
    from app.extensions import db

    assert len(db.session.execute(mails).scalars().all()) == 1
