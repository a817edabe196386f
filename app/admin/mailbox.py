"""``/admin/mailbox``: mail to the privacy address that is not a reply to one of our messages, for staff
to turn into a request (``/admin/requests/new?mail=<id>``, prefilled) or dismiss; and a reply from an
address that is not the subject's, which an officer may add to its request's thread once they checked it.

Officers only: unsorted mail is anyone's personal data, and reading it is handling it (an auditor reads
the requests and their audit trail, not the inbox)."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import func, select

from app.admin.guard import bp, requires
from app.admin.queries import LIST_PAGE_SIZE
from app.audit import Actor, record_event
from app.dsr.services import ActionError
from app.dsr.states import CLOSED
from app.extensions import db
from app.mailbox.models import InboundMail
from app.mailbox.services import DISMISS_REASONS, add_to_thread, dismiss, get_item

STATUSES = {
    "new": "New",
    "converted": "Made a request",
    "threaded": "Replies",
    "dismissed": "Dismissed",
    "duplicate": "Copies of earlier mail",
}


@bp.route("/mailbox")
@requires("officer")
def mailbox() -> ResponseReturnValue:
    status = request.args.get("status", "new")
    if status not in STATUSES:
        status = "new"
    # New mail oldest first (its deadline, if it is a request, runs from the day it arrived); the rest newest first.
    order = (
        (InboundMail.received_at, InboundMail.id)
        if status == "new"
        else (InboundMail.received_at.desc(), InboundMail.id.desc())
    )
    items = list(
        db.session.execute(
            select(InboundMail).where(InboundMail.status == status).order_by(*order).limit(LIST_PAGE_SIZE)
        ).scalars()
    )
    counts = dict(db.session.execute(select(InboundMail.status, func.count()).group_by(InboundMail.status)).all())
    return render_template(
        "admin/mailbox.html",
        items=items,
        status=status,
        statuses=STATUSES,
        counts=counts,
        per_page=LIST_PAGE_SIZE,
        configured=bool(current_app.config.get("MAIL_IMAP_URL")),
    )


def _item_or_404(item_id: int) -> InboundMail:
    item = get_item(item_id)
    if item is None:
        abort(404)
    return item


@bp.route("/mailbox/<id:item_id>")
@requires("officer")
def mailbox_item(item_id: int) -> ResponseReturnValue:
    item = _item_or_404(item_id)
    # A person's mail: who read it is part of the record.
    record_event("mailbox.item_viewed", Actor.staff(current_user), dsr=item.dsr, data={"inbound_mail_id": item.id})
    db.session.commit()
    return render_template(
        "admin/mailbox_item.html", item=item, reasons=DISMISS_REASONS, closed={s.value for s in CLOSED}
    )


@bp.route("/mailbox/<id:item_id>/dismiss", methods=["POST"])
@requires("officer")
def mailbox_dismiss(item_id: int) -> ResponseReturnValue:
    _item_or_404(item_id)
    try:
        dismiss(item_id, Actor.staff(current_user), (request.form.get("reason") or "").strip())
    except ActionError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.mailbox_item", item_id=item_id), code=303)
    db.session.commit()
    flash("The mail was dismissed.", "success")
    return redirect(url_for("admin.mailbox"), code=303)


@bp.route("/mailbox/<id:item_id>/thread", methods=["POST"])
@requires("officer")
def mailbox_add_to_thread(item_id: int) -> ResponseReturnValue:
    """A reply from another address, which the officer checked is the subject's, joins its thread."""
    _item_or_404(item_id)
    if request.form.get("confirm") != "yes":
        flash("Tick the box to confirm you checked this mail is from the request's subject.", "error")
        return redirect(url_for("admin.mailbox_item", item_id=item_id), code=303)
    try:
        item = add_to_thread(item_id, Actor.staff(current_user))
    except ActionError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.mailbox_item", item_id=item_id), code=303)
    db.session.commit()
    flash("The mail was added to the request's thread as the subject's answer.", "success")
    return redirect(url_for("admin.request_detail", reference=item.dsr.reference), code=303)


@bp.route("/mailbox/<id:item_id>/attachments/<id:index>")
@requires("officer")
def mailbox_attachment(item_id: int, index: int) -> ResponseReturnValue:
    """A file from the mail, to officers only, never inline, audited (as a request's attachments are)."""
    from app.dsr.attachments import attachment_response, read_attachment

    item = _item_or_404(item_id)
    files = item.attachments or []
    if not 1 <= index <= len(files):
        abort(404)
    entry = files[index - 1]
    data = read_attachment(entry.get("key") or "")
    if data is None:
        abort(404)
    record_event(
        "mailbox.attachment_viewed", Actor.staff(current_user), data={"inbound_mail_id": item.id, "index": index}
    )
    db.session.commit()
    return attachment_response(data, entry.get("name") or "attachment")
