"""The reconciler: the database is the source of truth, Redis only a delivery mechanism.

It finds approved or in-progress requests whose job is gone (Redis flushed) or abandoned (worker
killed: no live job, or a heartbeat older than the stale limit) and queued mail with no live job,
and enqueues them again under their deterministic ids. Safe to run at any time, as often as wanted.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.dsr.models import DsrRequest
from app.dsr.services import fulfilment_job
from app.dsr.states import RequestStatus
from app.extensions import db
from app.mail import mail_job
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from app.queue import enqueue_now, get_redis, job_is_live


def reconcile(mail_grace: timedelta = timedelta(seconds=30)) -> dict[str, int]:
    conn = get_redis()
    summary = {"requests": 0, "mail": 0}
    open_fulfilment = db.session.execute(
        select(DsrRequest).where(DsrRequest.status.in_([RequestStatus.APPROVED.value, RequestStatus.IN_PROGRESS.value]))
    ).scalars()
    for dsr in open_fulfilment:
        pending = fulfilment_job(dsr)
        if job_is_live(pending.job_id, conn):
            continue
        if enqueue_now(pending, conn) is not None:
            summary["requests"] += 1
    cutoff = utcnow() - mail_grace
    queued_mail = db.session.execute(
        select(OutgoingMail.id).where(OutgoingMail.status == "queued", OutgoingMail.created_at < cutoff)
    ).scalars()
    for mail_id in queued_mail:
        pending = mail_job(mail_id)
        if job_is_live(pending.job_id, conn):
            continue
        if enqueue_now(pending, conn) is not None:
            summary["mail"] += 1
    return summary
