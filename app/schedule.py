"""When each scheduled job last succeeded, so a stopped ``flask cron`` is noticed.

The daily jobs keep promises the privacy policy makes (usage logs deleted after 12 months, closed
accounts after 30 days, exports purged, requests minimised): each records its last success in the
database (``AppSetting`` rows ``job-ok:<name>``). ``/readyz`` reports them and turns not-ready when a
daily job that has run before has not succeeded for ``SCHEDULE_STALE_HOURS`` (26); the five-minute
reconcile run alerts staff about it once a day.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app

from app.dsr.models import AppSetting
from app.extensions import db
from app.models_base import utcnow

DAILY = (
    "retention_sweep_job",
    "purge_records_job",
    "minimise_closed_requests_job",
    "deadline_reminders_job",
)
PREFIX = "job-ok:"


def record_success(name: str, now: datetime | None = None) -> None:
    """In its own short transaction: the job's own work is committed already."""
    now = now or utcnow()
    key = PREFIX + name
    row = db.session.get(AppSetting, key)
    if row is None:
        db.session.add(AppSetting(key=key, value=now.isoformat()))
    else:
        row.value = now.isoformat()
    db.session.commit()


def last_successes() -> dict[str, datetime]:
    rows = db.session.query(AppSetting).filter(AppSetting.key.startswith(PREFIX, autoescape=True)).all()
    found = {}
    for row in rows:
        try:
            found[row.key[len(PREFIX) :]] = datetime.fromisoformat(row.value)
        except ValueError:
            continue
    return found


def stale(now: datetime | None = None) -> list[str]:
    """Daily jobs that ran before but not within ``SCHEDULE_STALE_HOURS``."""
    now = now or utcnow()
    limit = timedelta(hours=float(current_app.config.get("SCHEDULE_STALE_HOURS") or 26))
    seen = last_successes()
    return sorted(name for name in DAILY if name in seen and now - seen[name] > limit)
