"""Read-side queries of the dashboard: the filtered, paginated queue and the headline counts.

Everything is one SQL statement per figure set (aggregates with CASE, LIMIT/OFFSET plus a COUNT) so
the pages stay fast with 100k+ requests; the (status, due_at) and (assignee, status) indexes serve them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select

from app.dsr.models import DsrRequest, clock_running, due_soon
from app.dsr.states import OPEN, Jurisdiction, RequestStatus, RequestType
from app.extensions import db

S = RequestStatus
# Page sizes of the staff lists: the request queue, and the long lists (audit log, outbox, mailbox).
QUEUE_PAGE_SIZE = 25
LIST_PAGE_SIZE = 50
# ?sort=: the orderings the queue offers (soonest deadline first by default).
SORTS = {
    "due": (DsrRequest.due_at.asc().nulls_last(), DsrRequest.received_at),
    "received": (DsrRequest.received_at.asc(),),
    "-received": (DsrRequest.received_at.desc(),),
    "status": (DsrRequest.status.asc(), DsrRequest.due_at.asc().nulls_last()),
    "type": (DsrRequest.request_type.asc(), DsrRequest.due_at.asc().nulls_last()),
}
MAX_PAGE = 10_000
OPEN_REVIEWED = [s.value for s in OPEN if s is not S.UNVERIFIED]


def filter_date(value: str | None) -> date | None:
    """A date filter from the query string (``YYYY-MM-DD``); anything else, or a date that cannot
    take the day a "to" filter adds, is no filter."""
    if not value or len(value) > 10:
        return None
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed != date.max else None  # "to" filters add a day: date.max would overflow


@dataclass
class QueueFilters:
    status: str = "open"
    type: str = ""
    jurisdiction: str = ""
    assignee: str = ""
    channel: str = ""
    overdue: bool = False
    due_soon: bool = False
    sort: str = "due"
    received_from: date | None = None
    received_to: date | None = None
    q: str = ""
    page: int = 1
    me: int | None = None
    problems: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, args: Mapping[str, str], me_id: int | None = None) -> QueueFilters:
        f = cls()
        f.q = (args.get("q") or "").strip()[:254]
        status = (args.get("status") or "").strip()
        if status in {s.value for s in RequestStatus} | {"open", "all", "fulfilment"}:
            f.status = status
        elif status:
            f.problems.append("Unknown status ignored.")
        elif f.q:
            f.status = "all"  # a search looks everywhere unless narrowed
        kind = (args.get("type") or "").strip()
        f.type = kind if kind in {t.value for t in RequestType} else ""
        jur = (args.get("jurisdiction") or "").strip()
        f.jurisdiction = jur if jur in {j.value for j in Jurisdiction} else ""
        from app.dsr.intake import CHANNELS

        channel = (args.get("channel") or "").strip()
        f.channel = channel if channel in CHANNELS else ""
        assignee = (args.get("assignee") or "").strip()
        if assignee in ("me", "none") or (assignee.isdecimal() and len(assignee) < 10):
            f.assignee = assignee
        f.overdue = (args.get("overdue") or "") in ("1", "on", "true", "yes", "y")
        f.due_soon = (args.get("due_soon") or "") in ("1", "on", "true", "yes", "y")
        sort = (args.get("sort") or "").strip()
        f.sort = sort if sort in SORTS else "due"
        f.received_from = filter_date(args.get("received_from"))
        f.received_to = filter_date(args.get("received_to"))
        for key, parsed in (("received_from", f.received_from), ("received_to", f.received_to)):
            if args.get(key) and parsed is None:
                f.problems.append(f"{key.replace('_', ' ').capitalize()} must be a date like 2026-01-31.")
        page = args.get("page") or "1"
        f.page = min(int(page), MAX_PAGE) if page.isdecimal() and len(page) < 7 and int(page) > 0 else 1
        f.me = me_id
        return f

    def as_args(self, **changes: str) -> dict[str, str]:
        """Query arguments that reproduce these filters (for pagination links and bulk returns)."""
        args = {
            "status": self.status,
            "type": self.type,
            "jurisdiction": self.jurisdiction,
            "assignee": self.assignee,
            "channel": self.channel,
            "overdue": "1" if self.overdue else "",
            "due_soon": "1" if self.due_soon else "",
            "sort": self.sort if self.sort != "due" else "",
            "received_from": self.received_from.isoformat() if self.received_from else "",
            "received_to": self.received_to.isoformat() if self.received_to else "",
            "q": self.q,
            "page": str(self.page) if self.page > 1 else "",
        }
        args.update(changes)
        return {k: v for k, v in args.items() if v}


# Approved and not yet answered: being built, or built and waiting for an officer's release.
FULFILMENT = (S.APPROVED.value, S.IN_PROGRESS.value, S.AWAITING_RELEASE.value)


def queue_statement(f: QueueFilters, now: datetime, prefix: bool = False) -> Select[DsrRequest]:
    stmt = select(DsrRequest)
    if f.status == "open":
        stmt = stmt.where(DsrRequest.status.in_(OPEN_REVIEWED))
    elif f.status == "fulfilment":
        stmt = stmt.where(DsrRequest.status.in_(FULFILMENT))
    elif f.status != "all":
        stmt = stmt.where(DsrRequest.status == f.status)
    if f.type:
        stmt = stmt.where(DsrRequest.request_type == f.type)
    if f.jurisdiction:
        stmt = stmt.where(DsrRequest.jurisdiction == f.jurisdiction)
    if f.channel:
        stmt = stmt.where(DsrRequest.channel == f.channel)
    if f.assignee == "me":
        stmt = stmt.where(DsrRequest.assignee_id == f.me)
    elif f.assignee == "none":
        stmt = stmt.where(DsrRequest.assignee_id.is_(None))
    elif f.assignee:
        stmt = stmt.where(DsrRequest.assignee_id == int(f.assignee))
    if f.overdue:
        stmt = stmt.where(clock_running(), DsrRequest.due_at < now)
    if f.due_soon:
        stmt = stmt.where(clock_running(), due_soon(now))
    if f.received_from:
        start = datetime.combine(f.received_from, datetime.min.time(), UTC)
        stmt = stmt.where(DsrRequest.received_at >= start)
    if f.received_to:
        end = datetime.combine(f.received_to, datetime.min.time(), UTC) + timedelta(days=1)
        stmt = stmt.where(DsrRequest.received_at < end)
    if f.q:
        ref, email = f.q.upper(), f.q.lower()
        if not ref.startswith("DSR-") and re.fullmatch(r"[0-9A-Z]{1,8}(-[0-9A-Z]{0,8})?", ref):
            ref = "DSR-" + ref  # a reference typed without its prefix, as read from a letter
        if prefix:
            stmt = stmt.where(
                or_(
                    # autoescape: what staff type is literal text, never a LIKE wildcard
                    DsrRequest.reference.startswith(ref, autoescape=True),
                    DsrRequest.email.startswith(email, autoescape=True),
                    func.lower(DsrRequest.full_name).contains(email, autoescape=True),
                )
            )
        else:
            # Exact matches use the reference and email indexes; a prefix LIKE cannot on SQLite.
            stmt = stmt.where(or_(DsrRequest.reference == ref, DsrRequest.email == email))
    return stmt


def page_count(total: int, per_page: int) -> int:
    """Pages for ``total`` rows (at least one: an empty list is one empty page)."""
    return max(1, -(-total // per_page))


def _count(stmt: Select[Any]) -> int:
    return db.session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()


def queue_page(f: QueueFilters, now: datetime, per_page: int = QUEUE_PAGE_SIZE) -> tuple[list[DsrRequest], int]:
    base = queue_statement(f, now)
    total = _count(base)
    if f.q and total == 0:
        # Nothing matched the whole reference or email: look for them as prefixes instead.
        base = queue_statement(f, now, prefix=True)
        total = _count(base)
    rows = (
        db.session.execute(base.order_by(*SORTS[f.sort], DsrRequest.id).limit(per_page).offset((f.page - 1) * per_page))
        .scalars()
        .all()
    )
    return list(rows), total


def quick_counts(now: datetime, me_id: int | None) -> dict[str, int]:
    """The counts beside the queue's quick filters, in one aggregate query over open requests."""
    running = clock_running()

    def count_if(cond: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    row = db.session.execute(
        select(
            count_if(DsrRequest.assignee_id == (me_id or -1)).label("mine"),
            count_if(DsrRequest.assignee_id.is_(None)).label("nobody"),
            count_if(and_(running, DsrRequest.due_at < now)).label("overdue"),
            count_if(and_(running, due_soon(now))).label("due_soon"),
        ).where(DsrRequest.status.in_(OPEN_REVIEWED))
    ).one()
    return {k: int(v or 0) for k, v in row._mapping.items()}


def dashboard_counts(now: datetime) -> dict[str, int]:
    """All headline counts in one aggregate query."""
    running = clock_running()

    def count_if(cond: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    row = db.session.execute(
        select(
            count_if(DsrRequest.status == S.PENDING_REVIEW.value).label("awaiting_review"),
            count_if(and_(running, due_soon(now))).label("due_soon"),
            count_if(and_(running, DsrRequest.due_at < now)).label("overdue"),
            count_if(DsrRequest.status.in_(FULFILMENT)).label("in_progress"),
            count_if(DsrRequest.status == S.FAILED.value).label("failed"),
            count_if(DsrRequest.status == S.ON_HOLD.value).label("on_hold"),
        )
        # Every count is of open requests: the (status, due_at) index keeps this off the closed
        # history, which is most of the table on a busy platform.
        .where(DsrRequest.status.in_([s.value for s in OPEN]))
    ).one()
    return {k: int(v or 0) for k, v in row._mapping.items()}


def mask_email(email: str | None) -> str:
    """``ada.lovelace@example.com`` -> ``ad***@example.com``: enough to tell rows apart, no more."""
    local, _, domain = (email or "").partition("@")
    keep = 2 if len(local) > 4 else 1
    return f"{local[:keep]}***@{domain}" if domain else "***"


def deadline_badge(dsr: DsrRequest, now: datetime) -> tuple[str, str]:
    """(text, css class): red when overdue or under 25% of the time is left."""
    if dsr.status not in OPEN_REVIEWED or dsr.due_at is None:
        return "", ""
    if dsr.status == S.ON_HOLD.value and dsr.hold_pauses_clock:
        return "clock paused", "badge-info"
    remaining = (dsr.due_at - now).total_seconds()
    total = max((dsr.due_at - dsr.received_at).total_seconds(), 1)
    if remaining < 0:
        days = max(1, math.ceil(-remaining / 86400))
        return f"{days} day{'s' if days != 1 else ''} overdue", "badge-bad"
    days = int(remaining // 86400)
    text = "due today" if days == 0 else f"{days} day{'s' if days != 1 else ''} left"
    if remaining < 0.25 * total:
        return text, "badge-bad"
    if days < 7:
        return text, "badge-warn"
    return text, "badge-ok"


VIEW_PREFIX = "view:"
MAX_VIEWS = 12


def saved_views(staff_id: int) -> list[tuple[str, dict[str, Any]]]:
    """A staff member's saved queue views: (name, query arguments)."""
    import json

    from app.dsr.models import AppSetting

    prefix = f"{VIEW_PREFIX}{staff_id}:"
    rows = db.session.execute(
        select(AppSetting).where(AppSetting.key.startswith(prefix, autoescape=True)).order_by(AppSetting.key)
    )
    found: list[tuple[str, dict[str, Any]]] = []
    for row in rows.scalars():
        try:
            found.append((row.key[len(prefix) :], json.loads(row.value)))
        except ValueError:
            continue
    return found


def save_view(staff_id: int, name: str, args: dict[str, Any] | None) -> None:
    """Store (or with ``args`` None remove) a named view; the caller commits."""
    import json

    from app.dsr.models import AppSetting

    key = f"{VIEW_PREFIX}{staff_id}:{name}"[:64]
    row = db.session.get(AppSetting, key)
    if args is None:
        if row is not None:
            db.session.delete(row)
        return
    value = json.dumps(args, separators=(",", ":"))[:254]
    if row is None:
        if len(saved_views(staff_id)) >= MAX_VIEWS:
            return
        db.session.add(AppSetting(key=key, value=value))
    else:
        row.value = value
