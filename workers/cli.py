"""The worker's own commands: ``flask worker``, ``flask cron`` and ``flask reconcile``.

They register through the ``flask.commands`` entry points in ``pyproject.toml``, not from
``app/cli.py``, so the app never imports the workers (the workers import the app, one way only).
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.extensions import db
from app.queue import WORKER_QUEUES


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
    worker = new_worker(names, conn)  # JSON jobs, allow-listed functions only (app.queue)
    worker.work(burst=burst, with_scheduler=True, logging_level="INFO")


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
