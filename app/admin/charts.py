"""Server-rendered SVG charts for the dashboard (no script, no CDN, no inline style).

Colours and sizes are SVG presentation attributes (``fill=``, ``stroke=``), which the strict CSP
allows because they are not CSS. The figures come from aggregate SQL (one query per chart).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape
from sqlalchemy import and_, case, func, select

from app.dsr.models import DsrRequest
from app.dsr.states import RequestStatus, RequestType
from app.extensions import db

WEEKS = 12
TYPE_COLOURS = {
    "access": "#0969da",
    "correction": "#bf8700",
    "deletion": "#cf222e",
    "opt_out": "#1a7f37",
    "restriction": "#8250df",
    "objection": "#57606a",
    "median days": "#0969da",
}


@dataclass
class Month:
    """A chart slot labelled by its month (the reports page's charts)."""

    label: str


@dataclass
class Week:
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        return f"{self.start:%d %b}"


def weeks_ending(now: datetime, count: int = WEEKS) -> list[Week]:
    """The last ``count`` Monday-started weeks, the current one last."""
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return [Week(monday - timedelta(weeks=i), monday - timedelta(weeks=i - 1)) for i in range(count - 1, -1, -1)]


def requests_per_week(now: datetime) -> tuple[list[Week], dict[str, list[int]]]:
    weeks = weeks_ending(now)
    cols = [
        func.coalesce(
            func.sum(case((and_(DsrRequest.received_at >= w.start, DsrRequest.received_at < w.end), 1), else_=0)), 0
        )
        for w in weeks
    ]
    # Naming every type makes this one range of the (request_type, received_at) index per type: with
    # the range on received_at alone, SQLite walked the whole index to group by type, and PostgreSQL
    # read the whole table, so the chart's cost grew with years of history outside its window.
    stmt = (
        select(DsrRequest.request_type, *cols)
        .where(
            DsrRequest.request_type.in_([t.value for t in RequestType]),
            DsrRequest.received_at >= weeks[0].start,
            DsrRequest.received_at < weeks[-1].end,
        )
        .group_by(DsrRequest.request_type)
    )
    series = {t.value: [0] * len(weeks) for t in RequestType}
    for row in db.session.execute(stmt):
        if row[0] in series:
            series[row[0]] = [int(v or 0) for v in row[1:]]
    return weeks, series


def on_time_per_week(now: datetime) -> tuple[list[Week], list[int], list[int]]:
    """Completed requests per week of completion, and how many met their lawful deadline (the same
    judgement as the reports and the register: ``deadlines.lawful_due``, lawful pauses included)."""
    from app.dsr.deadlines import lawful_due

    weeks = weeks_ending(now)
    # One range of the (status, closed_at, due_at) index: only completed requests closed in the window.
    rows = db.session.execute(
        select(
            DsrRequest.closed_at,
            DsrRequest.received_at,
            DsrRequest.jurisdiction,
            DsrRequest.paused_seconds,
            DsrRequest.extended_at,
        ).where(
            DsrRequest.status == RequestStatus.COMPLETED.value,
            DsrRequest.closed_at >= weeks[0].start,
            DsrRequest.closed_at < weeks[-1].end,
        )
    ).all()
    done, ok = [0] * len(weeks), [0] * len(weeks)
    for closed, received, jurisdiction, paused, extended_at in rows:
        assert closed is not None  # the query keeps requests closed in the window
        i = min(int((closed - weeks[0].start).total_seconds() // (7 * 86400)), len(weeks) - 1)
        done[i] += 1
        ok[i] += int(closed <= lawful_due(jurisdiction, received, paused or 0, extended_at))
    return weeks, done, ok


def _frame(width: int, height: int, title: str, body: list[str]) -> Markup:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        *body,
        "</svg>",
    ]
    return Markup("".join(parts))  # noqa: S704 - every interpolated text above and below is escaped


def bar_chart(weeks: list, series: dict[str, list[int]], title: str = "Requests received per week, by type") -> Markup:
    width, height, left, bottom, top = 640, 240, 36, 40, 16
    plot_h = height - bottom - top
    peak = max([sum(vals) for vals in zip(*series.values(), strict=False)] + [1])
    slot = (width - left - 8) / len(weeks)
    bar_w = slot * 0.7
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 4}" y2="{top + plot_h}" stroke="#d0d7de"/>',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end" font-size="11" fill="#57606a">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11" fill="#57606a">0</text>',
    ]
    for i, week in enumerate(weeks):
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h
        for kind, values in series.items():
            v = values[i]
            if not v:
                continue
            h = plot_h * v / peak
            y -= h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{TYPE_COLOURS.get(kind, "#57606a")}"><title>{escape(kind)}, {escape(week.label)}: '
                f"{v}</title></rect>"
            )
        if i % 2 == 0 or len(weeks) <= 6:
            body.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="10" '
                f'fill="#57606a">{escape(week.label)}</text>'
            )
    lx = left
    for kind in series:
        body.append(f'<rect x="{lx}" y="{height - 12}" width="10" height="10" fill="{TYPE_COLOURS.get(kind)}"/>')
        body.append(f'<text x="{lx + 14}" y="{height - 3}" font-size="11" fill="#24292f">{escape(kind)}</text>')
        lx += 90
    return _frame(width, height, title, body)


