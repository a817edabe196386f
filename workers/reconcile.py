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
from datetime import UTC, datetime, timedelta
from typing import overload

import redis
from flask import current_app
from rq import Worker
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
from app.queue import (
    LEFTOVER_GRACE,
    SERIALIZER,
    AllowedJob,
    discard_job,
    enqueue_now,
    get_queue,
    get_redis,
    leftover_hash,
    live_job,
)
from workers.mail import dead_claim

STALE_AFTER = timedelta(minutes=10)
# rq runs each job in a work horse with its own process group, which can outlive a killed worker
# parent and still be working: a dead worker only means an abandoned job once the request's own
# heartbeat (written at least every second while rows flow) has also been quiet this long
# (``RECONCILE_HORSE_GRACE_SECONDS`` overrides it).
HORSE_GRACE = LEFTOVER_GRACE


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


def worker_is_dead(job: Job, conn: redis.Redis) -> bool:
    if not job.worker_name:
        return False
    key = Worker.redis_worker_namespace_prefix + job.worker_name
    worker = Worker.find_by_key(key, connection=conn, job_class=AllowedJob, serializer=SERIALIZER)
    if worker is None or not worker.pid or not worker.hostname:
        # Gone, or only the heartbeat a live worker wrote back after Redis was flushed: nothing says
        # it is still running this job, so the callers' grace on the heartbeats decides.
        return True
    if worker.hostname == socket.gethostname() and worker.pid and not _pid_alive(worker.pid):
        return True
    return False


@overload
def _aware(moment: datetime) -> datetime: ...
@overload
def _aware(moment: datetime | None) -> datetime | None: ...
def _aware(moment: datetime | None) -> datetime | None:
    """rq keeps naive UTC datetimes."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def is_abandoned(job: Job, dsr: DsrRequest, conn: redis.Redis, stale_after: timedelta) -> bool:
    """A started job nobody is running any more."""
    if job.get_status() != JobStatus.STARTED:
        return False
    row_beat = dsr.heartbeat_at or dsr.started_at
    if worker_is_dead(job, conn) and (row_beat is None or row_beat < utcnow() - horse_grace()):
        return True
    cutoff = utcnow() - stale_after
    job_beat = _aware(job.last_heartbeat or job.started_at)
    return (job_beat is None or job_beat < cutoff) and (row_beat is None or row_beat < cutoff)


def mail_abandoned(job: Job, conn: redis.Redis, grace: timedelta) -> bool:
    """A mail job still marked started whose worker is gone and which has been quiet for ``grace``.

    rq itself only fails it once its timeout has passed and some worker cleans its registries, which
    can take ten minutes. A work horse that outlived its worker cannot send beside the next attempt:
    the message's send claim lasts longer than the mail job's timeout (``workers.mail.send_lease``).
    """
    if job.get_status() != JobStatus.STARTED or not worker_is_dead(job, conn):
        return False
    beat = _aware(job.last_heartbeat or job.started_at)
    return beat is None or beat < utcnow() - grace


def dequeued_by_the_dead(job: Job, conn: redis.Redis, grace: timedelta) -> bool:
    """A job still 'queued' that is no longer in its queue: a worker popped it (into rq's
    intermediate queue) and was SIGKILLed before starting it. rq only notices after two registry
    cleanups a minute apart, which run every ten minutes; a live worker starts a popped job at once.
    """
    if job.get_status() != JobStatus.QUEUED:
        return False
    queue = get_queue(job.origin, conn)
    if conn.lpos(queue.key, job.id) is not None:
        return False
    limbo = queue.intermediate_queue
    limbo.set_first_seen(job.id)
    first_seen = limbo.get_first_seen(job.id)
    if first_seen is None or first_seen > utcnow() - grace:
        return False
    limbo.remove(job.id)
    return True


def overdue_retry(job: Job, conn: redis.Redis, grace: timedelta) -> bool:
    """A retry scheduled more than ``grace`` ago that no scheduler has moved to its queue.

    rq's scheduler runs in one worker at a time under a lock that outlives a SIGKILLed worker by a
    minute, and other workers only try to take it over every ten minutes: meanwhile scheduled
    retries sit still although the job counts as live.
    """
    if job.get_status() != JobStatus.SCHEDULED:
        return False
    try:
        registry = ScheduledJobRegistry(job.origin, connection=conn, serializer=SERIALIZER, job_class=AllowedJob)
        due = registry.get_scheduled_time(job)
    except NoSuchJobError:
        return True  # scheduled, yet in no registry: nothing will ever run it
    return _aware(due) < utcnow() - grace


def reconcile(mail_grace: timedelta | None = None, stale_after: timedelta = STALE_AFTER) -> dict[str, int]:
    if mail_grace is None:
        mail_grace = timedelta(seconds=float(current_app.config.get("RECONCILE_MAIL_GRACE_SECONDS") or 30))
    grace = horse_grace()
    conn = get_redis()
    summary = {"requests": 0, "abandoned": 0, "mail": 0}
    open_fulfilment = db.session.execute(
        select(DsrRequest).where(
            DsrRequest.status.in_([RequestStatus.APPROVED.value, RequestStatus.IN_PROGRESS.value]),
            # Seeded demo requests are fulfilled only when a staff member approves or retries them.
            DsrRequest.demo.is_(False),
        )
    ).scalars()
    for dsr in list(open_fulfilment):
        pending = fulfilment_job(dsr)
        assert pending.job_id is not None  # fulfilment jobs have deterministic ids
        job = live_job(pending.job_id, conn)
        if job is not None:
            if not (
                is_abandoned(job, dsr, conn, stale_after)
                or overdue_retry(job, conn, grace)
                or dequeued_by_the_dead(job, conn, grace)
            ):
                continue
            discard_job(job)
            summary["abandoned"] += 1
        elif leftover_hash(pending.job_id, conn):
            # Redis lost the job while a worker ran it (it wrote its heartbeat back into the empty key).
            # Its work horse may outlive the worker: the request's own heartbeat says whether it still works.
            row_beat = dsr.heartbeat_at or dsr.started_at
            if row_beat is not None and row_beat > utcnow() - grace:
                continue
            summary["abandoned"] += 1
        if enqueue_now(pending, conn, leftover_grace=grace) is not None:
            summary["requests"] += 1
    cutoff = utcnow() - mail_grace
    # Queued mail, and mail whose send attempt died holding the claim (the lease has passed).
    queued_mail = db.session.execute(
        select(OutgoingMail.id).where(
            or_(
                and_(OutgoingMail.status == "queued", OutgoingMail.created_at < cutoff),
                dead_claim(),
            )
        )
    ).scalars()
    for mail_id in list(queued_mail):
        pending = mail_job(mail_id)
        assert pending.job_id is not None  # mail jobs have deterministic ids
        job = live_job(pending.job_id, conn)
        if job is not None:
            if not (
                overdue_retry(job, conn, mail_grace)
                or mail_abandoned(job, conn, grace)
                or dequeued_by_the_dead(job, conn, grace)
            ):
                continue
            discard_job(job)
        if enqueue_now(pending, conn, leftover_grace=grace) is not None:
            summary["mail"] += 1
    return summary
