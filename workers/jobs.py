"""Fulfilment jobs: ``build_export``, ``erase_subject``, ``apply_corrections``.

Each takes a request id, reloads the request, returns early when there is nothing to do, moves it
``approved -> in_progress`` (resuming if it is already in progress: a killed worker's job is re-run
by the reconciler), does the work, and completes it in one transaction with the mail to the subject.
Progress goes to the job's meta and to the row (``record_progress``), which doubles as a heartbeat.
Transient errors (Stripe or the export store unreachable, database or Redis hiccups) are re-raised
while rq has retries left; any other error, or the last retry, moves the request to ``failed`` and alerts staff.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, cast

import redis
from flask import current_app
from rq import get_current_job
from sqlalchemy import Table, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm.attributes import flag_modified

from app.audit import Actor, record_event
from app.dsr import packages, services
from app.dsr.law import law_for
from app.dsr.models import DsrRequest, Export
from app.dsr.notices import correction_context, deletion_context
from app.dsr.states import RequestStatus
from app.exports import store as export_store
from app.exports.writer import PackageResult, build_package
from app.extensions import db
from app.mail import queue_mail
from app.models_base import utcnow
from app.redact import redact_all
from app.sources import BY_KEY, SOURCES, CorrectionRefused, Subject, find_subject
from app.sources.resolve import resolve_subject
from app.sources.stripe_billing import BillingError
from app.staff.models import Role, StaffUser
from workers.context import job

S = RequestStatus
WORKER = Actor.system("worker")
TRANSIENT = (OperationalError, redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (BillingError, export_store.StoreError)):
        return exc.transient
    return isinstance(exc, TRANSIENT)


class Progress:
    """Mirror progress into the job's meta and the request row, at most every ``every`` seconds."""

    def __init__(self, request_id: int, every: float = 1.0):
        self.request_id = request_id
        self.every = every
        self.last = 0.0
        self.job = get_current_job()

    def __call__(self, rows: int, total: int, note: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        percent = int(rows * 100 / total) if total else 0
        percent = min(percent, 99)
        if self.job is not None:
            self.job.meta.update(progress_percent=percent, progress_rows=rows, progress_note=note)
            self.job.save_meta()
        services.record_progress(self.request_id, percent, rows, note)


def _run(request_id: int, kind: str, work: Callable[[DsrRequest, Progress], str]) -> str:
    dsr = db.session.get(DsrRequest, request_id)
    if dsr is None:
        return "gone"
    if dsr.request_type != kind:
        return f"wrong job for a {dsr.request_type} request"
    if dsr.status not in (S.APPROVED.value, S.IN_PROGRESS.value):
        return f"nothing to do ({dsr.status})"
    if dsr.demo:
        # Seeded demo data: fulfilled only once a staff member approves or retries it themselves.
        return "demo request: not fulfilled"
    current = get_current_job()
    if dsr.status == S.APPROVED.value:
        dsr = services.transition(dsr, S.IN_PROGRESS, WORKER)
    else:
        dsr = services.lock_request(dsr.id)
        record_event("request.fulfilment_resumed", WORKER, dsr=dsr, data={"pid": os.getpid()})
    dsr.job_id = current.id if current is not None else dsr.job_id
    dsr.heartbeat_at = utcnow()
    db.session.commit()
    progress = Progress(dsr.id)
    try:
        return work(dsr, progress)
    except services.TransitionError as exc:
        # Another run (say, a work horse that outlived its killed worker) finished it first.
        db.session.rollback()
        current_app.logger.warning("request %s: %s; this run stands down", request_id, exc)
        return f"superseded ({exc})"
    except Exception as exc:
        db.session.rollback()
        retries_left = getattr(current, "retries_left", None) or 0
        message = redact_all(f"{type(exc).__name__}: {exc}")[:2000]
        if is_transient(exc) and retries_left > 0:
            _note_error(request_id, f"{message} (will retry; {retries_left} retries left)")
            raise
        current_app.logger.exception("fulfilment of request %s failed", request_id)
        fail_request(request_id, message)
        return "failed"


def _note_error(request_id: int, message: str) -> None:
    try:
        table = cast(Table, DsrRequest.__table__)  # a mapped class's table (typed as any FromClause)
        db.session.execute(table.update().where(DsrRequest.id == request_id).values(last_error=message))
        db.session.commit()
    except Exception:  # noqa: BLE001 - the original error matters more
        db.session.rollback()


def fail_request(request_id: int, message: str) -> None:
    """Move the request to ``failed``, keep the error for staff, and alert them by email."""
    dsr = db.session.get(DsrRequest, request_id)
    if dsr is None or dsr.status not in (S.APPROVED.value, S.IN_PROGRESS.value):
        return
    dsr = services.transition(dsr, S.FAILED, WORKER, data={"error": message.split(":", 1)[0][:80]})
    dsr.last_error = message
    for to in staff_recipients():
        queue_mail(
            to,
            "fulfil_staff_alert",
            f"Fulfilment failed: {dsr.reference}",
            dsr=dsr,
            error=message,
        )
    db.session.commit()


def staff_recipients() -> list[str]:
    configured = current_app.config.get("STAFF_ALERT_EMAIL")
    if configured:
        return [a.strip() for a in str(configured).split(",") if a.strip()]
    return list(
        db.session.execute(
            select(StaffUser.email)
            .where(StaffUser.active.is_(True), StaffUser.role.in_([Role.ADMIN.value, Role.OFFICER.value]))
            .order_by(StaffUser.id)
        ).scalars()
    )


# --- access ---------------------------------------------------------------------------------------


@job
def build_export(request_id: int) -> str:
    return _run(request_id, "access", _export)


def _export(dsr: DsrRequest, progress: Progress) -> str:
    subject = resolve_subject(dsr).subject
    expected = sum(s.count(subject) for s in SOURCES if s.key != "stripe")
    if expected == 0 and not _billing_held(subject):
        return _no_data(dsr, "fulfil_no_data", f"We found no personal data linked to your address ({dsr.reference})")
    export = db.session.execute(
        select(Export).where(Export.request_id == dsr.id, Export.status == "building").order_by(Export.id).limit(1)
    ).scalar_one_or_none()
    if export is None:
        export = Export(request_id=dsr.id, status="building")
        db.session.add(export)
        db.session.flush()
    export.filename = f"{dsr.reference}-{export.id}.zip"
    db.session.commit()
    store = export_store.current()
    store.discard_partial(export.filename)
    progress(0, expected, "building export", force=True)
    result = build_package(
        reference=dsr.reference,
        subject=subject,
        store=store,
        filename=export.filename,
        progress=lambda rows, total: progress(rows, total, "building export"),
        expected_rows=expected,
        jurisdiction=dsr.jurisdiction,
    )
    export_id, filename = export.id, export.filename
    try:
        return _record_export(dsr.id, export_id, result)
    except services.TransitionError:
        raise  # another run recorded this package (the same name) first: the object is its now
    except Exception:
        db.session.rollback()
        _discard_unrecorded(store, export_id, filename)
        raise


def _record_export(request_id: int, export_id: int, result: PackageResult) -> str:
    """Record the uploaded package and send its link (or hold it): one transaction."""
    dsr = services.lock_request(request_id)
    export = cast(Export, db.session.get(Export, export_id))  # made and committed before the build
    export.size_bytes = result.size
    export.sha256 = result.sha256
    export.manifest = result.manifest
    # A package that withholds another person's data (Art. 15(4)) always waits for an officer, who weighs
    # each record and may release it before the link goes out, as the package's README says.
    if packages.review_required() or result.withheld:
        packages.hold_for_review(dsr, export, WORKER, result.rows, staff_recipients(), withheld=len(result.withheld))
        db.session.commit()
        return f"export {export.id}: {result.rows} rows, {result.size} bytes, held for an officer's release"
    packages.deliver(dsr, export, WORKER, result.rows)
    db.session.commit()
    return f"export {export.id}: {result.rows} rows, {result.size} bytes"


def _discard_unrecorded(store: export_store.ExportStore, export_id: int, filename: str) -> None:
    """The package is stored but the commit recording it failed: remove it, or it would stay (with
    personal data) where no purge looks, as purges go by delivered rows. Kept only when its row reads
    as recorded after all (a commit that failed to answer but happened); a retry builds it again."""
    try:
        status = db.session.execute(select(Export.status).where(Export.id == export_id)).scalar_one_or_none()
        db.session.rollback()
    except SQLAlchemyError:
        db.session.rollback()
        status = None  # cannot tell: a failed commit most likely recorded nothing
    if status not in (None, "building"):
        return
    try:
        store.delete(filename)
    except export_store.StoreError:
        current_app.logger.warning("export %s: the package could not be removed after its commit failed", export_id)


def _billing_held(subject: Subject) -> bool:
    """Whether Stripe holds a customer for the subject (True when it cannot be checked: then the
    package is built and says billing was not checked, rather than claiming we hold nothing)."""
    from app.sources.stripe_billing import configured

    if not configured():
        return False
    return bool(BY_KEY["stripe"].customer_ids(subject))


def _no_data(dsr: DsrRequest, template: str, subject_line: str) -> str:
    """We hold nothing linked to the request's identifiers: its own outcome, told as exactly that."""
    dsr = services.lock_request(dsr.id)
    dsr.outcome = "no_data"
    services.notify_subject(dsr, template, subject_line)
    services.transition(dsr, S.COMPLETED, WORKER, data={"outcome": "no_data"})
    db.session.commit()
    return "no personal data found"


# --- deletion -------------------------------------------------------------------------------------


@job
def erase_subject(request_id: int) -> str:
    return _run(request_id, "deletion", _erase)


def _erase(dsr: DsrRequest, progress: Progress, batch: int | None = None) -> str:
    from app.dsr.minimise import erase_portal_copies
    from app.sources import erasure_plan
    from app.sources.erasure import drift, erase_everything

    request_id = dsr.id
    resolution = resolve_subject(dsr)
    plan = dsr.plan
    if not plan:
        plan = {"items": erasure_plan(resolution.subject)}
        dsr.plan = plan
        db.session.commit()
    report_so_far = dsr.report or {}
    resumed = "state" in report_so_far

    def checkpoint(state: dict[str, Any]) -> None:
        row = db.session.get_one(DsrRequest, request_id)
        row.report = {"state": state}
        flag_modified(row, "report")
        db.session.commit()

    def started(state: dict[str, Any]) -> None:
        checkpoint(state)
        if not resumed and "drift_checked" not in state:
            state["drift_checked"] = True
            found = drift(plan, state["before"])
            if found:
                _report_drift(request_id, found)

    kwargs = {"batch": batch} if batch else {}
    report = erase_everything(
        resolution.subject,
        plan=plan,
        state=report_so_far.get("state"),
        checkpoint=started,
        progress=lambda rows, total, note: progress(rows, total, note),
        **kwargs,
    )
    dsr = services.lock_request(request_id)
    dsr.report = report
    dsr.outcome = report["outcome"]
    flag_modified(dsr, "report")
    services.notify_subject(
        dsr,
        "fulfil_deletion_report",
        f"Your deletion request is done ({dsr.reference})"
        if report["outcome"] == "completed"
        else f"We hold no personal data linked to you ({dsr.reference})",
        outcome=report["outcome"],
        **deletion_context(report["items"], law_for(dsr.jurisdiction)),
    )
    erase_portal_copies(dsr, resolution.subject.emails)
    services.transition(dsr, S.COMPLETED, WORKER, data={"report": _short(report), "outcome": report["outcome"]})
    db.session.commit()
    return "erased: " + ", ".join(f"{i['category']} {i['action']} {i['count']}" for i in report["items"])


def _report_drift(request_id: int, found: dict[str, list[int]]) -> None:
    """The job found more or fewer rows than the plan staff approved: say so in the audit and to staff."""
    dsr = db.session.get_one(DsrRequest, request_id)
    record_event("request.plan_drift", WORKER, dsr=dsr, data=found)
    for to in staff_recipients():
        lines = [
            f"{name}: the plan said {planned}, the job found {actual}" for name, (planned, actual) in found.items()
        ]
        queue_mail(to, "fulfil_staff_drift", f"Deletion plan drift: {dsr.reference}", dsr=dsr, drift_lines=lines)
    db.session.commit()


def _short(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: i.get(k) for k in ("category", "action", "count")} for i in report["items"]]


