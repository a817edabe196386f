"""Redis connection, named RQ queues, and ``enqueue_after_commit``.

Jobs are registered on the SQLAlchemy session and sent to Redis only after the transaction that
made them necessary has committed (a rollback discards them), so a worker never sees a row that
does not exist yet. Job ids are deterministic (``fulfil:42``); an id that is already queued or
running is not enqueued again. The database stays the source of truth: ``reconcile`` re-enqueues
what Redis lost.

Redis is not trusted with code. Jobs travel as JSON (rq's ``JSONSerializer``, never its default
pickle: whoever can write to Redis could otherwise run anything in the worker when it unpickles a
job), and the worker runs only the job functions named in ``ALLOWED_JOBS``: ``AllowedJob`` refuses
any other name, a method call on an instance, and any callback, before importing or calling
anything. Every queue, fetch, worker and the cron scheduler here use both, so build them with
``get_queue``, ``fetch_job``, ``new_worker`` and ``CronScheduler`` rather than rq's own classes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from flask import current_app
from rq import Queue, Retry, Worker
from rq import cron as rq_cron
from rq.defaults import DEFAULT_RESULT_TTL
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import utcparse
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, scoped_session

from app.config import HEARTBEAT_GRACE_SECONDS
from app.redis_server import ensure_embedded_redis

if TYPE_CHECKING:
    from flask import Flask
    from rq.webhook import Webhook

QUEUE_NAMES = ("fulfilment", "mail", "maintenance")
# The order a worker listens in when no queue is named: mail first, so a notice never waits behind an export.
WORKER_QUEUES = ("mail", "fulfilment", "maintenance")
SERIALIZER = JSONSerializer
# The only functions a worker will run (``tests/functional/test_job_safety.py`` keeps it equal to the
# ``@job`` functions in ``workers``).
ALLOWED_JOBS = frozenset(
    {
        "workers.jobs.build_export",
        "workers.jobs.erase_subject",
        "workers.jobs.apply_corrections",
        "workers.jobs.apply_opt_out",
        "workers.jobs.send_decision",
        "workers.mail.send_mail",
        "workers.portal.send_links",
        "workers.maintenance.reconcile_job",
        "workers.maintenance.expire_unverified_job",
        "workers.maintenance.purge_exports_job",
        "workers.maintenance.retention_sweep_job",
        "workers.maintenance.deadline_reminders_job",
        "workers.maintenance.purge_records_job",
        "workers.maintenance.minimise_closed_requests_job",
        "workers.mailbox.read_mailbox_job",
    }
)
LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}

DEFAULTS = {
    "fulfilment": {"job_timeout": 3600, "result_ttl": 86400, "failure_ttl": 7 * 86400},
    "mail": {"job_timeout": 60, "result_ttl": 3600, "failure_ttl": 7 * 86400},
    "maintenance": {"job_timeout": 1800, "result_ttl": 3600, "failure_ttl": 7 * 86400},
}


def redis_url(app: Flask | None = None) -> str:
    app = app or current_app
    url = app.config.get("REDIS_URL")
    if not url and app.config.get("APP_ENV") == "production":
        raise RuntimeError("REDIS_URL is required in production; no embedded Redis is started")
    if not url:
        url = ensure_embedded_redis(Path(app.instance_path) / "redis")
        app.config["REDIS_URL"] = url
    return url


def get_redis(app: Flask | None = None) -> redis.Redis:
    app = app or current_app
    conn = app.extensions.get("dsr_redis")
    if conn is None:
        conn = redis.Redis.from_url(redis_url(app), socket_connect_timeout=2, socket_timeout=10)
        app.extensions["dsr_redis"] = conn
    return conn


class JobRefused(Exception):
    """A job from Redis that is not one of ours: the worker fails it without running anything."""


class AllowedJob(Job):
    """A job that resolves its function only from ``ALLOWED_JOBS`` and carries no callbacks.

    rq imports ``func_name`` (and any callback name) with ``import_attribute`` when the work horse runs
    the job; these properties are where it does, so a refused job imports nothing.
    """

    def _refusal(self) -> str | None:
        if self.func_name not in ALLOWED_JOBS:
            return f"{self.func_name!r} is not one of this project's jobs"
        if self.instance is not None:
            return "jobs are plain functions, not methods of an object from Redis"
        if self._success_callback_name or self._failure_callback_name or self._stopped_callback_name:
            return "this project's jobs have no callbacks"
        return None

    @property
    def func(self) -> Callable[..., Any]:
        refusal = self._refusal()
        if refusal:
            raise JobRefused(refusal)
        return super().func

    @property
    def success_callback(self) -> None:
        return self._no_callback(self._success_callback_name)

    @property
    def failure_callback(self) -> None:
        return self._no_callback(self._failure_callback_name)

    @property
    def stopped_callback(self) -> None:
        return self._no_callback(self._stopped_callback_name)

    @staticmethod
    def _no_callback(name: str | None) -> None:
        if name:
            raise JobRefused(f"callback {name!r} refused: this project's jobs have no callbacks")
        return None


def get_queue(name: str, connection: redis.Redis | None = None) -> Queue:
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=connection or get_redis(), serializer=SERIALIZER, job_class=AllowedJob)


def fetch_job(job_id: str, connection: redis.Redis | None = None) -> Job:
    """``Job.fetch`` with the project's serializer (raises ``NoSuchJobError``)."""
    return AllowedJob.fetch(job_id, connection=connection or get_redis(), serializer=SERIALIZER)