def on_time_chart(
    weeks: list, done: list[int], ok: list[int], title: str = "Share of requests completed on time, per week"
) -> Markup:
    width, height, left, bottom, top = 640, 200, 40, 28, 16
    plot_h = height - bottom - top
    slot = (width - left - 8) / len(weeks)
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 4}" y2="{top + plot_h}" stroke="#d0d7de"/>',
        f'<line x1="{left}" y1="{top}" x2="{width - 4}" y2="{top}" stroke="#eaeef2"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11" fill="#57606a">100%</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11" fill="#57606a">0%</text>',
    ]
    points = []
    for i, week in enumerate(weeks):
        cx = left + i * slot + slot / 2
        if done[i]:
            rate = ok[i] / done[i]
            cy = top + plot_h * (1 - rate)
            points.append(f"{cx:.1f},{cy:.1f}")
            colour = "#1a7f37" if rate >= 0.9 else "#bf8700" if rate >= 0.7 else "#cf222e"
            body.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colour}"><title>Week of {escape(week.label)}: '
                f"{ok[i]} of {done[i]} on time ({rate:.0%})</title></circle>"
            )
        if i % 2 == 0:
            body.append(
                f'<text x="{cx:.1f}" y="{height - 8}" text-anchor="middle" font-size="10" fill="#57606a">'
                f"{escape(week.label)}</text>"
            )
    if len(points) > 1:
        body.insert(0, f'<polyline points="{" ".join(points)}" fill="none" stroke="#0969da" stroke-width="2"/>')
    return _frame(width, height, title, body)


def report_charts(monthly: list[dict]) -> dict[str, Markup]:
    """The reports page's charts, from its monthly table: volumes by type, on-time rate, median days."""
    months = sorted({r["month"] for r in monthly})
    if not months:
        return {}
    slots = [Month(m) for m in months]
    kinds = sorted({r["type"] for r in monthly})
    by = {(r["month"], r["type"]): r for r in monthly}
    volumes = {k: [by.get((m, k), {}).get("received", 0) for m in months] for k in kinds}
    done = [sum(by.get((m, k), {}).get("completed", 0) for k in kinds) for m in months]
    ok = [
        round(
            sum((by.get((m, k), {}).get("on_time_share") or 0) * by.get((m, k), {}).get("completed", 0) for k in kinds)
        )
        for m in months
    ]
    medians = []
    for m in months:
        values = [by[(m, k)]["median_days"] for k in kinds if (m, k) in by and by[(m, k)]["median_days"] is not None]
        medians.append(round(max(values)) if values else 0)
    return {
        "volumes": bar_chart(slots, volumes, "Requests received per month, by type"),
        "on_time": on_time_chart(slots, done, ok, "Share of requests completed on time, per month"),
        "median": bar_chart(slots, {"median days": medians}, "Median days to complete (slowest type), per month"),
    }
