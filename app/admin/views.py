"""Dashboard, queue and request detail; ``register`` wires the whole admin blueprint into the app."""

from __future__ import annotations

import re
from datetime import datetime

from flask import abort, current_app, jsonify, render_template, request
from flask_login import current_user
from sqlalchemy import func, select

from app.admin import charts
from app.admin.guard import bp, requires
from app.admin.models import Role, StaffUser
from app.admin.queries import QueueFilters, dashboard_counts, deadline_badge, mask_email, queue_page
from app.audit.models import AuditEvent
from app.dsr.models import DsrRequest, Token
from app.dsr.states import DENIAL_LABELS, STATUS_LABELS, Jurisdiction, RequestStatus, RequestType
from app.extensions import db, login_manager
from app.mail.models import OutgoingMail
from app.models_base import utcnow

S = RequestStatus
CORRECTABLE = frozenset({"name", "email", "company"})
REFERENCE_RE = re.compile(r"^DSR-[0-9A-Z]{1,8}-[0-9A-Z]{1,8}$")


def register(app) -> None:
    # Importing the modules attaches their routes to ``bp`` before it is registered.
    from app.admin import account, actions, auth, manage, outbox, reports, staff  # noqa: F401

    login_manager.login_view = "admin.login"
    login_manager.login_message = "Sign in to continue."
    login_manager.session_protection = "strong"
    app.register_blueprint(bp)


def get_request_or_404(reference: str) -> DsrRequest:
    reference = (reference or "").upper()
    if not REFERENCE_RE.match(reference):
        abort(404)
    dsr = db.session.execute(select(DsrRequest).where(DsrRequest.reference == reference)).scalar_one_or_none()
    if dsr is None:
        abort(404)
    return dsr


def staff_choices() -> list[StaffUser]:
    stmt = (
        select(StaffUser)
        .where(StaffUser.active.is_(True), StaffUser.role.in_([Role.ADMIN.value, Role.OFFICER.value]))
        .order_by(StaffUser.email)
    )
    return list(db.session.execute(stmt).scalars())


@bp.app_template_filter("status_label")
def status_label(value: str) -> str:
    try:
        return STATUS_LABELS[RequestStatus(value)]
    except ValueError:
        return value


@bp.app_template_filter("when")
def when(value) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "-"


@bp.app_template_filter("day")
def day(value) -> str:
    return f"{value:%Y-%m-%d}" if value else "-"


@bp.route("/")
@requires("auditor")
def dashboard():
    now = utcnow()
    weeks, series = charts.requests_per_week(now)
    ot_weeks, done, ok = charts.on_time_per_week(now)
    return render_template(
        "admin/dashboard.html",
        counts=dashboard_counts(now),
        per_week_chart=charts.bar_chart(weeks, series),
        on_time_chart=charts.on_time_chart(ot_weeks, done, ok),
        totals={k: sum(v) for k, v in series.items()},
        on_time_total=(sum(ok), sum(done)),
    )


@bp.route("/requests")
@requires("auditor")
def queue():
    now = utcnow()
    filters = QueueFilters.parse(request.args, me_id=current_user.id)
    rows, total = queue_page(filters, now)
    pages = max(1, -(-total // 25))
    return render_template(
        "admin/queue.html",
        rows=[(r, mask_email(r.email), *deadline_badge(r, now)) for r in rows],
        total=total,
        filters=filters,
        pages=pages,
        staff=staff_choices(),
        statuses=list(RequestStatus),
        types=list(RequestType),
        jurisdictions=list(Jurisdiction),
        denial_labels=DENIAL_LABELS,
    )


def _subject_summary(email: str) -> dict | None:
    try:
        from app.sources import subject_summary
    except ImportError:
        return None
    try:
        summary = subject_summary(email)
        return {k: when(v) if isinstance(v, datetime) else v for k, v in summary.items()}
    except Exception:  # the dashboard must render even when a source is down
        current_app.logger.exception("subject_summary failed")
        return None


def erasure_plan_for(email: str) -> list | None:
    try:
        from app.sources import erasure_plan
    except ImportError:
        return None
    try:
        plan = erasure_plan(email)
    except Exception:
        current_app.logger.exception("erasure_plan failed")
        return None
    return [dict(item) for item in plan] if plan is not None else None


@bp.route("/requests/<reference>")
@requires("auditor")
def request_detail(reference: str):
    dsr = get_request_or_404(reference)
    now = utcnow()
    events = list(
        db.session.execute(
            select(AuditEvent).where(AuditEvent.request_id == dsr.id).order_by(AuditEvent.occurred_at, AuditEvent.id)
        ).scalars()
    )
    mails = list(
        db.session.execute(
            select(OutgoingMail).where(OutgoingMail.request_id == dsr.id).order_by(OutgoingMail.created_at)
        ).scalars()
    )
    tokens = list(db.session.execute(select(Token).where(Token.request_id == dsr.id).order_by(Token.id)).scalars())
    plan = None
    live_plan = False
    if dsr.request_type == RequestType.DELETION.value:
        if dsr.status in (S.PENDING_REVIEW.value, S.ON_HOLD.value):
            plan, live_plan = erasure_plan_for(dsr.email), True
        elif dsr.plan:
            plan = dsr.plan.get("items") if isinstance(dsr.plan, dict) else dsr.plan
    badge = deadline_badge(dsr, now)
    current_values = _current_values(dsr)
    return render_template(
        "admin/detail.html",
        dsr=dsr,
        badge=badge,
        current_values=current_values,
        summary=_subject_summary(dsr.email),
        events=events,
        notes=[e for e in events if e.event == "request.note_added"],
        mails=mails,
        tokens=tokens,
        plan=plan,
        live_plan=live_plan,
        staff=staff_choices(),
        denial_labels=DENIAL_LABELS,
        can_act=current_user.can_act,
        running=dsr.status in (S.APPROVED.value, S.IN_PROGRESS.value),
        S=S,
    )


def _current_values(dsr: DsrRequest) -> dict[int, str | None]:
    """What the platform holds now for each proposed field (the intake does not record it)."""
    if dsr.request_type != RequestType.CORRECTION.value or not dsr.corrections:
        return {}
    from app.platform.models import Account

    account = db.session.execute(
        select(Account).where(func.lower(Account.email) == dsr.email.strip().lower()).limit(1)
    ).scalar_one_or_none()
    values = {}
    for item in dsr.corrections:
        live = getattr(account, item.field, None) if account is not None and item.field in CORRECTABLE else None
        values[item.id] = item.current_value if item.current_value is not None else live
    return values


@bp.route("/requests/<reference>/progress")
@requires("auditor")
def request_progress(reference: str):
    dsr = get_request_or_404(reference)
    running = dsr.status in (S.APPROVED.value, S.IN_PROGRESS.value)
    resp = jsonify(
        status=dsr.status,
        status_label=status_label(dsr.status),
        percent=dsr.progress_percent or 0,
        rows=dsr.progress_rows or 0,
        note=dsr.progress_note or "",
        running=running,
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp
