"""Whoever can write to Redis must not run code in the worker.

Jobs travel as JSON (rq's ``JSONSerializer``), so nothing read from Redis is ever unpickled, and the
worker runs only the job functions on the project's allow-list: a job naming anything else, or
carrying a callback, is refused before anything is imported or called. Each test pushes the hostile
job the way an intruder with Redis access would (straight through rq, past ``enqueue_now``) and runs
the project's own worker over it.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pickle
import subprocess
import zlib

import pytest
from rq import Callback, Queue
from rq.job import JobStatus

from app.mail import queue_mail
from app.mail.models import OutgoingMail
from app.queue import ALLOWED_JOBS, PendingJob, enqueue_now, fetch_job, get_queue
from tests.functional._fulfil import run_jobs


class _Touch:
    """Unpickling this runs ``touch <path>``: what a pickled payload in Redis can do to a pickle worker."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (subprocess.check_output, (["touch", self.path],))


def test_worker_refuses_a_foreign_callable_and_never_runs_it(app, redis_conn, tmp_path):
    marker = tmp_path / "ran"
    job = get_queue("maintenance", redis_conn).enqueue("subprocess.check_output", ["touch", str(marker)])
    run_jobs(redis_conn)
    assert not marker.exists()
    job = fetch_job(job.id, redis_conn)
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert "not one of this project's jobs" in (job.latest_result().exc_string or "")


def test_worker_never_unpickles_a_job_from_redis(app, redis_conn, tmp_path):
    marker = tmp_path / "unpickled"
    # The payload rq's default (pickle) serializer would write: a real job name, a hostile argument.
    Queue("mail", connection=redis_conn).enqueue("workers.mail.send_mail", _Touch(str(marker)))
    # The control: unpickling the payload does run the command.
    pickle.loads(pickle.dumps(_Touch(str(tmp_path / "control"))))  # noqa: S301 - the point of the test
    assert (tmp_path / "control").exists()
    run_jobs(redis_conn)
    assert not marker.exists()


def test_worker_refuses_an_allowed_job_that_carries_a_callback(app, redis_conn):
    mail = queue_mail("someone@example.com", "admin_staff_invite", "Hi", role="officer", login_url="x", inviter="y")
    from app.extensions import db

    db.session.commit()
    redis_conn.flushdb()  # drop the job queue_mail enqueued: the intruder's copy is the only one
    get_queue("mail", redis_conn).enqueue(
        "workers.mail.send_mail", mail.id, on_success=Callback("builtins.print"), job_id="intruder"
    )
    run_jobs(redis_conn)
    db.session.expire_all()
    assert db.session.get(OutgoingMail, mail.id).status == "queued"  # send_mail never ran
    assert fetch_job("intruder", redis_conn).get_status(refresh=True) == JobStatus.FAILED


def test_enqueue_refuses_a_name_off_the_allow_list(app, redis_conn):
    with pytest.raises(ValueError, match="allow-list"):
        enqueue_now(PendingJob(queue="mail", func="os.system", args=("true",)), redis_conn)


def test_allow_list_names_exactly_the_job_functions(app):
    """Every name resolves to a ``@job`` function, and every ``@job`` function in ``workers`` is listed."""
    found = set()
    for module_name in ("workers.jobs", "workers.mail", "workers.maintenance", "workers.portal", "workers.mailbox"):
        module = importlib.import_module(module_name)
        for name, obj in inspect.getmembers(module, inspect.isfunction):
            if obj.__module__ == module_name and hasattr(obj, "__wrapped__"):
                found.add(f"{module_name}.{name}")
    assert found == set(ALLOWED_JOBS)


def test_cron_jobs_are_json_and_run_in_the_worker(app, redis_conn):
    from app.queue import CronScheduler
    from workers.cron import register_schedule

    scheduler = CronScheduler(connection=redis_conn)
    register_schedule(scheduler)
    enqueued = scheduler.enqueue_jobs()
    # the interval jobs are due now
    assert sorted(j.func_name for j in enqueued) == [
        "workers.mailbox.read_mailbox_job",
        "workers.maintenance.reconcile_job",
    ]
    job_id = redis_conn.lrange(get_queue("maintenance", redis_conn).key, 0, -1)[0].decode()
    raw = zlib.decompress(redis_conn.hget(f"rq:job:{job_id}", "data"))  # rq compresses what it serialized
    assert json.loads(raw)[0] in ALLOWED_JOBS  # JSON, not a pickle
    run_jobs(redis_conn)
    assert fetch_job(job_id, redis_conn).get_status(refresh=True) == JobStatus.FINISHED
