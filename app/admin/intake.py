"""``/admin/requests/new``: staff enter a request that reached us by email, letter, phone or an agent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from app.admin.forms import StaffIntakeForm
from app.admin.guard import bp, requires
from app.audit import Actor
from app.dsr.intake import staff_intake
from app.dsr.services import ActionError
from app.extensions import db

if TYPE_CHECKING:
    from app.mailbox.models import InboundMail


def parse_received(value: str) -> datetime | None:
    """An ISO 8601 date (the start of that day, UTC) or date-time (UTC unless it says otherwise)."""
    value = (value or "").strip()
    if not value or len(value) > 40:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@bp.route("/requests/new", methods=["GET", "POST"])
@requires("officer")
def intake_new() -> ResponseReturnValue:
    form = StaffIntakeForm()
    item = _intake_item(form)
    if item is not None and request.method == "GET":
        prefill(form, item)
    if form.validate_on_submit():
        received = parse_received(form.received_at.data)
        if received is None:
            form.received_at.errors.append("Give the date received, like 2026-11-30 (or 2026-11-30T14:05).")
        else:
            try:
                dsr = staff_intake(
                    Actor.staff(current_user),
                    request_type=form.request_type.data,
                    email=form.email.data,
                    full_name=form.full_name.data,
                    jurisdiction=form.jurisdiction.data,
                    channel=form.channel.data,
                    received_at=received,
                    details=form.details.data or "",
                    verification=form.verification.data,
                    verification_method=form.verification_method.data or "",
                    verification_evidence=form.verification_evidence.data or "",
                    inbound_mail_id=item.id if item is not None else None,
                )
            except ActionError as exc:
                db.session.rollback()
                form.received_at.errors.append(str(exc))
            else:
                db.session.commit()
                if form.verification.data == "link":
                    flash(f"{dsr.reference} entered. We emailed the subject a link to confirm it.", "success")
                else:
                    flash(f"{dsr.reference} entered as verified; it is in the queue for review.", "success")
                return redirect(url_for("admin.request_detail", reference=dsr.reference), code=303)
    status = 400 if form.errors else 200
    return render_template("admin/intake.html", form=form, item=item), status


def _intake_item(form: StaffIntakeForm) -> InboundMail | None:
    """The mailbox item (``?mail=<id>``, then the form's hidden field) the request is made from."""
    from app.mailbox.services import get_item

    raw = request.args.get("mail", "") if request.method == "GET" else (form.inbound_mail_id.data or "")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 9:
        abort(404)
    item = get_item(int(raw))
    if item is None:
        abort(404)
    return item


def prefill(form: StaffIntakeForm, item: InboundMail) -> None:
    """From the mail: the sender, the date it was received, its text (staff check and complete it)."""
    form.inbound_mail_id.data = str(item.id)
    form.channel.data = "email"
    form.email.data = item.from_addr or ""
    form.full_name.data = item.from_name or ""
    form.received_at.data = item.received_at.strftime("%Y-%m-%dT%H:%M:%S")
    form.details.data = (item.body_text or "")[:5000]
