"""Redis connection, named RQ queues, and ``enqueue_after_commit``.

Jobs are registered on the SQLAlchemy session and sent to Redis only after the transaction that
made them necessary has committed (a rollback discards them), so a worker never sees a row that
does not exist yet. Job ids are deterministic (``fulfil:42``); an id that is already queued or
running is not enqueued again. The database stays the source of truth: ``reconcile`` re-enqueues
what Redis lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from flask import current_app
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.redis_server import ensure_embedded_redis

QUEUE_NAMES = ("fulfilment", "mail", "maintenance")
LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}

DEFAULTS = {
    "fulfilment": {"job_timeout": 3600, "result_ttl": 86400, "failure_ttl": 7 * 86400},
    "mail": {"job_timeout": 60, "result_ttl": 3600, "failure_ttl": 7 * 86400},
    "maintenance": {"job_timeout": 1800, "result_ttl": 3600, "failure_ttl": 7 * 86400},
}


def redis_url(app=None) -> str:
    app = app or current_app
    url = app.config.get("REDIS_URL")
    if not url:
        url = ensure_embedded_redis(Path(app.instance_path) / "redis")
        app.config["REDIS_URL"] = url
    return url


def get_redis(app=None) -> redis.Redis:
    app = app or current_app
    conn = app.extensions.get("dsr_redis")
    if conn is None:
        conn = redis.Redis.from_url(redis_url(app), socket_connect_timeout=2, socket_timeout=10)
        app.extensions["dsr_redis"] = conn
    return conn


def get_queue(name: str, connection: redis.Redis | None = None) -> Queue:
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=connection or get_redis())


@dataclass
class PendingJob:
    queue: str
    func: str
    args: tuple = ()
    job_id: str | None = None
    retry: Retry | None = None
    options: dict[str, Any] = field(default_factory=dict)


def job_is_live(job_id: str, connection: redis.Redis | None = None) -> bool:
    try:
        job = Job.fetch(job_id, connection=connection or get_redis())
    except NoSuchJobError:
        return False
    return job.get_status(refresh=True) in LIVE_STATUSES


def discard_job(job: Job) -> None:
    """``job.delete()``, also for a job a SIGKILLed worker left behind.

    rq keeps the ids of a job's executions in a registry that outlives the execution hashes
    themselves; once a killed worker's execution hash has expired, ``Job.delete`` raises ValueError
    (and before this, one such job stopped every later ``reconcile`` run). Drop the dangling ids
    (and their entries in the started registry) and delete again.
    """
    try:
        job.delete()
    except ValueError:
        conn = job.connection
        registry = job.execution_registry
        started = StartedJobRegistry(job.origin, connection=conn)
        stale = [f"{job.id}:{e.decode() if isinstance(e, bytes) else e}" for e in conn.zrange(registry.key, 0, -1)]
        if stale:
            conn.zrem(started.key, *stale)
        conn.delete(registry.key)
        job.delete()


def enqueue_now(pending: PendingJob, connection: redis.Redis | None = None) -> Job | None:
    """Enqueue unless a live job with the same id exists. Returns the job, or None if deduplicated.

    rq overwrites a job hash enqueued twice under one id (and runs it twice), so a live id is
    skipped and a finished or failed one is deleted first; ``unique=True`` closes the race left.
    """
    conn = connection or get_redis()
    opts = {**DEFAULTS[pending.queue], **pending.options}
    if pending.job_id:
        try:
            existing = Job.fetch(pending.job_id, connection=conn)
        except NoSuchJobError:
            existing = None
        if existing is not None:
            if existing.get_status(refresh=True) in LIVE_STATUSES:
                return None
            discard_job(existing)
        opts["unique"] = True
    try:
        return get_queue(pending.queue, conn).enqueue(
            pending.func, *pending.args, job_id=pending.job_id, retry=pending.retry, **opts
        )
    except DuplicateJobError:
        return None


def enqueue_after_commit(session: Session, pending: PendingJob) -> None:
    """Send ``pending`` to Redis once ``session`` commits; drop it on rollback."""
    session.info.setdefault("dsr_pending_jobs", []).append(pending)


def _after_commit(session: Session) -> None:
    pending = session.info.pop("dsr_pending_jobs", [])
    if not pending:
        return
    app = current_app._get_current_object()
    conn = get_redis(app)
    for job in pending:
        try:
            enqueue_now(job, conn)
        except redis.RedisError:
            # The row is committed; the reconciler enqueues it once Redis is back.
            app.logger.warning("could not enqueue %s; reconcile will retry", job.job_id or job.func)


def _after_rollback(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop("dsr_pending_jobs", None)


_HOOKED = False


def init_app(app) -> None:
    """Install the commit hooks once per process (they look up the app when they run)."""
    global _HOOKED
    if _HOOKED:
        return
    from flask_sqlalchemy.session import Session as FlaskSession

    event.listen(FlaskSession, "after_commit", _after_commit)
    event.listen(FlaskSession, "after_soft_rollback", _after_rollback)
    _HOOKED = True
