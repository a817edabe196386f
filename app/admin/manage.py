"""The audit log viewer (read-only: there is no update or delete path). Staff management: ``app.admin.staff``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TypedDict

from flask import render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import Select, func, select

from app.admin.guard import bp, requires
from app.admin.queries import LIST_PAGE_SIZE, filter_date, page_count
from app.audit import Actor, record_event
from app.audit.models import AuditEvent
from app.csvsafe import csv_download, csv_line
from app.extensions import db
from app.models_base import utcnow


class AuditFilters(TypedDict):
    event: str
    actor: str
    reference: str
    date_from: date | None
    date_to: date | None
    page: int


def audit_filters(args: Mapping[str, str]) -> AuditFilters:
    page = args.get("page") or "1"
    return {
        "event": (args.get("event") or "").strip()[:64],
        "actor": (args.get("actor") or "").strip()[:254],
        "reference": (args.get("reference") or "").strip().upper()[:32],
        "date_from": filter_date(args.get("date_from")),
        "date_to": filter_date(args.get("date_to")),
        "page": int(page) if page.isdecimal() and 0 < len(page) < 6 and int(page) > 0 else 1,
    }


def audit_statement(f: AuditFilters) -> Select[AuditEvent]:
    stmt = select(AuditEvent)
    if f["event"]:
        stmt = stmt.where(AuditEvent.event == f["event"])
    if f["actor"]:
        stmt = stmt.where(func.lower(AuditEvent.actor_label).startswith(f["actor"].lower(), autoescape=True))
    if f["reference"]:
        stmt = stmt.where(AuditEvent.request_reference == f["reference"])
    if f["date_from"]:
        stmt = stmt.where(AuditEvent.occurred_at >= datetime.combine(f["date_from"], datetime.min.time(), UTC))
    if f["date_to"]:
        end = datetime.combine(f["date_to"], datetime.min.time(), UTC) + timedelta(days=1)
        stmt = stmt.where(AuditEvent.occurred_at < end)
    return stmt


@bp.route("/audit")
@requires("auditor")
def audit_log() -> ResponseReturnValue:
    f = audit_filters(request.args)
    stmt = audit_statement(f)
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    events = db.session.execute(
        stmt.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
        .limit(LIST_PAGE_SIZE)
        .offset((f["page"] - 1) * LIST_PAGE_SIZE)
    ).scalars()
    names = db.session.execute(select(AuditEvent.event).distinct().order_by(AuditEvent.event)).scalars().all()
    args = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in f.items() if v and k != "page"}
    return render_template(
        "admin/audit.html",
        events=list(events),
        total=total,
        f=f,
        args=args,
        names=names,
        pages=page_count(total, LIST_PAGE_SIZE),
    )


@bp.route("/audit.csv")
@requires("auditor")
def audit_csv() -> ResponseReturnValue:
    f = audit_filters(request.args)
    record_event("audit.exported", Actor.staff(current_user), data={k: str(v) for k, v in f.items() if v})
    db.session.commit()
    stmt = audit_statement(f).order_by(AuditEvent.occurred_at, AuditEvent.id)

    def generate() -> Iterator[str]:
        yield csv_line(["id", "occurred_at", "event", "actor_type", "actor", "reference", "public", "message", "ip"])
        for ev in db.session.execute(stmt.execution_options(yield_per=1000)).scalars():
            yield csv_line(
                [
                    ev.id,
                    ev.occurred_at,
                    ev.event,
                    ev.actor_type,
                    ev.actor_label,
                    ev.request_reference,
                    ev.public,
                    ev.message,
                    ev.ip,
                ]
            )

    return csv_download(generate(), f"audit-{utcnow():%Y%m%d}.csv")