# --- correction -----------------------------------------------------------------------------------


@job
def apply_corrections(request_id: int) -> str:
    return _run(request_id, "correction", _correct)


def _correct(dsr: DsrRequest, progress: Progress) -> str:
    request_id = dsr.id
    items = [c for c in dsr.corrections if c.decision == "approved"]
    applied_emails = [
        c.proposed_value
        for c in items
        if c.field == "email" and c.applied_at and (c.result or "").startswith("Account email updated")
    ]
    subject = resolve_subject(dsr).subject
    if subject.account_id is None:
        for email in applied_emails:
            subject = find_subject(email)
            if subject.account_id is not None:
                break
    old_email = subject.account_email
    todo = [c for c in items if c.applied_at is None]
    for n, item in enumerate(todo, 1):
        results: list[str] = []
        if item.current_value is None:
            item.current_value = _current_value(subject, item.field)
        try:
            results.append(BY_KEY["account"].correct(subject, item.field, item.proposed_value))
            stripe_result = BY_KEY["stripe"].correct(subject, item.field, item.proposed_value)
            if stripe_result:
                results.append(stripe_result)
        except CorrectionRefused as exc:
            results = [str(exc)]
        except BillingError as exc:
            if exc.transient:
                raise
            results.append(f"Stripe not updated: {exc}")
        item.result = " ".join(results)[:254]
        item.applied_at = utcnow()
        db.session.commit()
        progress(n, len(todo), "applying corrections", force=True)
    dsr = services.lock_request(request_id)
    changed = [
        c for c in dsr.corrections if c.field == "email" and (c.result or "").startswith("Account email updated")
    ]
    if changed and old_email and old_email.lower() != (changed[-1].proposed_value or "").lower():
        # The old address is told that the account's address changed (it may not have been them).
        queue_mail(
            old_email,
            "email_changed_notice",
            "The email address of your ChatGPTTech account was changed",
            dsr=dsr,
            verified=False,
        )
    services.notify_subject(
        dsr,
        "fulfil_correction_done",
        f"Your correction request is done ({dsr.reference})",
        **correction_context(dsr.corrections),
    )
    services.transition(dsr, S.COMPLETED, WORKER, data={"applied": [{"field": c.field} for c in dsr.corrections]})
    db.session.commit()
    return f"{len(todo)} correction(s) applied"


