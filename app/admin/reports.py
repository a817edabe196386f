"""Volumes and timeliness: monthly figures per type, the CCPA yearly metrics, the request register CSV.

Counts are aggregate SQL (CASE per month); durations need each closed request's dates, so only the
closed requests of the chosen year are read, two timestamps each.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from flask import Response, render_template, request
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import aliased

from app.admin.guard import bp, requires
from app.audit import Actor, record_event
from app.csvsafe import csv_download, csv_line
from app.dsr.deadlines import lawful_due
from app.dsr.models import DsrRequest
from app.dsr.states import DENIAL_LABELS, DenialReason, Jurisdiction, RequestStatus, RequestType
from app.extensions import db
from app.models_base import utcnow
from app.staff.models import StaffUser

S = RequestStatus
CCPA_LABELS = {
    "access": "Requests to know",
    "deletion": "Requests to delete",
    "correction": "Requests to correct",
    "opt_out": "Requests to opt out of sale or sharing",
    "restriction": "Requests to limit",
    "objection": "Objections",
}
# The request register (CCPA regs section 7101: the request, its date, the manner it was made, the date
# and nature of the response; GDPR Art. 5(2) accountability): every deadline as it was, and why it moved.
REGISTER_HEADER = [
    "reference",
    "type",
    "jurisdiction",
    "manner",
    "status",
    "outcome",
    "received",
    "original deadline",
    "extended on",
    "extended to",
    "extension reason",
    "lawful deadline",
    "responded",
    "on time",
    "reviewed by",
    "decided at",
    "denial reason",
]


def _month_bounds(year: int) -> list[tuple[datetime, datetime]]:
    bounds: list[tuple[datetime, datetime]] = []
    for m in range(1, 13):
        start = datetime(year, m, 1, tzinfo=UTC)
        end = datetime(year + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
        bounds.append((start, end))
    return bounds


def days_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 86400


def _summary(durations: list[float], on_time: int) -> dict[str, Any]:
    return {
        "median_days": round(statistics.median(durations), 1) if durations else None,
        "mean_days": round(statistics.fmean(durations), 1) if durations else None,
        "on_time_share": (on_time / len(durations)) if durations else None,
    }


def monthly_report(year: int) -> list[dict[str, Any]]:
    """One row per (month, type) with any activity: received, completed, denied, median/mean days to
    complete and the share completed on time. Completion and denial count in the month they closed."""
    months = _month_bounds(year)
    received_cols = [
        func.coalesce(func.sum(case((and_(DsrRequest.received_at >= a, DsrRequest.received_at < b), 1), else_=0)), 0)
        for a, b in months
    ]
    received: dict[str, list[int]] = {t.value: [0] * 12 for t in RequestType}
    stmt = (
        select(DsrRequest.request_type, *received_cols)
        .where(DsrRequest.received_at >= months[0][0], DsrRequest.received_at < months[-1][1])
        .group_by(DsrRequest.request_type)
    )
    for row in db.session.execute(stmt):
        if row[0] in received:
            received[row[0]] = [int(v or 0) for v in row[1:]]
    closed_rows = db.session.execute(
        select(
            DsrRequest.request_type,
            DsrRequest.status,
            DsrRequest.received_at,
            DsrRequest.closed_at,
            DsrRequest.jurisdiction,
            DsrRequest.paused_seconds,
            DsrRequest.extended_at,
        ).where(
            DsrRequest.status.in_([S.COMPLETED.value, S.DENIED.value]),
            DsrRequest.closed_at >= months[0][0],
            DsrRequest.closed_at < months[-1][1],
        )
    ).all()
    buckets: dict[tuple[int, str], dict[str, Any]] = {}
    for kind, status, received_at, closed_at, jurisdiction, paused, extended_at in closed_rows:
        assert closed_at is not None  # the query keeps requests closed in the year
        b = buckets.setdefault((closed_at.month, kind), {"completed": 0, "denied": 0, "durations": [], "on_time": 0})
        if status == S.DENIED.value:
            b["denied"] += 1
            continue
        b["completed"] += 1
        b["durations"].append(days_between(received_at, closed_at))
        b["on_time"] += int(closed_at <= lawful_due(jurisdiction, received_at, paused or 0, extended_at))
    rows: list[dict[str, Any]] = []
    for m in range(1, 13):
        for kind in (t.value for t in RequestType):
            b = buckets.get((m, kind), {"completed": 0, "denied": 0, "durations": [], "on_time": 0})
            got = received[kind][m - 1]
            if not (got or b["completed"] or b["denied"]):
                continue
            rows.append(
                {
                    "month": f"{year}-{m:02d}",
                    "type": kind,
                    "received": got,
                    "completed": b["completed"],
                    "denied": b["denied"],
                    **_summary(b["durations"], b["on_time"]),
                }
            )
    return rows


def ccpa_metrics(year: int) -> list[dict[str, Any]]:
    """CCPA regulations section 7102: per type, requests received in the year, complied with in whole or
    in part, denied, and the median days to respond substantively (completion or denial)."""
    start, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    rows = db.session.execute(
        select(
            DsrRequest.request_type,
            DsrRequest.status,
            DsrRequest.received_at,
            DsrRequest.closed_at,
            DsrRequest.paused_seconds,
            DsrRequest.extended_at,
        ).where(
            DsrRequest.jurisdiction == Jurisdiction.CCPA.value,
            DsrRequest.received_at >= start,
            DsrRequest.received_at < end,
            DsrRequest.status != S.UNVERIFIED.value,
            DsrRequest.status != S.EXPIRED.value,
        )
    ).all()
    out: list[dict[str, Any]] = []
    for kind in (t.value for t in RequestType):
        mine = [r for r in rows if r[0] == kind]
        # Responded substantively (completed or denied): (received, closed, paused seconds, extended at).
        done = [(r[2], r[3], r[4], r[5]) for r in mine if r[1] in (S.COMPLETED, S.DENIED) and r[3] is not None]
        answered = [days_between(received, closed) for received, closed, _, _ in done]
        out.append(
            {
                "type": kind,
                "label": CCPA_LABELS[kind],
                "received": len(mine),
                "complied": sum(1 for r in mine if r[1] == S.COMPLETED.value),
                "denied": sum(1 for r in mine if r[1] == S.DENIED.value),
                "median_days": round(statistics.median(answered), 1) if answered else None,
                "on_time": sum(
                    1
                    for received, closed, paused, extended_at in done
                    if closed <= lawful_due("ccpa", received, paused or 0, extended_at)
                ),
            }
        )
    return out


def _year_arg() -> int:
    raw = request.args.get("year") or ""
    now = utcnow()
    if raw.isdecimal() and len(raw) == 4 and 2000 <= int(raw) <= now.year + 1:
        return int(raw)
    return now.year


@bp.route("/reports")
@requires("auditor")
def reports() -> str:
    year = _year_arg()
    from app.admin.charts import report_charts

    monthly = monthly_report(year)
    return render_template(
        "admin/reports.html",
        charts=report_charts(monthly),
        year=year,
        years=list(range(utcnow().year, utcnow().year - 5, -1)),
        monthly=monthly,
        ccpa=ccpa_metrics(year),
    )


def register_rows() -> Iterator[list[Any]]:
    reviewer = aliased(StaffUser)
    stmt = (
        select(
            DsrRequest.reference,
            DsrRequest.request_type,
            DsrRequest.jurisdiction,
            DsrRequest.channel,
            DsrRequest.status,
            DsrRequest.outcome,
            DsrRequest.received_at,
            DsrRequest.original_due_at,
            DsrRequest.extended_at,
            DsrRequest.due_at,
            DsrRequest.extension_reason,
            DsrRequest.paused_seconds,
            DsrRequest.closed_at,
            reviewer.email,
            DsrRequest.decided_at,
            DsrRequest.denial_code,
        )
        .outerjoin(reviewer, reviewer.id == DsrRequest.decided_by_id)
        .order_by(DsrRequest.received_at, DsrRequest.id)
    )
    # Sixteen columns: wider than select()'s typed overloads, and mypy cannot unpack the partly typed Row.
    rows: Iterable[Sequence[Any]] = db.session.execute(stmt.execution_options(yield_per=1000))
    for row in rows:
        (ref, kind, jur, channel, status, outcome, received, original, extended_at, due, why, paused, closed,
         reviewed_by, decided, denial) = row  # fmt: skip
        denial_label = DENIAL_LABELS.get(DenialReason(denial)) if denial in set(DenialReason) else denial
        lawful = lawful_due(jur, received, paused or 0, extended_at) if original else None
        responded = closed if status in (S.COMPLETED.value, S.DENIED.value) else None
        on_time = "" if responded is None or lawful is None else ("yes" if responded <= lawful else "no")
        yield [
            ref,
            kind,
            jur,
            channel,
            status,
            outcome,
            received,
            original,
            extended_at,
            due if extended_at else None,
            why,
            lawful,
            responded,
            on_time,
            reviewed_by,
            decided,
            denial_label,
        ]


@bp.route("/reports/register.csv")
@requires("auditor")
def register_csv() -> Response:
    from flask_login import current_user

    record_event("report.register_exported", Actor.staff(current_user))
    db.session.commit()

    def generate() -> Iterator[str]:
        yield csv_line(REGISTER_HEADER)
        for row in register_rows():
            yield csv_line(row)

    return csv_download(generate(), f"request-register-{utcnow():%Y%m%d}.csv")