AnyWorker = TypeVar("AnyWorker", bound=Worker)


def new_worker(
    names: Iterable[str] = QUEUE_NAMES,
    connection: redis.Redis | None = None,
    worker_class: type[AnyWorker] = Worker,  # type: ignore[assignment]  # the default names the bound
) -> AnyWorker:
    """A worker on the named queues that reads JSON and runs only allowed jobs (``SimpleWorker`` in tests)."""
    conn = connection or get_redis()
    return worker_class(
        [get_queue(n, conn) for n in names], connection=conn, serializer=SERIALIZER, job_class=AllowedJob
    )


class _CronJob(rq_cron.CronJob):
    """rq 3.0's ``CronJob.enqueue`` builds ``Queue(name, connection)`` with the default pickle serializer;
    this one enqueues through ``get_queue`` (same pipeline, history and registry bookkeeping as rq's)."""

    def enqueue(self, connection: redis.Redis) -> Job:
        if not self.func:
            raise ValueError("CronJob has no function to enqueue")
        queue = get_queue(self.queue_name, connection)
        with connection.pipeline() as pipeline:
            job = queue.enqueue(self.func, args=self.args, kwargs=self.kwargs, **self.job_options, pipeline=pipeline)
            assert job.enqueued_at is not None  # set by ``enqueue`` (no dependencies, no schedule)
            enqueued = job.enqueued_at.timestamp()
            pipeline.zadd(self.job_history_key, {job.id: enqueued})
            pipeline.zremrangebyrank(self.job_history_key, 0, -(rq_cron.DEFAULT_CRON_JOB_HISTORY_LIMIT + 1))
            pipeline.expire(self.job_history_key, rq_cron.DEFAULT_CRON_JOB_HISTORY_TTL)
            rq_cron.cron_job_registry.add(self.name, pipeline, enqueue_timestamp=enqueued)
            pipeline.execute()
        return job


class CronScheduler(rq_cron.CronScheduler):
    """rq's cron scheduler whose jobs go out as JSON, to allowed functions only."""

    def register(  # rq's signature, so that every option rq takes reaches the job as it would in rq
        self,
        func: Callable[..., Any],
        queue_name: str,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[Any, Any] | None = None,
        interval: int | None = None,
        cron: str | None = None,
        job_timeout: int | None = None,
        result_ttl: int = DEFAULT_RESULT_TTL,
        ttl: int | None = None,
        failure_ttl: int | None = None,
        meta: dict[Any, Any] | None = None,
        webhooks: Sequence[Webhook] | None = None,
        name: str = "",
    ) -> rq_cron.CronJob:
        func_name = f"{func.__module__}.{func.__name__}"
        if func_name not in ALLOWED_JOBS:
            raise ValueError(f"{func_name} is not on the job allow-list (app.queue.ALLOWED_JOBS)")
        cron_job = _CronJob(
            queue_name=queue_name,
            func=func,
            args=args,
            kwargs=kwargs,
            interval=interval,
            cron=cron,
            job_timeout=job_timeout,
            result_ttl=result_ttl,
            ttl=ttl,
            failure_ttl=failure_ttl,
            meta=meta,
            webhooks=webhooks,
            name=name,
        )
        self._cron_jobs.append(cron_job)
        return cron_job


@dataclass
class PendingJob:
    queue: str
    func: str
    args: tuple[Any, ...] = ()
    job_id: str | None = None
    retry: Retry | None = None
    options: dict[str, Any] = field(default_factory=dict)


def is_live(job: Job) -> bool:
    """Whether rq still counts ``job`` as live (queued, started, deferred or scheduled), read afresh: the
    one liveness test that enqueueing, the reconciler and the tests use."""
    return job.get_status(refresh=True) in LIVE_STATUSES


def live_job(job_id: str, connection: redis.Redis | None = None) -> Job | None:
    """The job under ``job_id`` while it is live; None when there is none or it has finished or failed."""
    try:
        job = fetch_job(job_id, connection)
    except NoSuchJobError:
        return None
    return job if is_live(job) else None


