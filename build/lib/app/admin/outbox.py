"""The development outbox: mail the app would have sent, readable by staff when no SMTP is configured.

HTML bodies are shown as escaped source in a ``<pre>``, never rendered as live markup.
"""

from __future__ import annotations

from flask import abort, render_template, request
from sqlalchemy import func, select

from app.admin.guard import bp, requires
from app.extensions import db
from app.mail import outbox_enabled
from app.mail.models import OutgoingMail

PER_PAGE = 50


@bp.route("/outbox")
@requires("auditor")
def outbox():
    if not outbox_enabled():
        abort(404)
    page = request.args.get("page", "1")
    page = int(page) if page.isdigit() and len(page) < 6 and int(page) > 0 else 1
    total = db.session.execute(select(func.count()).select_from(OutgoingMail)).scalar_one()
    mails = db.session.execute(
        select(OutgoingMail).order_by(OutgoingMail.id.desc()).limit(PER_PAGE).offset((page - 1) * PER_PAGE)
    ).scalars()
    return render_template(
        "admin/outbox.html", mails=list(mails), total=total, page=page, pages=max(1, -(-total // PER_PAGE))
    )


@bp.route("/outbox/<id:mail_id>")
@requires("auditor")
def outbox_message(mail_id: int):
    if not outbox_enabled():
        abort(404)
    mail = db.session.get(OutgoingMail, mail_id)
    if mail is None:
        abort(404)
    return render_template("admin/outbox_message.html", mail=mail)
