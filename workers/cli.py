"""The worker's own commands: ``flask worker``, ``flask cron`` and ``flask reconcile``.

They register through the ``flask.commands`` entry points in ``pyproject.toml``, not from
``app/cli.py``, so the app never imports the workers (the workers import the app, one way only).
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import click
import redis
from flask.cli import with_appcontext
from rq import Worker
from rq.exceptions import StopRequested

from app.extensions import db
from app.queue import WORKER_QUEUES

log = logging.getLogger(__name__)


@click.command("worker", help="Run an RQ worker inside the app context.")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--queues", "-q", multiple=True, help="Queues to listen on (default: all).")
@with_appcontext
def worker_cmd(burst: bool, queues: tuple[str, ...]) -> None:
    # Import the job modules once here, so each forked work horse starts with them loaded.
    import workers.jobs
    import workers.mail
    import workers.maintenance
    import workers.portal  # noqa: F401
    from app.queue import get_redis, new_worker
    from workers.context import mark_parent_process

    names = [n for q in queues for n in q.split(",") if n] or list(WORKER_QUEUES)
    conn = get_redis()
    for engine in db.engines.values():
        engine.dispose()
    mark_parent_process()
    # JSON jobs, allow-listed functions only (app.queue).
    work_through_outages(lambda: new_worker(names, conn, worker_class=SchedulerReviving), conn, burst=burst)


class SchedulerReviving(Worker):
    """rq's worker, which also starts its scheduler again when that process died, and records a stop
    request in a field of its own.

    rq's scheduler process exits at the first Redis error its heartbeat meets (a Redis restart or
    failover), and the worker only looks at it in its ten-minute maintenance: meanwhile every retry
    (Stripe or the store unreachable, a mail server down) waited for the reconciler. The worker's own
    heartbeat (after each job, every ``job_monitoring_interval`` while one runs, between idle waits)
    checks instead.
    """

    revive_pause = 5.0
    _revived_at = 0.0
    # Set by SIGTERM/SIGINT. rq keeps its own record in two private fields that differ by state (a date
    # for any request, a flag only for one that came while a job ran); this one is ours.
    stop_asked = False

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_asked = True
        super().request_stop(signum, frame)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        super().heartbeat(timeout, pipeline)
        if pipeline is None:  # inside a pipeline the call is only queued; the next plain heartbeat checks
            self.revive_scheduler()

    def revive_scheduler(self) -> None:
        scheduler = self.scheduler
        # No process: another worker's scheduler holds the locks (or burst mode), rq's own case.
        process = getattr(scheduler, "_process", None)
        if self.is_horse or scheduler is None or process is None or process.is_alive() or self.stop_asked:
            return
        if time.monotonic() - self._revived_at < self.revive_pause:
            return
        self._revived_at = time.monotonic()
        log.warning("worker %s: its scheduler process had died; starting it again", self.name)
        scheduler.acquire_locks(auto_start=True)


# How long a worker that lost Redis waits between tries to reach it again (seconds, the last repeats).
RECONNECT_PAUSES = (1, 2, 5, 10)
REDIS_AWAY = (redis.ConnectionError, redis.TimeoutError)


def work_through_outages(
    make_worker: Callable[[], SchedulerReviving], conn: redis.Redis, *, burst: bool = False
) -> None:
    """Run rq workers until one stops because it was asked to (SIGTERM, or an empty queue in burst mode).

    rq's worker quits at the first Redis error it meets while a job runs (the work horse's end or a
    heartbeat falling inside a Redis restart or failover), and its teardown raises again while Redis
    is still away: without this, a Redis restart took every busy worker with it. A worker that quit any
    other way is replaced by a new one (registered afresh) once Redis answers again; the job it was
    running is the reconciler's to re-enqueue, as after a kill. Making a worker asks Redis too (rq
    names its connection and reads its address): a worker started while Redis is away waits for it.
    Between workers a SIGTERM or SIGINT stops at once (rq's handlers belong to a worker that has quit).
    """
    last: SchedulerReviving | None = None
    try:
        while True:
            _stop_on_signal()
            try:
                worker = make_worker()
            except REDIS_AWAY as exc:
                log.warning("Redis is unreachable (%s); the worker starts once it answers", exc)
                _pause_until_redis(conn)
                continue
            try:
                worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
            except REDIS_AWAY as exc:
                log.warning("worker %s lost Redis (%s); starting a new worker once it answers", worker.name, exc)
            _stop_on_signal()
            _retire(worker)
            if worker.stop_asked or burst:
                return
            last = worker
            _pause_until_redis(conn)
            log.warning("worker %s quit on an error (logged above); a new worker takes over", last.name)
    except StopRequested:
        return


def _stop_now(signum: int, frame: FrameType | None) -> None:
    raise StopRequested()


def _stop_on_signal() -> None:
    """Until the next worker installs its own handlers, SIGTERM and SIGINT end the loop (StopRequested)."""
    signal.signal(signal.SIGTERM, _stop_now)
    signal.signal(signal.SIGINT, _stop_now)


def _pause_until_redis(conn: redis.Redis) -> None:
    time.sleep(RECONNECT_PAUSES[0])
    wait_for_redis(conn)


def _retire(worker: SchedulerReviving) -> None:
    """Stop what a quit worker may leave running. Its work horse (its own process group) outlives it
    when the worker quit on a Redis error mid-job: it is killed, as a killed worker's is, and the
    reconciler re-enqueues its job. Its pubsub thread (redis-py's) went on reconnecting for a dead
    worker when the teardown's unsubscribe raised while Redis was away."""
    pid = worker.horse_pid
    if pid:
        try:
            running = os.waitpid(pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:  # reaped already: the pid is no longer ours to signal
            running = False
        if running:
            log.warning("worker %s quit mid-job; stopping its work horse %s", worker.name, pid)
            worker.kill_horse()
            worker.wait_for_horse()
    thread = worker.pubsub_thread
    if thread is not None and thread.is_alive():
        thread.stop()
        thread.join(timeout=1)


def wait_for_redis(conn: redis.Redis) -> None:
    for attempt in itertools.count():
        try:
            conn.ping()
            return
        except REDIS_AWAY:
            time.sleep(RECONNECT_PAUSES[min(attempt, len(RECONNECT_PAUSES) - 1)])


@click.command("cron", help="Run the rq cron scheduler with the schedule in workers/cron.py.")
@with_appcontext
def cron_cmd() -> None:
    from app.queue import CronScheduler, get_redis
    from workers.cron import register_schedule

    scheduler = CronScheduler(connection=get_redis())
    register_schedule(scheduler)
    scheduler.start()


@click.command("reconcile", help="Re-enqueue approved or running requests and queued mail with no live job.")
@with_appcontext
def reconcile_cmd() -> None:
    from workers.reconcile import reconcile

    summary = reconcile()
    click.echo(", ".join(f"{k}: {v}" for k, v in summary.items()) or "nothing to do")
