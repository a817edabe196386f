"""The reconciler: the database is the source of truth, Redis only a delivery mechanism.

It finds approved or in-progress requests whose job is gone (Redis flushed) or abandoned (worker
killed: the job is still marked started but its worker is gone, or neither the job nor the request
has had a heartbeat for ``stale_after``), queued mail with no live job and mail whose send attempt
died holding its claim (``MAIL_SEND_LEASE_SECONDS``), and enqueues them again
under their deterministic ids. The jobs are idempotent and resume where they stopped, so running
this at any time, as often as wanted, never doubles an effect.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, timedelta

from flask import current_app
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from sqlalchemy import and_, or_, select

from app.dsr.models import DsrRequest
from app.dsr.services import fulfilment_job
from app.dsr.states import RequestStatus
from app.extensions import db
from app.mail import mail_job
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from app.queue import discard_job, enqueue_now, get_redis, job_is_live
from workers.mail import claimable

STALE_AFTER = timedelta(minutes=10)
# rq runs each job in a work horse with its own process group, which can outlive a killed worker
# parent and still be working: a dead worker only means an abandoned job once the request's own
# heartbeat (written at least every second while rows flow) has also been quiet this long
# (``RECONCILE_HORSE_GRACE_SECONDS`` overrides it).
HORSE_GRACE = timedelta(seconds=90)


def horse_grace() -> timedelta:
    seconds = current_app.config.get("RECONCILE_HORSE_GRACE_SECONDS")
    return HORSE_GRACE if seconds is None else timedelta(seconds=float(seconds))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_is_dead(job: Job, conn) -> bool:
    if not job.worker_name:
        return False
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + job.worker_name, connection=conn)
    if worker is None or not worker.pid or not worker.hostname:
        # Gone, or only the heartbeat a live worker wrote back after Redis was flushed: nothing says
        # it is still running this job, so the callers' grace on the heartbeats decides.
        return True
    if worker.hostname == socket.gethostname() and worker.pid and not _pid_alive(worker.pid):
        return True
    return False


def is_abandoned(job_id: str, dsr: DsrRequest, conn, stale_after: timedelta) -> bool:
    """A started job nobody is running any more."""
    try:
        job = Job.fetch(job_id, connection=conn)
    except NoSuchJobError:
        return False
    if job.get_status(refresh=True) != JobStatus.STARTED:
        return False
    row_beat = dsr.heartbeat_at or dsr.started_at
    if worker_is_dead(job, conn) and (row_beat is None or row_beat < utcnow() - horse_grace()):
        return True
    cutoff = utcnow() - stale_after
    job_beat = job.last_heartbeat or job.started_at
    if job_beat is not None and job_beat.tzinfo is None:
        job_beat = job_beat.replace(tzinfo=UTC)
    return (job_beat is None or job_beat < cutoff) and (row_beat is None or row_beat < cutoff)


def mail_abandoned(job_id: str, conn, grace: timedelta) -> bool:
    """A mail job still marked started whose worker is gone and which has been quiet for ``grace``.

    rq itself only fails it once its timeout has passed and some worker cleans its registries, which
    can take ten minutes. The mail job's own timeout (60 s) is shorter than the default grace, so a
    work horse that outlived its worker has stopped by then.
    """
    try:
        job = Job.fetch(job_id, connection=conn)
    except NoSuchJobError:
        return False
    if job.get_status(refresh=True) != JobStatus.STARTED or not worker_is_dead(job, conn):
        return False
    beat = job.last_heartbeat or job.started_at
    if beat is not None and beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    return beat is None or beat < utcnow() - grace


def dequeued_by_the_dead(job_id: str, conn, grace: timedelta) -> bool:
    """A job still 'queued' that is no longer in its queue: a worker popped it (into rq's
    intermediate queue) and was SIGKILLed before starting it. rq only notices after two registry
    cleanups a minute apart, which run every ten minutes; a live worker starts a popped job at once.
    """
    try:
        job = Job.fetch(job_id, connection=conn)
    except NoSuchJobError:
        return False
    if job.get_status(refresh=True) != JobStatus.QUEUED:
        return False
    queue = Queue(job.origin, connection=conn)
    if conn.lpos(queue.key, job_id) is not None:
        return False
    limbo = queue.intermediate_queue
    limbo.set_first_seen(job_id)
    first_seen = limbo.get_first_seen(job_id)
    if first_seen is None or first_seen > utcnow() - grace:
        return False
    limbo.remove(job_id)
    return True


def overdue_retry(job_id: str, conn, grace: timedelta) -> bool:
    """A retry scheduled more than ``grace`` ago that no scheduler has moved to its queue.

    rq's scheduler runs in one worker at a time under a lock that outlives a SIGKILLed worker by a
    minute, and other workers only try to take it over every ten minutes: meanwhile scheduled
    retries sit still although the job counts as live.
    """
    try:
        job = Job.fetch(job_id, connection=conn)
    except NoSuchJobError:
        return False
    if job.get_status(refresh=True) != JobStatus.SCHEDULED:
        return False
    try:
        due = ScheduledJobRegistry(job.origin, connection=conn).get_scheduled_time(job)
    except NoSuchJobError:
        return True  # scheduled, yet in no registry: nothing will ever run it
    if due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    return due < utcnow() - grace


def reconcile(mail_grace: timedelta | None = None, stale_after: timedelta = STALE_AFTER) -> dict[str, int]:
    if mail_grace is None:
        mail_grace = timedelta(seconds=float(current_app.config.get("RECONCILE_MAIL_GRACE_SECONDS") or 30))
    grace = horse_grace()
    conn = get_redis()
    summary = {"requests": 0, "abandoned": 0, "mail": 0}
    open_fulfilment = db.session.execute(
        select(DsrRequest).where(DsrRequest.status.in_([RequestStatus.APPROVED.value, RequestStatus.IN_PROGRESS.value]))
    ).scalars()
    for dsr in list(open_fulfilment):
        pending = fulfilment_job(dsr)
        if job_is_live(pending.job_id, conn):
            if not (
                is_abandoned(pending.job_id, dsr, conn, stale_after)
                or overdue_retry(pending.job_id, conn, grace)
                or dequeued_by_the_dead(pending.job_id, conn, grace)
            ):
                continue
            discard_job(Job.fetch(pending.job_id, connection=conn))
            summary["abandoned"] += 1
        if enqueue_now(pending, conn) is not None:
            summary["requests"] += 1
    cutoff = utcnow() - mail_grace
    # Queued mail, and mail whose send attempt died holding the claim (the lease has passed).
    queued_mail = db.session.execute(
        select(OutgoingMail.id).where(
            or_(
                and_(OutgoingMail.status == "queued", OutgoingMail.created_at < cutoff),
                and_(OutgoingMail.status == "sending", claimable()),
            )
        )
    ).scalars()
    for mail_id in list(queued_mail):
        pending = mail_job(mail_id)
        if job_is_live(pending.job_id, conn):
            if not (
                overdue_retry(pending.job_id, conn, mail_grace)
                or mail_abandoned(pending.job_id, conn, grace)
                or dequeued_by_the_dead(pending.job_id, conn, grace)
            ):
                continue
            discard_job(Job.fetch(pending.job_id, connection=conn))
        if enqueue_now(pending, conn) is not None:
            summary["mail"] += 1
    return summary
