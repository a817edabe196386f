"""Every kind of rq callback on an allowed job is refused, not only ``on_success`` (see test_job_safety):
a failure or stop callback named in Redis would be imported and called by the worker too."""

from __future__ import annotations

import pytest
from rq import Callback
from rq.job import JobStatus

from app.extensions import db
from app.mail import queue_mail
from app.mail.models import OutgoingMail
from app.queue import fetch_job, get_queue
from tests.functional._fulfil import run_jobs


@pytest.mark.parametrize("kind", ["on_failure", "on_stopped"])
def test_worker_refuses_an_allowed_job_with_any_callback(app, redis_conn, kind):
    mail = queue_mail("someone@example.com", "admin_staff_invite", "Hi", role="officer", login_url="x", inviter="y")
    db.session.commit()
    redis_conn.flushdb()  # the intruder's copy of the job is the only one
    get_queue("mail", redis_conn).enqueue(
        "workers.mail.send_mail", mail.id, job_id="intruder", **{kind: Callback("builtins.print")}
    )
    run_jobs(redis_conn)
    db.session.expire_all()
    assert db.session.get(OutgoingMail, mail.id).status == "queued"  # send_mail never ran
    job = fetch_job("intruder", redis_conn)
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert "no callbacks" in (job.latest_result().exc_string or "")
