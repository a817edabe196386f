"""Scheduled maintenance jobs (see ``workers/cron.py``). Each is idempotent and safe to run twice."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar

from flask import current_app
from sqlalchemy import delete, or_, select, update

from app.audit import Actor, record_event
from app.dsr.minimise import minimise_closed_requests
from app.dsr.models import (
    CorrectionItem,
    DsrRequest,
    Export,
    ReleasedRecord,
    RequestIdentifier,
    RequestMessage,
    RequestNote,
    Token,
    clock_running,
    due_soon_window,
)
from app.dsr.states import CLOSED, RequestStatus
from app.exports import store
from app.extensions import db
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from app.schedule import record_success
from app.sources.inventory import retention_days
from workers.context import job

SYSTEM = Actor.system("maintenance")
P = ParamSpec("P")
R = TypeVar("R")


def scheduled(func: Callable[P, R]) -> Callable[P, R]:
    """Record the job's success (``app.schedule``), so a stopped cron is noticed."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        result = func(*args, **kwargs)
        record_success(func.__name__)
        return result

    return wrapper


def alert_stale_jobs(now: datetime | None = None) -> list[str]:
    """Tell staff, once a day, about daily jobs that stopped succeeding (cron stopped, or a job fails)."""
    from app.dsr.models import AppSetting
    from app.mail import queue_mail
    from app.schedule import stale
    from workers.jobs import staff_recipients

    now = now or utcnow()
    late = stale(now)
    key = f"stale-alert:{now:%Y-%m-%d}"
    if not late or db.session.get(AppSetting, key) is not None:
        return late
    db.session.add(AppSetting(key=key, value=",".join(late)[:254]))
    for to in staff_recipients():
        queue_mail(to, "fulfil_staff_stale_jobs", "Scheduled privacy jobs have stopped", jobs=late)
    record_event("schedule.stale_jobs", SYSTEM, data={"jobs": late})
    db.session.commit()
    return late


@job
@scheduled
def reconcile_job() -> dict[str, int]:
    from workers.reconcile import reconcile

    summary = reconcile()
    summary["stale_jobs"] = len(alert_stale_jobs())
    return summary


@job
@scheduled
def expire_unverified_job() -> int:
    from app.dsr.services import expire_unverified

    n = expire_unverified(utcnow())
    db.session.commit()
    return n


@job
@scheduled
def purge_exports_job() -> int:
    return purge_exports()


def purge_exports(now: datetime | None = None) -> int:
    """Delete the files of exports past their expiry; the row stays (status purged) for the audit."""
    now = now or utcnow()
    due = db.session.execute(
        select(Export).where(Export.status.in_(["ready", "expired"]), Export.expires_at <= now)
    ).scalars()
    n = 0
    for export in list(due):
        store.delete(export.filename)
        export.status = "purged"
        export.purged_at = now
        record_event("export.purged", SYSTEM, dsr=export.dsr, data={"export_id": export.id})
        n += 1
    db.session.commit()
    return n


@job
@scheduled
def retention_sweep_job() -> dict[str, int]:
    return retention_sweep()


def retention_sweep(now: datetime | None = None) -> dict[str, int]:
    """Usage logs and support messages past their inventory period (the export filters by the same
    cutoffs); accounts closed more than ``CLOSED_ACCOUNT_DAYS`` ago, erased like a deletion."""
    from app.platform.models import Account
    from app.sources.base import DELETE_BATCH
    from app.sources.erasure import erase_everything
    from app.sources.stripe_billing import BillingError
    from app.sources.support import SupportSource
    from app.sources.usage import UsageSource

    now = now or utcnow()
    usage_cutoff = UsageSource().retention_cutoff(now)  # the cutoff the export filters by, too
    usage = UsageSource().sweep(usage_cutoff, DELETE_BATCH) if usage_cutoff else 0
    support_cutoff = SupportSource().retention_cutoff(now)  # the inventory's period (support_messages)
    support = SupportSource().sweep(support_cutoff, DELETE_BATCH) if support_cutoff else 0
    closed_cutoff = now - timedelta(days=retention_days("account", "CLOSED_ACCOUNT_DAYS"))
    closed = db.session.execute(
        select(Account.id, Account.email).where(Account.status == "closed", Account.closed_at < closed_cutoff)
    ).all()
    erased, errors = 0, 0
    for account_id, email in closed:
        try:
            erase_everything(email, account_id=account_id)
        except BillingError as exc:
            errors += 1
            current_app.logger.warning("retention: account %s not erased yet: %s", account_id, exc)
            continue
        erased += 1
        record_event("retention.account_erased", SYSTEM, data={"account_id": account_id})
    record_event(
        "retention.swept",
        SYSTEM,
        data={
            "usage_rows_deleted": usage,
            "support_messages_deleted": support,
            "accounts_erased": erased,
            "errors": errors,
        },
    )
    db.session.commit()
    return {
        "usage_rows_deleted": usage,
        "support_messages_deleted": support,
        "accounts_erased": erased,
        "errors": errors,
    }


@job
@scheduled
def deadline_reminders_job() -> int:
    return deadline_reminders()


def deadline_reminders(now: datetime | None = None) -> int:
    """Email staff the open requests that are overdue or due soon (``DUE_SOON_DAYS``), on hold or not,
    and those waiting for the subject's answer for ``SUBJECT_REMINDER_DAYS``; remind those subjects too."""
    from app.dsr.services import notify_subject
    from app.mail import queue_mail
    from workers.jobs import staff_recipients

    now = now or utcnow()
    window = due_soon_window()
    rows = list(
        db.session.execute(
            select(DsrRequest)
            .where(clock_running(), DsrRequest.due_at <= now + window)
            .order_by(DsrRequest.due_at)
            .limit(500)
        ).scalars()
    )
    wait = timedelta(days=int(current_app.config["SUBJECT_REMINDER_DAYS"]))
    waiting = list(
        db.session.execute(
            select(DsrRequest)
            .where(
                DsrRequest.status == RequestStatus.ON_HOLD.value,
                DsrRequest.waiting_since.is_not(None),
                DsrRequest.waiting_since <= now - wait,
                or_(DsrRequest.subject_reminded_at.is_(None), DsrRequest.subject_reminded_at <= now - wait),
            )
            .order_by(DsrRequest.waiting_since)
            .limit(500)
        ).scalars()
    )
    from app.mailbox.models import InboundMail

    # Mail at the privacy address that no officer has turned into a request or dismissed for a day: a
    # request by email runs from the day it arrived, whether or not anyone has entered it yet.
    unread = list(
        db.session.execute(
            select(InboundMail)
            .where(InboundMail.status == "new", InboundMail.fetched_at <= now - timedelta(days=1))
            .order_by(InboundMail.received_at)
            .limit(100)
        ).scalars()
    )
    for dsr in waiting:
        notify_subject(dsr, "subject_reminder", f"We are waiting for your answer ({dsr.reference})")
        dsr.subject_reminded_at = now
        record_event("request.subject_reminded", SYSTEM, dsr=dsr)
    if not rows and not waiting and not unread:
        db.session.commit()
        return 0
    # (every row has a due date: the query compared it)
    overdue = [r for r in rows if r.due_at is not None and r.due_at < now]
    due_soon = [r for r in rows if r.due_at is not None and r.due_at >= now]
    sent = 0
    for to in staff_recipients():
        queue_mail(
            to,
            "fulfil_staff_reminder",
            f"Privacy requests: {len(overdue)} overdue, {len(due_soon)} due soon, {len(waiting)} waiting"
            + (f", {len(unread)} mail{'' if len(unread) == 1 else 's'} not handled" if unread else ""),
            today=now,
            overdue=overdue,
            due_soon=due_soon,
            waiting=waiting,
            unread_mail=unread,
            days=window.days,
        )
        sent += 1
    db.session.commit()
    return sent


@job
@scheduled
def minimise_closed_requests_job() -> int:
    return minimise_closed_requests()


@job
@scheduled
def purge_records_job() -> int:
    return purge_records()


def purge_records(now: datetime | None = None) -> int:
    """Delete request records (and the subject data in them) ``RECORD_RETENTION_DAYS`` after closing."""
    now = now or utcnow()
    cutoff = now - timedelta(days=retention_days("requests", "RECORD_RETENTION_DAYS"))
    ids = list(
        db.session.execute(
            select(DsrRequest.id)
            .where(DsrRequest.status.in_([s.value for s in CLOSED]), DsrRequest.closed_at < cutoff)
            .limit(5000)
        ).scalars()
    )
    if not ids:
        return 0
    for filename in db.session.execute(select(Export.filename).where(Export.request_id.in_(ids))).scalars():
        store.delete(filename)
    db.session.execute(delete(Token).where(Token.request_id.in_(ids)))
    db.session.execute(delete(Export).where(Export.request_id.in_(ids)))
    db.session.execute(delete(CorrectionItem).where(CorrectionItem.request_id.in_(ids)))
    # Explicitly, as for every child table: SQLite enforces no foreign keys here, so ON DELETE CASCADE alone
    # would leave orphans (released_record, migration 0008).
    for model in (RequestIdentifier, RequestNote, RequestMessage, ReleasedRecord):
        db.session.execute(delete(model).where(model.request_id.in_(ids)))
    db.session.execute(delete(OutgoingMail).where(OutgoingMail.request_id.in_(ids)))
    # The mailbox's record of a message outlives the request (minimised long before): it is what keeps
    # the message from being read in again.
    from app.mailbox.models import InboundMail

    db.session.execute(update(InboundMail).where(InboundMail.request_id.in_(ids)).values(request_id=None))
    db.session.execute(
        update(InboundMail).where(InboundMail.related_request_id.in_(ids)).values(related_request_id=None)
    )
    db.session.execute(update(DsrRequest).where(DsrRequest.duplicate_of_id.in_(ids)).values(duplicate_of_id=None))
    db.session.execute(delete(DsrRequest).where(DsrRequest.id.in_(ids)))
    record_event("retention.records_purged", SYSTEM, data={"count": len(ids), "request_ids": ids[:100]})
    db.session.commit()
    return len(ids)
