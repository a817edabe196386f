"""Portal views: parse the input, call the domain services, render.

Links we email are the only credentials: ``verify`` (24 h, single use), ``status`` (no expiry, read and
cancel one request) and ``download`` (7 days, 5 uses). A GET never changes state, so mail scanners that
open links cannot confirm or cancel on the person's behalf.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, request, send_file, url_for
from limits import parse as parse_limit
from sqlalchemy import select, update
from werkzeug.exceptions import HTTPException, TooManyRequests

from app.audit import Actor, record_event
from app.audit.models import AuditEvent
from app.dsr import services
from app.dsr.models import CorrectionItem, DsrRequest, Export, Token
from app.dsr.states import STATUS_LABELS, SUBJECT_CANCELLABLE, RequestStatus
from app.extensions import db, limiter
from app.mail import queue_mail
from app.models_base import utcnow
from app.portal.forms import CORRECTABLE_FIELDS, CancelForm, ConfirmForm, IntakeForm, ResendForm

bp = Blueprint("portal", __name__)

S = RequestStatus
TYPE_LABELS = {"access": "Access (a copy of your data)", "correction": "Correction", "deletion": "Deletion"}
JURISDICTION_LABELS = {"gdpr": "GDPR", "ccpa": "CCPA", "other": "Other"}


def _limit(name: str):
    return lambda: current_app.config[name]


def _hit_limit(config_name: str, scope: str, identity: str) -> None:
    """Count one hit against a configured limit keyed on ``identity``; 429 when it is exceeded."""
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return
    item = parse_limit(current_app.config[config_name])
    key = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()
    if not limiter.limiter.hit(item, scope, key):
        raise TooManyRequests()


def _verify_mail(dsr: DsrRequest) -> None:
    hours = current_app.config["VERIFY_TOKEN_HOURS"]
    raw = services.issue_token(dsr, "verify", lifetime=timedelta(hours=hours), max_uses=1)
    link = f"{current_app.config['PORTAL_BASE_URL']}/verify/{raw}"
    queue_mail(
        dsr.email,
        "verify",
        "Confirm your privacy request",
        dsr=dsr,
        link=link,
        hours=hours,
        type_label=TYPE_LABELS[dsr.request_type],
    )


# --- pages ------------------------------------------------------------------------------------------


@bp.get("/")
def home():
    return render_template("portal/home.html")


@bp.route("/requests/new", methods=["GET", "POST"])
@limiter.limit(_limit("RATELIMIT_INTAKE_IP"), methods=["POST"])
def new_request():
    form = IntakeForm()
    if request.method == "GET" and request.args.get("type") in {"access", "correction", "deletion"}:
        form.request_type.data = request.args["type"]
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("portal/new.html", form=form, fields=dict(CORRECTABLE_FIELDS)), status
    _hit_limit("RATELIMIT_INTAKE_EMAIL", "intake-email", form.email.data)
    dsr = DsrRequest(
        request_type=form.request_type.data,
        status=S.UNVERIFIED.value,
        email=form.email.data,
        full_name=form.full_name.data,
        jurisdiction=form.jurisdiction.data,
        details=form.details.data or "",
    )
    for field, value in form.corrections():
        dsr.corrections.append(CorrectionItem(field=field, proposed_value=value))
    db.session.add(dsr)
    db.session.flush()
    # A status link exists from the start; its raw value is re-issued at verification for the receipt.
    services.issue_token(dsr, "status")
    _verify_mail(dsr)
    record_event(
        "request.submitted",
        Actor.subject(),
        dsr=dsr,
        public=True,
        message="We received your request and sent a confirmation link to your email address.",
        data={"type": dsr.request_type, "jurisdiction": dsr.jurisdiction, "corrections": len(dsr.corrections)},
    )
    db.session.commit()
    return render_template("portal/check_inbox.html", hours=current_app.config["VERIFY_TOKEN_HOURS"])


def _token_problem_page(problem: services.TokenProblem, purpose: str = "verify"):
    status = 404 if problem.kind == "invalid" else 410
    return (
        render_template("portal/link_problem.html", kind=problem.kind, purpose=purpose, form=ResendForm()),
        status,
    )


@bp.route("/verify/<token>", methods=["GET", "POST"])
@limiter.limit(_limit("RATELIMIT_VERIFY"))
def verify(token: str):
    form = ConfirmForm()
    try:
        tok = services.find_token(token, "verify", lock=request.method == "POST")
    except services.TokenProblem as problem:
        db.session.rollback()
        return _token_problem_page(problem)
    dsr = tok.dsr
    if dsr.status != S.UNVERIFIED.value:
        db.session.rollback()
        return render_template("portal/link_problem.html", kind="closed", purpose="verify", form=ResendForm()), 410
    if request.method == "GET" or not form.validate_on_submit():
        if request.method == "POST":
            abort(400)
        return render_template("portal/verify.html", form=form, dsr=dsr, type_label=TYPE_LABELS[dsr.request_type])
    # Single use, counted in the same statement that checks it (no double verification under a race).
    used = db.session.execute(
        update(Token)
        .where(Token.id == tok.id, Token.used_at.is_(None))
        .values(use_count=Token.use_count + 1, used_at=utcnow())
    )
    if used.rowcount != 1:
        db.session.rollback()
        return _token_problem_page(services.TokenProblem("used"))
    dsr = services.transition(dsr, S.PENDING_REVIEW, Actor.subject())
    duplicate = services.find_open_duplicate(dsr)
    if duplicate is not None:
        dsr.duplicate_of_id = duplicate.id
        record_event(
            "request.duplicate_linked",
            Actor.system("duplicate check"),
            dsr=dsr,
            data={"duplicate_of": duplicate.reference, "duplicate_of_id": duplicate.id},
        )
    raw_status = services.issue_token(dsr, "status")
    link = services.status_url(dsr, raw_status)
    queue_mail(
        dsr.email,
        "receipt",
        f"We received your privacy request {dsr.reference}",
        dsr=dsr,
        link=link,
        type_label=TYPE_LABELS[dsr.request_type],
        law=JURISDICTION_LABELS.get(dsr.jurisdiction, dsr.jurisdiction),
    )
    db.session.commit()
    return render_template(
        "portal/verified.html",
        dsr=dsr,
        status_link=url_for("portal.request_status", reference=dsr.reference, token=raw_status),
        type_label=TYPE_LABELS[dsr.request_type],
    )


@bp.post("/verify/resend")
@limiter.limit(_limit("RATELIMIT_VERIFY"))
def resend_verification():
    form = ResendForm()
    if not form.validate_on_submit():
        return render_template("portal/link_problem.html", kind="resend", purpose="verify", form=form), 400
    _hit_limit("RATELIMIT_INTAKE_EMAIL", "intake-email", form.email.data)
    cutoff = utcnow() - timedelta(days=current_app.config["UNVERIFIED_EXPIRY_DAYS"])
    dsr = db.session.execute(
        select(DsrRequest)
        .where(
            DsrRequest.email == form.email.data,
            DsrRequest.status == S.UNVERIFIED.value,
            DsrRequest.received_at > cutoff,
        )
        .order_by(DsrRequest.received_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if dsr is not None:
        _verify_mail(dsr)
        record_event("request.verification_resent", Actor.subject(), dsr=dsr)
        db.session.commit()
    return render_template("portal/check_inbox.html", hours=current_app.config["VERIFY_TOKEN_HOURS"], resent=True)


def _status_request(reference: str, raw: str | None) -> tuple[DsrRequest, str]:
    """The request behind a status link, or a 404 that says nothing about which part was wrong."""
    if not raw or len(reference) > 32:
        abort(404)
    try:
        tok = services.find_token(raw, "status")
    except services.TokenProblem:
        abort(404)
    dsr = tok.dsr
    if dsr is None or dsr.reference != reference:
        abort(404)
    return dsr, raw


@bp.route("/requests/<reference>", methods=["GET", "POST"])
def request_status(reference: str):
    raw = request.args.get("token") or request.form.get("token")
    dsr, raw = _status_request(reference, raw)
    form = CancelForm()
    message = None
    status_code = 200
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        if request.form.get("action") != "cancel":
            abort(400)
        cancelled = None
        if dsr.status in {s.value for s in SUBJECT_CANCELLABLE}:
            try:
                cancelled = services.transition(dsr, S.CANCELLED, Actor.subject(), reason="Cancelled by the requester")
            except services.TransitionError:  # staff acted between our read and the row lock
                db.session.rollback()
        if cancelled is not None:
            dsr = cancelled
            queue_mail(
                dsr.email,
                "cancelled",
                f"Your privacy request {dsr.reference} was cancelled",
                dsr=dsr,
                link=services.status_url(dsr, raw),
                type_label=TYPE_LABELS[dsr.request_type],
            )
            db.session.commit()
            message = ("ok", "Your request is cancelled. We will not act on it.")
        else:
            db.session.rollback()
            status_code = 409
            message = (
                "bad",
                "This request can no longer be cancelled: it was already approved or closed. "
                "If something is wrong, write to privacy@chatgpttech.mobi and quote the reference.",
            )
    events = (
        db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.request_id == dsr.id, AuditEvent.public.is_(True))
            .order_by(AuditEvent.id)
        )
        .scalars()
        .all()
    )
    downloads = []
    if dsr.request_type == "access":
        downloads = (
            db.session.execute(
                select(Export).where(Export.request_id == dsr.id, Export.status == "ready").order_by(Export.id)
            )
            .scalars()
            .all()
        )
    return (
        render_template(
            "portal/status.html",
            dsr=dsr,
            token=raw,
            form=form,
            events=events,
            downloads=downloads,
            message=message,
            status_label=STATUS_LABELS[S(dsr.status)],
            type_label=TYPE_LABELS.get(dsr.request_type, dsr.request_type),
            law=JURISDICTION_LABELS.get(dsr.jurisdiction, dsr.jurisdiction),
            cancellable=dsr.status in {s.value for s in SUBJECT_CANCELLABLE},
        ),
        status_code,
    )


@bp.get("/download/<token>")
def download(token: str):
    try:
        tok = services.find_token(token, "download", lock=True)
    except services.TokenProblem as problem:
        db.session.rollback()
        if problem.kind == "invalid":
            abort(404)
        return render_template("portal/download_gone.html", kind=problem.kind), 410
    export = db.session.get(Export, tok.export_id) if tok.export_id else None
    if export is None:
        db.session.rollback()
        abort(404)
    path = Path(current_app.config["EXPORT_DIR"]) / (export.filename or "")
    if export.status != "ready" or not export.filename or not path.is_file():
        db.session.rollback()
        if export.status == "building":
            return render_template("portal/download_gone.html", kind="building"), 404
        return render_template("portal/download_gone.html", kind="expired"), 410
    # Count the use in the statement that checks the limit, so concurrent downloads cannot exceed it.
    counted = db.session.execute(
        update(Token)
        .where(Token.id == tok.id, (Token.max_uses.is_(None)) | (Token.use_count < Token.max_uses))
        .values(use_count=Token.use_count + 1, used_at=utcnow())
    )
    if counted.rowcount != 1:
        db.session.rollback()
        return render_template("portal/download_gone.html", kind="used"), 410
    db.session.execute(update(Export).where(Export.id == export.id).values(download_count=Export.download_count + 1))
    dsr = tok.dsr
    record_event(
        "export.downloaded",
        Actor.subject(),
        dsr=dsr,
        public=True,
        message="Your data was downloaded.",
        data={"export_id": export.id, "use": tok.use_count + 1},
    )
    db.session.commit()
    return send_file(
        path,
        mimetype="application/zip",
        as_attachment=True,
        download_name=f"{dsr.reference}-data.zip",
        max_age=0,
    )


# --- errors (app-wide) ---------------------------------------------------------------------------

ERROR_TEXT = {
    400: (
        "Something was wrong with that request",
        "The form may have expired. Go back, reload the page and try again.",
    ),
    403: ("You cannot do that", "You do not have permission to see this page or take this action."),
    404: (
        "Page not found",
        "Check the address. If you followed a link from an email, it may have been copied only in part.",
    ),
    405: ("That did not work", "This page cannot be used that way. Go back and use the buttons on the page."),
    410: ("This link no longer works", "The link has expired or was already used."),
    413: ("That was too much", "What you sent is too large. Shorten it and try again."),
    429: ("Too many attempts", "You have tried this too often. Wait a while (up to an hour) and try again."),
    500: ("Something went wrong on our side", "We have been alerted. Try again in a few minutes."),
}


def _error_page(exc: HTTPException | Exception):
    code = exc.code if isinstance(exc, HTTPException) and exc.code else 500
    if code >= 500:
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001, S110 - the session may itself be what failed
            pass
    title, text = ERROR_TEXT.get(code, ERROR_TEXT[500] if code >= 500 else ERROR_TEXT[400])
    from flask_wtf.csrf import CSRFError

    if isinstance(exc, CSRFError):
        text = "The form was missing its security token or it had expired. Reload the page, then send the form again."
    response = current_app.make_response(
        (render_template("portal/error.html", code=code, title=title, text=text), code)
    )
    if code == 405 and isinstance(exc, HTTPException):
        for key, value in exc.get_headers():
            if key.lower() == "allow":
                response.headers["Allow"] = value
    return response


def _no_staff_from_request(_request):
    return None


def register(app) -> None:
    app.register_blueprint(bp)
    # Portal pages never log anyone in, but Flask-Login's template context asks for a loader. The admin
    # blueprint (registered after this one) installs the real loaders; this fallback only answers "nobody".
    from app.extensions import login_manager

    if login_manager._request_callback is None and login_manager._user_callback is None:
        login_manager.request_loader(_no_staff_from_request)
    for code in (400, 403, 404, 405, 410, 413, 429, 500):
        app.register_error_handler(code, _error_page)
