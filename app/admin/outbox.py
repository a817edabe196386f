"""The development outbox: mail the app would have sent, readable by staff when no SMTP is configured.

HTML bodies are shown as escaped source in a ``<pre>``, never rendered as live markup.
"""

from __future__ import annotations

from flask import abort, current_app, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from app.admin.guard import bp, requires
from app.admin.queries import LIST_PAGE_SIZE, page_count
from app.extensions import db
from app.mail import outbox_enabled
from app.mail.models import OutgoingMail


@bp.route("/outbox")
@requires("auditor")
def outbox() -> ResponseReturnValue:
    if not outbox_enabled():
        abort(404)
    raw = request.args.get("page", "1")
    page = int(raw) if raw.isdecimal() and len(raw) < 6 and int(raw) > 0 else 1
    total = db.session.execute(select(func.count()).select_from(OutgoingMail)).scalar_one()
    mails = db.session.execute(
        select(OutgoingMail).order_by(OutgoingMail.id.desc()).limit(LIST_PAGE_SIZE).offset((page - 1) * LIST_PAGE_SIZE)
    ).scalars()
    return render_template(
        "admin/outbox.html", mails=list(mails), total=total, page=page, pages=page_count(total, LIST_PAGE_SIZE)
    )


@bp.route("/outbox/<id:mail_id>")
@requires("auditor")
def outbox_message(mail_id: int) -> ResponseReturnValue:
    if not outbox_enabled():
        abort(404)
    mail = db.session.get(OutgoingMail, mail_id)
    if mail is None:
        abort(404)
    return render_template("admin/outbox_message.html", mail=mail)


@bp.route("/mail-previews")
@requires("admin")
def mail_previews() -> ResponseReturnValue:
    """Every message we send, with sample data (admin): text inline, HTML in its own tab."""
    from app.mail.previews import render_sample, samples

    rendered = [(name, *render_sample(name)) for name in sorted(samples())]
    return render_template("admin/mail_previews.html", rendered=rendered)


@bp.route("/mail-previews/<name>.html")
@requires("admin")
def mail_preview_html(name: str) -> ResponseReturnValue:
    from app.mail.previews import render_sample, samples

    if name not in samples():
        abort(404)
    _text, html, _link = render_sample(name)
    response = current_app.response_class(html or "", mimetype="text/html")
    # The mail's own inline styles, nothing else: no script, no network, in a sandbox.
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    return response


@bp.route("/requests/<reference>/mail/<id:mail_id>")
@requires("auditor")
def request_mail(reference: str, mail_id: int) -> ResponseReturnValue:
    """A message we sent about a request, in full (production too), audited: once sent, its stored copy
    has no working link tokens; after minimisation only its metadata is left."""
    from flask_login import current_user

    from app.admin.views import get_request_or_404
    from app.audit import Actor, record_event

    dsr = get_request_or_404(reference)
    mail = db.session.get(OutgoingMail, mail_id)
    if mail is None or mail.request_id != dsr.id:
        abort(404)
    record_event("request.mail_viewed", Actor.staff(current_user), dsr=dsr, data={"mail_id": mail.id})
    db.session.commit()
    return render_template("admin/outbox_message.html", mail=mail, back=("admin.request_detail", dsr.reference))
