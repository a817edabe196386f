"""Dashboard, queue and request detail; ``register`` wires the whole admin blueprint into the app."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from flask import Response, abort, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import func, or_, select

from app.admin import charts
from app.admin.guard import bp, requires
from app.admin.limits import MAX_BULK
from app.admin.queries import (
    QUEUE_PAGE_SIZE,
    QueueFilters,
    dashboard_counts,
    deadline_badge,
    mask_email,
    page_count,
    queue_page,
    quick_counts,
    saved_views,
)
from app.audit import Actor, record_event
from app.audit.models import AuditEvent
from app.dsr import deadlines, packages
from app.dsr.actions import available_actions
from app.dsr.approval import erasure_plan_for
from app.dsr.identifiers import KINDS as IDENTIFIER_KINDS
from app.dsr.intake import CHANNELS
from app.dsr.models import DsrRequest, Token
from app.dsr.states import DENIAL_LABELS, STATUS_LABELS, Jurisdiction, RequestStatus, RequestType
from app.extensions import db
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from app.sources.resolve import Resolution, resolve_subject
from app.staff.models import Role, StaffUser

if TYPE_CHECKING:
    from markupsafe import Markup
    from werkzeug.datastructures import MultiDict

    from app.sources.base import Subject

S = RequestStatus
REFERENCE_RE = re.compile(r"^DSR-[0-9A-Z]{1,8}-[0-9A-Z]{1,8}$")


SUMMARY_LABELS = {
    "account_found": "Account found",
    "account_id": "Account id",
    "account_created_at": "Account created",
    "account_status": "Account status",
    "api_keys": "API keys",
    "usage_rows": "API usage records",
    "support_messages": "Support messages",
    "stripe_customer": "Stripe customer",
    "stripe_configured": "Stripe connected",
    "stripe_error": "Stripe could not be reached",
    "stripe_shared": "Stripe customers with this address that another account holds (left alone)",
}


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


@bp.app_template_filter("event_label")
def event_label_filter(value: str) -> str:
    from app.audit.labels import event_label

    return event_label(value)


@bp.app_template_filter("event_detail")
def event_detail_filter(event: AuditEvent) -> str:
    from app.audit.labels import event_detail

    return event_detail(event.event, event.data, status_label)


@bp.app_template_filter("linkify")
def linkify(text: str | None) -> Markup:
    """Escaped text whose http(s) links are clickable (redacted links stay plain text)."""
    import re

    from markupsafe import Markup, escape

    def link(match: re.Match[str]) -> str:
        url = match.group(0)
        return url if "[redacted]" in url else f'<a href="{url}" rel="noopener noreferrer">{url}</a>'

    # The text is escaped first; the links wrapped are runs of that escaped text without quotes or brackets.
    return Markup(re.sub(r"https?://[^\s<>\"']+", link, str(escape(text or ""))))  # noqa: S704


@bp.app_template_filter("status_badge")
def status_badge(value: str) -> str:
    """The badge colour that matches a status's meaning."""
    return {
        "failed": "badge-bad",
        "bounced": "badge-bad",
        "denied": "badge-bad",
        "completed": "badge-ok",
        "on_hold": "badge-warn",
        "unverified": "",
        "cancelled": "",
        "expired": "",
    }.get(value, "badge-info")


@bp.app_template_filter("when")
def when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "-"


@bp.app_template_filter("day")
def day(value: date | None) -> str:
    return f"{value:%Y-%m-%d}" if value else "-"


@bp.route("/")
@requires("auditor")
def dashboard() -> str:
    now = utcnow()
    weeks, series = charts.requests_per_week(now)
    ot_weeks, done, ok = charts.on_time_per_week(now)
    from app.mailbox.models import InboundMail

    new_mail = db.session.execute(
        select(func.count()).select_from(InboundMail).where(InboundMail.status == "new")
    ).scalar_one()
    return render_template(
        "admin/dashboard.html",
        counts=dashboard_counts(now),
        new_mail=new_mail,
        mailbox_configured=bool(current_app.config.get("MAIL_IMAP_URL")),
        per_week_chart=charts.bar_chart(weeks, series),
        on_time_chart=charts.on_time_chart(ot_weeks, done, ok),
        totals={k: sum(v) for k, v in series.items()},
        on_time_total=(sum(ok), sum(done)),
    )


@bp.route("/requests")
@requires("auditor")
def queue() -> str:
    now = utcnow()
    filters = QueueFilters.parse(request.args, me_id=current_user.id)
    rows, total = queue_page(filters, now)
    pages = page_count(total, QUEUE_PAGE_SIZE)
    return render_template(
        "admin/queue.html",
        rows=[(r, mask_email(r.email), *deadline_badge(r, now)) for r in rows],
        total=total,
        filters=filters,
        pages=pages,
        quick=quick_counts(now, current_user.id),
        max_bulk=MAX_BULK,
        saved_views=saved_views(current_user.id),
        sorts={
            "due": "Deadline",
            "received": "Received (oldest)",
            "-received": "Received (newest)",
            "status": "Status",
            "type": "Type",
        },  # fmt: skip
        staff=staff_choices(),
        statuses=list(RequestStatus),
        types=list(RequestType),
        jurisdictions=list(Jurisdiction),
        channels=CHANNELS,
        denial_labels=DENIAL_LABELS,
    )


@bp.route("/requests/views", methods=["POST"])
@requires("auditor")
def save_view() -> ResponseReturnValue:
    """Save the queue's current filters under a name, for this staff member only."""
    from flask import flash, redirect, url_for

    from app.admin.queries import save_view as store

    name = (request.form.get("name") or "").strip()[:40]
    query = (request.form.get("query") or "").strip()[:500]
    if request.form.get("delete"):
        store(current_user.id, name, None)
        db.session.commit()
        flash(f"View {name!r} removed.", "success")
    elif not name:
        flash("Give the view a name.", "error")
    else:
        store(current_user.id, name, QueueFilters.parse(_query_args(query), me_id=current_user.id).as_args())
        db.session.commit()
        flash(f"View {name!r} saved.", "success")
    # Typed as url_for's ``**values`` (mypy would match a str-valued dict against its ``_external: bool``).
    args: dict[str, Any] = QueueFilters.parse(_query_args(query), me_id=current_user.id).as_args()
    return redirect(url_for("admin.queue", **args), code=303)


def _query_args(query: str) -> MultiDict[str, str]:
    from urllib.parse import parse_qsl

    from werkzeug.datastructures import MultiDict

    return MultiDict(parse_qsl(query.lstrip("?"), keep_blank_values=False))


def _subject_summary(subject: Subject) -> dict[str, Any] | None:
    from app.sources import subject_summary

    try:
        summary = subject_summary(subject)
        return {k: when(v) if isinstance(v, datetime) else v for k, v in summary.items()}
    except Exception:  # the dashboard must render even when a source is down
        current_app.logger.exception("subject_summary failed")
        return None


@bp.route("/requests/<reference>")
@requires("auditor")
def request_detail(reference: str) -> str:
    dsr = get_request_or_404(reference)
    now = utcnow()
    # Opening a request shows a person's data: who looked, and when, is part of the record.
    record_event("request.viewed", Actor.staff(current_user), dsr=dsr)
    db.session.commit()
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
    resolution = resolve_subject(dsr) if dsr.minimised_at is None else None
    plan = None
    live_plan = False
    if dsr.request_type == RequestType.DELETION.value:
        if dsr.status in (S.PENDING_REVIEW.value, S.ON_HOLD.value) and resolution is not None:
            plan, live_plan = erasure_plan_for(resolution.subject), True
        elif dsr.plan:
            plan = dsr.plan.get("items") if isinstance(dsr.plan, dict) else dsr.plan
    badge = deadline_badge(dsr, now)
    current_values = _current_values(dsr, resolution)
    withheld = packages.withheld_for_review(dsr) if dsr.request_type == RequestType.ACCESS.value else []
    return render_template(
        "admin/detail.html",
        dsr=dsr,
        badge=badge,
        current_values=current_values,
        summary=_subject_summary(resolution.subject) if resolution is not None else None,
        resolution=resolution,
        identifier_kinds=IDENTIFIER_KINDS,
        summary_labels=SUMMARY_LABELS,
        events=[e for e in events if e.event != "request.viewed"],
        views=sum(1 for e in events if e.event == "request.viewed"),
        notes=list(dsr.notes),
        thread=list(dsr.messages),
        inbound=_inbound_of(dsr),
        mails=mails,
        tokens=tokens,
        plan=plan,
        live_plan=live_plan,
        withheld=withheld,
        held_export=packages.held_export(dsr),
        staff=staff_choices(),
        denial_labels=DENIAL_LABELS,
        can_act=current_user.can_act,
        actions=available_actions(dsr, current_user),
        running=dsr.status in (S.APPROVED.value, S.IN_PROGRESS.value),
        lawful_due=deadlines.lawful_due(dsr.jurisdiction, dsr.received_at, dsr.paused_seconds or 0, dsr.extended_at)
        if dsr.verified_at
        else None,
        extension_allowed=dsr.verified_at is not None
        and deadlines.extension_allowed(dsr.jurisdiction, dsr.received_at, dsr.paused_seconds or 0, now),
        may_pause=deadlines.may_pause(dsr.jurisdiction),
        second_approver=bool(current_app.config.get("DELETION_REQUIRES_SECOND_APPROVER")),
        S=S,
    )


def _inbound_of(dsr: DsrRequest) -> list[Any]:
    """What the privacy mailbox recorded for this request: replies, the mail it was made from, and mail
    that carries its reply address or Message-IDs but waits for staff (another sender, or it is closed)."""
    from app.mailbox.models import InboundMail

    return list(
        db.session.execute(
            select(InboundMail)
            .where(or_(InboundMail.request_id == dsr.id, InboundMail.related_request_id == dsr.id))
            .order_by(InboundMail.received_at)
        ).scalars()
    )


def _current_values(dsr: DsrRequest, resolution: Resolution | None) -> dict[int, str | None]:
    """What the platform holds now for each proposed field, unless the request recorded it already."""
    if dsr.request_type != RequestType.CORRECTION.value or not dsr.corrections:
        return {}
    from app.sources import account_fields

    live = account_fields(resolution.subject) if resolution is not None else {}
    return {
        item.id: item.current_value if item.current_value is not None else live.get(item.field)
        for item in dsr.corrections
    }


@bp.route("/requests/<reference>/messages/<id:message_id>/attachment")
@requires("officer")
def request_attachment(reference: str, message_id: int) -> Response:
    """A file the subject attached (an ID document, a letter), to the officers who decide on the request
    only (need to know: auditors see that it exists, its type and size), never inline, audited."""
    from app.dsr.attachments import attachment_response, read_attachment
    from app.dsr.models import RequestMessage

    dsr = get_request_or_404(reference)
    message = db.session.get(RequestMessage, message_id) if 0 < message_id < 2**31 else None
    if message is None or message.request_id != dsr.id or not message.attachment_key:
        abort(404)
    data = read_attachment(message.attachment_key)
    if data is None:
        abort(404)
    record_event("request.attachment_viewed", Actor.staff(current_user), dsr=dsr, data={"message_id": message.id})
    db.session.commit()
    return attachment_response(data, message.attachment_name or "attachment")


@bp.route("/requests/<reference>/progress")
@requires("auditor")
def request_progress(reference: str) -> Response:
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