def _current_value(subject: Subject, field: str) -> str | None:
    """What the platform holds before a correction is applied (recorded beside the new value)."""
    from app.platform.models import Account
    from app.sources.account import CORRECTABLE

    column = CORRECTABLE.get(field)
    if subject.account_id is None or column is None:
        return None
    acct = db.session.get(Account, subject.account_id)
    value = getattr(acct, column, None) if acct is not None else None
    return None if value is None else str(value)[:254]


# --- opt-out, restriction, objection --------------------------------------------------------------


@job
def apply_opt_out(request_id: int) -> str:
    return _run(request_id, "opt_out", _opt_out)


def _opt_out(dsr: DsrRequest, progress: Progress) -> str:
    """Set the account's analytics opt-out, read it back, and tell the subject what was done."""
    request_id = dsr.id
    subject = resolve_subject(dsr).subject
    result = BY_KEY["account"].set_opt_out(subject) if subject.account_id is not None else None
    dsr = services.lock_request(request_id)
    dsr.report = {"opt_out": result}
    dsr.outcome = "completed" if result else "no_data"
    services.notify_subject(dsr, "fulfil_opt_out", f"Your opt-out is recorded ({dsr.reference})", opted_out=result)
    services.transition(dsr, S.COMPLETED, WORKER, data={"opt_out": bool(result)})
    db.session.commit()
    return "opted out" if result else "no account to opt out"


@job
def send_decision(request_id: int) -> str:
    dsr = db.session.get(DsrRequest, request_id)
    return _run(request_id, dsr.request_type if dsr else "", _decision)


def _decision(dsr: DsrRequest, progress: Progress) -> str:
    """A restriction or objection: the officer's recorded decision is what the subject is sent."""
    dsr = services.lock_request(dsr.id)
    decision = (dsr.plan or {}).get("decision") or ""
    services.notify_subject(dsr, "fulfil_decision", f"Our answer to your request {dsr.reference}", decision=decision)
    services.transition(dsr, S.COMPLETED, WORKER, data={"decision": "sent"})
    db.session.commit()
    return "decision sent"
