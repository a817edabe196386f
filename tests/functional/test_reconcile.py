"""The reconciler: a SIGKILLed worker mid-export, and a flushed Redis, never lose a request."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from rq.job import Job, JobStatus
from sqlalchemy import select

from app.audit import Actor
from app.dsr import services
from app.dsr.models import DsrRequest, Export
from app.dsr.states import RequestStatus
from app.extensions import db
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from app.queue import SERIALIZER, fetch_job, job_is_live
from tests.chaos.harness import descendants
from tests.conftest import TEST_SECRET
from tests.factories import make_request, make_staff
from tests.functional._fulfil import make_subject_data, run_jobs
from workers.reconcile import HORSE_GRACE, reconcile

ROOT = Path(__file__).resolve().parents[2]


def approve(kind: str, email: str) -> int:
    dsr = make_request(RequestStatus.PENDING_REVIEW, kind, email=email)
    services.transition(dsr, RequestStatus.APPROVED, Actor.staff(make_staff("officer")))
    db.session.commit()
    return dsr.id


def stored_mail(subject: str):
    """A queued message, old enough for reconcile to look at (its job is enqueued on commit)."""
    from app.mail import queue_mail

    mail = queue_mail("ada@example.com", "fulfil_staff_alert", subject, error="x")
    db.session.commit()
    db.session.execute(
        OutgoingMail.__table__.update()
        .where(OutgoingMail.id == mail.id)
        .values(created_at=utcnow() - timedelta(minutes=5))
    )
    db.session.commit()
    return mail


def started_by(job: Job, worker_name: str, quiet_for: timedelta) -> None:
    """What a worker leaves behind when it is killed while running ``job``: 'started', by it."""
    job.set_status(JobStatus.STARTED)
    job.worker_name = worker_name
    job.started_at = job.last_heartbeat = (utcnow() - quiet_for).replace(tzinfo=None)
    job.save()


def test_redis_flushed_with_approved_requests_then_reconcile_completes_all(app, redis_conn):
    make_subject_data(usage=50)
    make_subject_data(email="grace@example.com", name="Grace Hopper", usage=20)
    ids = [approve("access", "ada@example.com"), approve("deletion", "grace@example.com")]
    ids.append(approve("access", "nobody@example.com"))
    assert all(job_is_live(f"fulfil-{i}", redis_conn) for i in ids)
    redis_conn.flushdb()  # Redis lost everything it had queued
    assert not any(job_is_live(f"fulfil-{i}", redis_conn) for i in ids)

    summary = reconcile()
    assert summary["requests"] == 3
    assert reconcile()["requests"] == 0  # already queued: no double enqueue
    run_jobs(redis_conn)
    for i in ids:
        row = db.session.get(DsrRequest, i)
        assert row.status == RequestStatus.COMPLETED.value, row.last_error
    assert reconcile()["requests"] == 0


def _worker_env(app) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "PLATFORM_", "REDIS", "STRIPE"))}
    env.update(
        APP_ENV="testing",
        SECRET_KEY=TEST_SECRET,
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        PLATFORM_DATABASE_URL=app.config["SQLALCHEMY_BINDS"]["platform"],
        REDIS_URL=app.config["REDIS_URL"],
        EXPORT_DIR=app.config["EXPORT_DIR"],
        PORTAL_BASE_URL=app.config["PORTAL_BASE_URL"],
    )
    env.pop("MAIL_SERVER", None)
    return env


# Enough rows that the export runs for several seconds (progress is written about once a second;
# 150k rows took under 1.5 s once the export got faster, and the kill sometimes came too late),
# so the test can catch it mid-way and kill it there.
ROWS = 300_000


def test_worker_killed_mid_export_then_reconcile_completes_once(app, redis_conn):
    acct = make_subject_data(usage=ROWS)
    account_id = acct.id
    dsr_id = approve("access", "ada@example.com")
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--queues", "fulfilment"],
        cwd=ROOT,
        env=_worker_env(app),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            db.session.remove()
            dsr = db.session.get(DsrRequest, dsr_id)
            if dsr.status == RequestStatus.IN_PROGRESS.value and dsr.progress_rows > 0:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the worker never started the export")
    finally:
        # SIGKILL everything: the worker, its scheduler, and the work horse, which rq puts in a
        # process group of its own (so killing the worker's group alone leaves the horse running).
        for pid in [worker.pid, *descendants(worker.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        worker.wait(10)
    db.session.remove()
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == RequestStatus.IN_PROGRESS.value
    assert 0 < dsr.progress_rows < ROWS
    exports = list(db.session.execute(select(Export).where(Export.request_id == dsr_id)).scalars())
    assert [e.status for e in exports] == ["building"]
    assert not list(Path(app.config["EXPORT_DIR"]).glob("*.zip"))  # only a hidden .part, never servable
    assert job_is_live(f"fulfil-{dsr_id}", redis_conn)  # rq still thinks it runs

    # Not yet: the request's heartbeat is fresh, and a horse that outlived its worker may still run.
    assert reconcile(stale_after=timedelta(minutes=10))["abandoned"] == 0
    db.session.execute(
        DsrRequest.__table__.update()
        .where(DsrRequest.id == dsr_id)
        .values(heartbeat_at=utcnow() - HORSE_GRACE - timedelta(seconds=1))
    )
    db.session.commit()
    summary = reconcile(stale_after=timedelta(minutes=10))  # dead worker + quiet heartbeat
    assert summary["abandoned"] == 1 and summary["requests"] == 1
    run_jobs(redis_conn)

    db.session.remove()
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == RequestStatus.COMPLETED.value, dsr.last_error
    exports = list(db.session.execute(select(Export).where(Export.request_id == dsr_id)).scalars())
    assert [e.status for e in exports] == ["ready"]
    assert exports[0].manifest["files"][4]["name"] == "usage_logs.json"
    usage_rows = {f["name"]: f["rows"] for f in exports[0].manifest["files"]}["usage_logs.csv"]
    assert usage_rows == ROWS
    assert len(list(Path(app.config["EXPORT_DIR"]).glob("*.zip"))) == 1
    assert not list(Path(app.config["EXPORT_DIR"]).glob(".*.part"))
    mails = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_export_ready")).all()
    assert len(mails) == 1
    assert reconcile()["requests"] == 0
    # An access request reads the platform's data and never changes it, however often its job ran.
    from sqlalchemy import func

    from app.platform.models import Account, UsageRecord

    account = db.session.get(Account, account_id)
    assert (account.status, account.email) == ("active", "ada@example.com")
    assert db.session.scalar(select(func.count()).where(UsageRecord.account_id == account_id)) == ROWS


def test_mail_retry_stranded_by_a_dead_scheduler_is_sent_again(app, redis_conn):
    """A SIGKILLed worker keeps rq's scheduler lock for a minute, and the others only try to take it
    every ten: a retry scheduled in the meantime counts as live but never runs. Reconcile re-queues it
    once it is overdue, and never touches a retry that is not due yet."""
    from rq.registry import ScheduledJobRegistry

    from app.mail import queue_mail
    from app.queue import get_queue

    stranded = queue_mail("ada@example.com", "fulfil_staff_alert", "Stranded", error="x")
    waiting = queue_mail("grace@example.com", "fulfil_staff_alert", "Waiting", error="x")
    db.session.commit()
    db.session.execute(
        OutgoingMail.__table__.update().values(created_at=utcnow() - timedelta(minutes=5), last_error="refused")
    )
    db.session.commit()
    queue = get_queue("mail", redis_conn)
    for mail, due in ((stranded, utcnow() - timedelta(minutes=3)), (waiting, utcnow() + timedelta(minutes=3))):
        job = fetch_job(f"mail-{mail.id}", redis_conn)
        queue.remove(job)
        queue.schedule_job(job, due)  # what rq's Retry does after a failed attempt
    assert all(job_is_live(f"mail-{m.id}", redis_conn) for m in (stranded, waiting))

    assert reconcile()["mail"] == 1
    assert fetch_job(f"mail-{stranded.id}", redis_conn).get_status() == JobStatus.QUEUED
    assert f"mail-{stranded.id}" in queue.job_ids
    assert fetch_job(f"mail-{waiting.id}", redis_conn).get_status() == JobStatus.SCHEDULED
    scheduled = ScheduledJobRegistry("mail", connection=redis_conn, serializer=SERIALIZER)
    assert f"mail-{waiting.id}" in scheduled.get_job_ids()
    assert reconcile()["mail"] == 0  # queued now: not enqueued twice


def test_mail_job_of_a_killed_worker_is_sent_again_after_the_grace(app, redis_conn):
    """A mail job whose worker was SIGKILLed mid-send stays 'started' in rq until its timeout and a
    registry cleanup; reconcile re-queues it once its worker is gone and it has been quiet long enough."""
    mail = stored_mail("Interrupted")
    job = fetch_job(f"mail-{mail.id}", redis_conn)
    started_by(job, "killed-worker", timedelta(seconds=5))  # registered nowhere any more: dead

    assert reconcile()["mail"] == 0  # quiet for 5 s only: within the grace
    started_by(job, "killed-worker", HORSE_GRACE + timedelta(seconds=1))
    assert reconcile()["mail"] == 1
    assert fetch_job(f"mail-{mail.id}", redis_conn).get_status() == JobStatus.QUEUED
    assert reconcile()["mail"] == 0


def test_reconcile_survives_a_job_whose_execution_expired(app, redis_conn):
    """rq keeps a killed worker's execution id after the execution hash has expired, and then
    ``Job.delete`` raises ValueError: one such job used to stop every later reconcile run."""
    from rq.registry import StartedJobRegistry

    mail = stored_mail("Dangling")
    job = fetch_job(f"mail-{mail.id}", redis_conn)
    started_by(job, "killed-worker", HORSE_GRACE + timedelta(seconds=1))
    redis_conn.zadd(job.execution_registry.key, {"expired-execution": time.time() + 3600})  # no hash
    redis_conn.zadd(
        StartedJobRegistry("mail", connection=redis_conn).key, {f"{job.id}:expired-execution": time.time() + 3600}
    )

    assert reconcile()["mail"] == 1
    assert fetch_job(f"mail-{mail.id}", redis_conn).get_status() == JobStatus.QUEUED
    assert not redis_conn.zrange(StartedJobRegistry("mail", connection=redis_conn).key, 0, -1)


def test_mail_job_whose_worker_record_was_flushed_is_sent_again(app, redis_conn):
    """After FLUSHALL a running worker writes back only its heartbeat (no pid, no host); killed
    later mid-send, it left its mail job 'started' under a record that looked alive forever."""
    mail = stored_mail("Flushed")
    job = fetch_job(f"mail-{mail.id}", redis_conn)
    started_by(job, "flushed-worker", HORSE_GRACE + timedelta(seconds=1))
    redis_conn.hset("rq:worker:flushed-worker", "last_heartbeat", "2026-01-01T00:00:00.000000Z")
    redis_conn.sadd("rq:workers", "rq:worker:flushed-worker")

    assert reconcile()["mail"] == 1
    assert fetch_job(f"mail-{mail.id}", redis_conn).get_status() == JobStatus.QUEUED


def test_mail_job_popped_by_a_killed_worker_is_sent_again(app, redis_conn):
    """A worker SIGKILLed between popping a job (into rq's intermediate queue) and starting it left
    the job 'queued' but in no queue: live to reconcile, run by nobody for ten minutes."""
    from app.queue import get_queue

    mail = stored_mail("Popped")
    queue = get_queue("mail", redis_conn)
    limbo = queue.intermediate_queue
    redis_conn.lmove(queue.key, limbo.key)  # what a worker's dequeue does
    job_id = f"mail-{mail.id}"
    assert job_is_live(job_id, redis_conn) and job_id not in queue.job_ids

    assert reconcile()["mail"] == 0  # first seen now: a live worker may be starting it
    redis_conn.set(limbo.get_first_seen_key(job_id), (utcnow() - HORSE_GRACE - timedelta(seconds=1)).timestamp())
    assert reconcile()["mail"] == 1
    assert job_id in queue.job_ids and job_id not in limbo.get_job_ids()
    assert reconcile()["mail"] == 0


def test_a_job_hash_a_work_horse_wrote_back_after_a_flush_does_not_strand_its_request(app, redis_conn):
    """After FLUSHALL a work horse still running writes its heartbeat (``HSET rq:job:<id>
    last_heartbeat``) into an empty key: a hash without the job, which rq cannot load ("Unexpected job
    format") and whose id ``unique=True`` refuses. Killed then, it left its request in progress with no
    job and every reconcile skipping it in silence (the chaos run's one unexplained failure)."""
    make_subject_data(usage=20)
    dsr_id = approve("access", "ada@example.com")
    key = Job.key_for(f"fulfil-{dsr_id}")
    redis_conn.flushdb()
    dsr = db.session.get(DsrRequest, dsr_id)
    dsr.status, dsr.started_at = RequestStatus.IN_PROGRESS.value, utcnow()
    db.session.commit()
    # The horse is alive and beating: its job must not be run beside it.
    redis_conn.hset(key, "last_heartbeat", (utcnow() - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    assert reconcile()["requests"] == 0
    assert not job_is_live(f"fulfil-{dsr_id}", redis_conn)
    # Killed: the heartbeat in the leftover hash and the request's own both go quiet past the grace.
    quiet = utcnow() - HORSE_GRACE - timedelta(seconds=5)
    redis_conn.hset(key, "last_heartbeat", quiet.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    dsr = db.session.get(DsrRequest, dsr_id)
    dsr.started_at = dsr.heartbeat_at = quiet
    db.session.commit()
    assert reconcile()["requests"] == 1
    run_jobs(redis_conn)
    db.session.expire_all()
    assert db.session.get(DsrRequest, dsr_id).status == RequestStatus.COMPLETED.value