def job_is_live(job_id: str, connection: redis.Redis | None = None) -> bool:
    return live_job(job_id, connection) is not None


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
        started = StartedJobRegistry(job.origin, connection=conn, serializer=SERIALIZER, job_class=AllowedJob)
        stale = [f"{job.id}:{e.decode() if isinstance(e, bytes) else e}" for e in conn.zrange(registry.key, 0, -1)]
        if stale:
            conn.zrem(started.key, *stale)
        conn.delete(registry.key)
        job.delete()


# How long the heartbeat in a leftover job hash (see ``clear_leftover``) must have been quiet before the id
# is taken for a new job: rq's worker beats for its work horse at least every 30 s.
LEFTOVER_GRACE = timedelta(seconds=HEARTBEAT_GRACE_SECONDS)


def leftover_hash(job_id: str, conn: redis.Redis) -> bool:
    """Is the job's key a hash rq cannot load as a job (no ``data``)? After Redis lost a job (FLUSHALL,
    a restart without persistence) its worker still writes its heartbeat and status into the empty key
    (``HSET rq:job:<id> last_heartbeat``): rq then reports no such job, yet ``unique=True`` refuses
    the id."""
    key = Job.key_for(job_id)
    return bool(conn.exists(key)) and not conn.hexists(key, "data")


def clear_leftover(job_id: str, conn: redis.Redis, quiet_for: timedelta = LEFTOVER_GRACE) -> bool:
    """Free the id of a leftover hash whose heartbeat has been quiet for ``quiet_for`` (its worker is
    gone); True when the id is free. A leftover that still beats belongs to a job still running."""
    if not leftover_hash(job_id, conn):
        return True
    key = Job.key_for(job_id)
    raw = conn.hget(key, "last_heartbeat")
    beat = None
    if raw:
        try:
            beat = utcparse(raw.decode() if isinstance(raw, bytes) else str(raw))
        except ValueError:
            beat = None
    if beat is not None and beat > datetime.now(UTC) - quiet_for:
        return False
    conn.delete(key)
    logging.getLogger(__name__).warning("queue: removed the leftover hash of job %s (its worker is gone)", job_id)
    return True


def enqueue_now(
    pending: PendingJob, connection: redis.Redis | None = None, leftover_grace: timedelta = LEFTOVER_GRACE
) -> Job | None:
    """Enqueue unless a live job with the same id exists. Returns the job, or None if deduplicated.

    rq overwrites a job hash enqueued twice under one id (and runs it twice), so a live id is
    skipped and a finished or failed one is deleted first; ``unique=True`` closes the race left.
    A leftover hash (``clear_leftover``) is removed once its heartbeat has been quiet ``leftover_grace``.
    """
    if pending.func not in ALLOWED_JOBS:
        raise ValueError(f"{pending.func!r} is not on the job allow-list (app.queue.ALLOWED_JOBS)")
    conn = connection or get_redis()
    opts = {**DEFAULTS[pending.queue], **pending.options}
    from app.logs import current_request_id

    rid = current_request_id()
    if rid and "meta" not in opts:
        opts["meta"] = {"request_id": rid}  # the job's log lines carry the id of the request that queued it
    if pending.job_id:
        try:
            existing = fetch_job(pending.job_id, conn)
        except NoSuchJobError:
            existing = None
            if not clear_leftover(pending.job_id, conn, leftover_grace):
                return None
        if existing is not None:
            if is_live(existing):
                return None
            discard_job(existing)
        opts["unique"] = True
    try:
        return get_queue(pending.queue, conn).enqueue(
            pending.func, *pending.args, job_id=pending.job_id, retry=pending.retry, **opts
        )
    except DuplicateJobError:
        return None


def enqueue_after_commit(session: Session | scoped_session[Any], pending: PendingJob) -> None:
    """Send ``pending`` to Redis once ``session`` commits; drop it on rollback."""
    session.info.setdefault("dsr_pending_jobs", []).append(pending)


def _after_commit(session: Session) -> None:
    pending = session.info.pop("dsr_pending_jobs", [])
    if not pending:
        return
    # ``current_app`` is a LocalProxy at run time; Flask's stubs type it as the Flask object itself.
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    conn = get_redis(app)
    for job in pending:
        try:
            enqueue_now(job, conn)
        except redis.RedisError:
            # The row is committed; the reconciler enqueues it once Redis is back.
            app.logger.warning("could not enqueue %s; reconcile will retry", job.job_id or job.func)


def _after_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop("dsr_pending_jobs", None)


_HOOKED = False


def init_app(app: Flask) -> None:
    """Install the commit hooks once per process (they look up the app when they run)."""
    global _HOOKED
    if _HOOKED:
        return
    from flask_sqlalchemy.session import Session as FlaskSession

    event.listen(FlaskSession, "after_commit", _after_commit)
    event.listen(FlaskSession, "after_soft_rollback", _after_rollback)
    _HOOKED = True
