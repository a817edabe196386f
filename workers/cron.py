"""The ``rq cron`` schedule (run by ``flask cron``; ``flask dev`` starts it).

rq's scheduler has no leader election: run exactly one ``flask cron`` per deployment. Every job here
is idempotent, so a duplicate run after a restart does no harm. Times are UTC.
"""

from __future__ import annotations

from app.queue import CronScheduler
from workers import mailbox, maintenance


def register_schedule(scheduler: CronScheduler) -> None:
    q = "maintenance"
    # Re-enqueue approved or in-progress requests whose job was lost (Redis flushed, worker killed).
    scheduler.register(maintenance.reconcile_job, queue_name=q, interval=300, job_timeout=600)
    # Unverified requests expire after UNVERIFIED_EXPIRY_DAYS.
    scheduler.register(maintenance.expire_unverified_job, queue_name=q, cron="7 * * * *", job_timeout=600)
    # Delete export files whose download window (DOWNLOAD_DAYS) has passed.
    scheduler.register(maintenance.purge_exports_job, queue_name=q, cron="17 * * * *", job_timeout=600)
    # Usage logs and support messages past the inventory's periods; accounts closed CLOSED_ACCOUNT_DAYS ago.
    scheduler.register(maintenance.retention_sweep_job, queue_name=q, cron="30 2 * * *", job_timeout=3 * 3600)
    # Daily deadline reminders to staff.
    scheduler.register(maintenance.deadline_reminders_job, queue_name=q, cron="0 7 * * *", job_timeout=600)
    # Closed requests lose their personal data CLOSED_REQUEST_GRACE_DAYS after closing (minimisation).
    scheduler.register(maintenance.minimise_closed_requests_job, queue_name=q, cron="15 3 * * *", job_timeout=1800)
    # Request records RECORD_RETENTION_DAYS after closing.
    scheduler.register(maintenance.purge_records_job, queue_name=q, cron="45 3 * * *", job_timeout=1800)
    # The privacy mailbox (MAIL_IMAP_URL): replies join their thread, other mail waits as intake items.
    scheduler.register(mailbox.read_mailbox_job, queue_name=q, interval=60, job_timeout=600)
