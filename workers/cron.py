"""The ``rq cron`` schedule (run by ``flask cron``; ``flask dev`` starts it).

rq's scheduler has no leader election: run exactly one ``flask cron`` per deployment. Every job here
is idempotent, so a duplicate run after a restart does no harm.
"""

from __future__ import annotations

from rq.cron import CronScheduler

from workers import maintenance


def register_schedule(scheduler: CronScheduler) -> None:
    scheduler.register(maintenance.reconcile_job, queue_name="maintenance", interval=300, job_timeout=600)
