"""Portal views: parse the input, call one portal service (``app.dsr.portal``, ``app.dsr.downloads``), render.

Links we email are the only credentials: ``verify`` (24 h, single use), ``status`` (30 days, read, answer
and cancel one request; renewable by ``/requests/lookup``) and ``download`` (7 days, 5 uses). Opening a
link trades its token for a short-lived cookie scoped to that page's path and redirects to the clean
URL, so the token is never in the address bar, the history, a ``Referer`` or our access log after the
first hop (whose log line is redacted: ``app.redact``). A GET never changes state, so mail scanners that
open links cannot confirm or cancel on the person's behalf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from flask import Blueprint, Flask, Response, abort, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from limits import parse as parse_limit
from werkzeug.exceptions import HTTPException, ServiceUnavailable, TooManyRequests
from werkzeug.wrappers import Response as BaseResponse

from app.dsr import downloads, portal, services
from app.dsr.attachments import AttachmentRefused
from app.dsr.downloads import DownloadProblem
from app.dsr.models import DsrRequest
from app.dsr.portal import TYPE_LABELS
from app.extensions import db, limiter, login_manager
from app.hashing import email_hash
from app.outages import OUTAGE_CANDIDATES, is_outage
from app.portal.downloads import package_response
from app.portal.forms import (
    CORRECTABLE_FIELDS,
    CancelForm,
    ConfirmForm,
    IntakeForm,
    LookupForm,
    ReplyForm,
    ResendForm,
)
from app.portal.lookup import enqueue_lookup, enqueue_resend
from app.portal.mailbox import normalise_mailbox

bp = Blueprint("portal", __name__)

# Cookie per link purpose: name and how long it lasts once a link has been opened.
LINK_COOKIES = {"verify": 3600, "status": 3600, "download": 900, "identifier": 3600, "email_change": 3600}


def _limit(name: str) -> Callable[[], str]:
    return lambda: str(current_app.config[name])


def _hit_limit(config_name: str, scope: str, identity: str) -> None:
    """Count one hit against a configured limit keyed on ``identity``; 429 when it is exceeded."""
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return
    item = parse_limit(current_app.config[config_name])
    # Keyed (EMAIL_HASH_KEY): Redis never holds a hash of an address anyone could test guesses against.
    key = email_hash(identity) or hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()
    if not limiter.limiter.hit(item, scope, key):
        raise TooManyRequests()


def _hit_mailbox_limit(email: str) -> None:
    """The per-address limit counts mailboxes, not spellings (case, dots, ``+tags``, googlemail)."""
    _hit_limit("RATELIMIT_INTAKE_EMAIL", "intake-email", normalise_mailbox(email))


# --- links: the token is traded for a path-scoped cookie ---------------------------------------------


def _cookie_name(purpose: str) -> str:
    return f"dsr_{purpose}"


def _exchange(raw: str, purpose: str, path: str) -> BaseResponse:
    """Redirect to the clean ``path`` with the token in a cookie only that path receives."""
    response = redirect(path, code=303)
    _set_link_cookie(response, purpose, raw, path)
    response.headers["Cache-Control"] = "no-store"
    return response


def _set_link_cookie(response: BaseResponse, purpose: str, raw: str, path: str) -> None:
    response.set_cookie(
        _cookie_name(purpose),
        raw,
        max_age=LINK_COOKIES[purpose],
        path=path,
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
        httponly=True,
        samesite="Lax",
    )


def _from_cookie(purpose: str) -> str:
    return request.cookies.get(_cookie_name(purpose)) or ""


def _open_link(token: str, purpose: str, endpoint: str) -> ResponseReturnValue:
    """An emailed single-purpose link: checked (nothing is used up), then traded for a cookie."""
    try:
        services.find_token(token, purpose)
    except services.TokenProblem as problem:
        return _token_problem_page(problem, purpose)
    db.session.rollback()
    return _exchange(token, purpose, url_for(endpoint))


def _token_problem_page(problem: services.TokenProblem, purpose: str = "verify") -> ResponseReturnValue:
    """404 for a link that never was; 410 for one that expired, was used or no longer applies."""
    db.session.rollback()
    status = 404 if problem.kind == "invalid" and not isinstance(problem, portal.SpentLink) else 410
    return (
        render_template("portal/link_problem.html", kind=problem.kind, purpose=purpose, form=ResendForm()),
        status,
    )


# --- pages ------------------------------------------------------------------------------------------


@bp.get("/")
def home() -> ResponseReturnValue:
    return render_template("portal/home.html")


def _gpc() -> bool:
    """The browser sent Global Privacy Control (``Sec-GPC: 1``): a request to opt out of sale and sharing."""
    return request.headers.get("Sec-GPC", "").strip() == "1"


@bp.route("/requests/new", methods=["GET", "POST"])
@limiter.limit(_limit("RATELIMIT_INTAKE_IP"), methods=["POST"])
def new_request() -> ResponseReturnValue:
    form = IntakeForm()
    if request.method == "GET" and request.args.get("type") in TYPE_LABELS:
        form.request_type.data = request.args["type"]
    elif request.method == "GET" and _gpc():
        form.request_type.data = "opt_out"
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return (
            render_template("portal/new.html", form=form, fields=dict(CORRECTABLE_FIELDS), gpc=_gpc()),
            status,
        )
    _hit_mailbox_limit(form.email.data)
    agent = form.requester.data == "agent"
    try:
        portal.submit(
            request_type=form.request_type.data,
            email=form.email.data,
            full_name=form.full_name.data,
            jurisdiction=form.jurisdiction.data,
            details=form.details.data or "",
            corrections=form.corrections(),
            requester=form.requester.data or "self",
            agent=(form.agent_name.data or "", form.agent_email.data or "") if agent else None,
            permission=form.permission_file() if agent else None,
            gpc=_gpc(),
        )
    except AttachmentRefused as exc:
        db.session.rollback()
        form.permission.errors = [str(exc)]
        return render_template("portal/new.html", form=form, fields=dict(CORRECTABLE_FIELDS), gpc=_gpc()), 400
    db.session.commit()
    # Post/Redirect/Get: a reload of the next page sends nothing again.
    return redirect(url_for("portal.request_sent"), code=303)


@bp.get("/requests/sent")
def request_sent() -> ResponseReturnValue:
    return render_template("portal/check_inbox.html", hours=current_app.config["VERIFY_TOKEN_HOURS"])


@bp.route("/requests/lookup", methods=["GET", "POST"])
@limiter.limit(_limit("RATELIMIT_VERIFY"), methods=["POST"])
def lookup() -> ResponseReturnValue:
    """A lost status link: every open request of the address gets its link emailed again. The answer,
    and the work behind it, are the same whatever the address holds."""
    form = LookupForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template("portal/lookup.html", form=form, sent=False), 400
        _hit_mailbox_limit(form.email.data)
        enqueue_lookup(form.email.data)
        return render_template("portal/lookup.html", form=LookupForm(formdata=None), sent=True)
    return render_template("portal/lookup.html", form=form, sent=False)


@bp.get("/verify/<token>")
@limiter.limit(_limit("RATELIMIT_VERIFY"))
def verify_link(token: str) -> ResponseReturnValue:
    return _open_link(token, "verify", "portal.verify")


@bp.route("/verify", methods=["GET", "POST"])
@limiter.limit(_limit("RATELIMIT_VERIFY"))
def verify() -> ResponseReturnValue:
    form = ConfirmForm()
    raw = _from_cookie("verify")
    if request.method == "GET":
        try:
            dsr = portal.verification(raw).dsr
        except services.TokenProblem as problem:
            return _token_problem_page(problem)
        return render_template("portal/verify.html", form=form, dsr=dsr, type_label=TYPE_LABELS[dsr.request_type])
    if not form.validate_on_submit():
        abort(400)
    try:
        done = portal.verify(raw)
    except services.TokenProblem as problem:
        return _token_problem_page(problem)
    db.session.commit()
    dsr = done.dsr
    response = current_app.make_response(
        render_template(
            "portal/verified.html",
            dsr=dsr,
            # The status link as emailed (opening it trades the token for a cookie, like the mail's); this
            # page's own URL is the clean /verify, so nothing here reaches a Referer or a log unredacted.
            status_link=url_for("portal.request_status", reference=dsr.reference, token=done.status_token),
            type_label=TYPE_LABELS[dsr.request_type],
        )
    )
    _set_link_cookie(response, "status", done.status_token, url_for("portal.request_status", reference=dsr.reference))
    response.delete_cookie(_cookie_name("verify"), path=url_for("portal.verify"))
    return response


@bp.post("/verify/resend")
@limiter.limit(_limit("RATELIMIT_VERIFY"))
def resend_verification() -> ResponseReturnValue:
    form = ResendForm()
    if not form.validate_on_submit():
        return render_template("portal/link_problem.html", kind="resend", purpose="verify", form=form), 400
    _hit_mailbox_limit(form.email.data)
    enqueue_resend(form.email.data)
    return render_template("portal/check_inbox.html", hours=current_app.config["VERIFY_TOKEN_HOURS"], resent=True)


def _status_request(reference: str, raw: str) -> DsrRequest:
    """The request behind a status link, or a 404 that says nothing about which part was wrong."""
    try:
        return portal.status_request(reference, raw)
    except services.TokenProblem:
        abort(404)


@bp.route("/requests/<reference>", methods=["GET", "POST"])
def request_status(reference: str) -> ResponseReturnValue:
    if request.method == "GET" and request.args.get("token"):
        raw = request.args["token"]
        _status_request(reference, raw)
        db.session.rollback()
        return _exchange(raw, "status", url_for("portal.request_status", reference=reference))
    dsr = _status_request(reference, _from_cookie("status"))
    form = CancelForm()
    reply = ReplyForm()
    message: tuple[str, str] | None = None
    status_code = 200
    if request.method == "POST":
        action = request.form.get("action")
        if action == "cancel":
            if not form.validate_on_submit():
                abort(400)
            cancelled = portal.cancel(dsr)
            if cancelled is not None:
                db.session.commit()
                dsr = cancelled
                message = ("ok", "Your request is cancelled. We will not act on it.")
            else:
                db.session.rollback()
                status_code = 409
                message = (
                    "bad",
                    "This request can no longer be cancelled: it was already approved or closed. "
                    f"If something is wrong, write to {current_app.config['PRIVACY_CONTACT']} and quote the "
                    "reference.",
                )
        elif action == "reply":
            if not reply.validate_on_submit():
                status_code = 400
                message = ("bad", " ".join(e for errs in reply.errors.values() for e in errs) or "Check your answer.")
            else:
                try:
                    portal.answer(dsr, reply.message.data or "", attachment=reply.attachment_data())
                    db.session.commit()
                    message = ("ok", "Thank you: we have your message and will read it shortly.")
                    reply = ReplyForm(formdata=None)
                except (portal.PortalError, AttachmentRefused) as exc:
                    db.session.rollback()
                    status_code = 400
                    message = ("bad", str(exc))
        else:
            abort(400)
    return render_template(
        "portal/status.html", **portal.status_page(dsr).context(), form=form, reply=reply, message=message
    ), status_code


def _confirm_page(purpose: str, endpoint: str, title: str, lead: str, done_text: str) -> ResponseReturnValue:
    """A page that confirms something by a single-use emailed link (an added address, a new email)."""
    form = ConfirmForm()
    raw = _from_cookie(purpose)
    if request.method == "GET":
        try:
            dsr = services.find_token(raw, purpose).dsr
        except services.TokenProblem as problem:
            return _token_problem_page(problem, purpose)
        return render_template("portal/confirm.html", form=form, title=title, lead=lead, dsr=dsr)
    if not form.validate_on_submit():
        abort(400)
    try:
        portal.confirm(purpose, raw)
    except services.TokenProblem as problem:
        return _token_problem_page(problem, purpose)
    db.session.commit()
    response = current_app.make_response(
        render_template("portal/confirm.html", form=None, title="Thank you", lead=done_text, dsr=None)
    )
    response.delete_cookie(_cookie_name(purpose), path=url_for(endpoint))
    return response


@bp.get("/identifiers/<token>")
@limiter.limit(_limit("RATELIMIT_VERIFY"))
def identifier_link(token: str) -> ResponseReturnValue:
    return _open_link(token, "identifier", "portal.identifier_confirm")


@bp.route("/identifiers/confirm", methods=["GET", "POST"])
@limiter.limit(_limit("RATELIMIT_VERIFY"))
def identifier_confirm() -> ResponseReturnValue:
    return _confirm_page(
        "identifier",
        "portal.identifier_confirm",
        "Confirm this email address",
        "A privacy request names this email address as one of the requester's. Confirm only if the address is "
        "yours and you made the request.",
        "The address is confirmed. We will use it for the request.",
    )


@bp.get("/confirm/<token>")
@limiter.limit(_limit("RATELIMIT_VERIFY"))
def email_change_link(token: str) -> ResponseReturnValue:
    return _open_link(token, "email_change", "portal.email_change_confirm")


@bp.route("/confirm", methods=["GET", "POST"])
@limiter.limit(_limit("RATELIMIT_VERIFY"))
def email_change_confirm() -> ResponseReturnValue:
    return _confirm_page(
        "email_change",
        "portal.email_change_confirm",
        "Confirm your new email address",
        "Confirm that this address is yours: the account's email address changes to it only once you do.",
        "Your new address is confirmed. We will make the change and tell your old address.",
    )


def _download_refused(problem: services.TokenProblem | DownloadProblem) -> ResponseReturnValue:
    """404 for a link that never was; 410 (or 404 while building, 503 while the store is out of reach)
    with an explanation otherwise."""
    db.session.rollback()
    if problem.kind == "invalid":
        abort(404)
    status = problem.status if isinstance(problem, DownloadProblem) else 410
    return render_template("portal/download_gone.html", kind=problem.kind), status


@bp.get("/download/<token>")
def download_link(token: str) -> ResponseReturnValue:
    try:
        downloads.check_link(token)
    except (services.TokenProblem, DownloadProblem) as problem:
        return _download_refused(problem)
    db.session.rollback()
    return _exchange(token, "download", url_for("portal.download"))


NO_STORE = {"Cache-Control": "no-store", "Accept-Ranges": "none"}


@bp.route("/download", methods=["GET", "HEAD"])
def download() -> ResponseReturnValue:
    """Stream the package from the export store. Only a complete GET counts as one of the five downloads:
    HEAD answers with the headers and counts nothing, and a Range request (a link scanner's peek, a
    resume) is refused."""
    raw = _from_cookie("download")
    try:
        if request.headers.get("Range") or request.method == "HEAD":
            size = downloads.peek(raw)
            db.session.rollback()
            if request.method == "GET":
                return current_app.response_class(status=416, headers={**NO_STORE, "Content-Range": f"bytes */{size}"})
            return current_app.response_class(
                status=200, headers={**NO_STORE, "Content-Type": "application/zip", "Content-Length": str(size)}
            )
        taken = downloads.take(raw)
    except (services.TokenProblem, DownloadProblem) as problem:
        return _download_refused(problem)
    db.session.commit()
    # The one place that serves a package's bytes: streamed, or handed to the front server (DOWNLOAD_ACCEL).
    return package_response(taken.package, taken.filename, NO_STORE)


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
    503: ("This service is briefly unavailable", "Please try again in a few minutes."),
}

# Redis or a database away for a moment (``app.outages``): 503 with Retry-After, so clients and balancers
# try again; the page says nothing of the cause.
RETRY_AFTER_SECONDS = 30


def _error_page(exc: Exception) -> Response:
    code = exc.code if isinstance(exc, HTTPException) and exc.code else 500
    if code >= 500:
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001, S110 - the session may itself be what failed
            pass
    title, text = ERROR_TEXT.get(code, ERROR_TEXT[500] if code >= 500 else ERROR_TEXT[400])
    if isinstance(exc, CSRFError):
        text = "The form was missing its security token or it had expired. Reload the page, then send the form again."
    template = "portal/error.html"
    if request.path.startswith("/admin") and code in (403, 404):
        if getattr(current_user, "is_authenticated", False):
            template = "admin/error.html"  # inside the dashboard, with its navigation
    response = current_app.make_response((render_template(template, code=code, title=title, text=text), code))
    if code == 405 and isinstance(exc, HTTPException):
        for key, value in exc.get_headers():
            if key.lower() == "allow":
                response.headers["Allow"] = value
    return response


def _unavailable_page(exc: Exception) -> Response:
    if not is_outage(exc):
        raise exc  # Flask's own handling: logged with its traceback, answered by the 500 page
    current_app.logger.error("a dependency is unavailable: %s", type(exc).__name__, exc_info=exc)
    response = _error_page(ServiceUnavailable())
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _no_staff_from_request(_request: object) -> None:
    return None


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    # Portal pages never log anyone in, but Flask-Login's template context asks for a loader. The admin
    # blueprint (registered after this one) installs the real loaders; this fallback only answers "nobody".
    if login_manager._request_callback is None and login_manager._user_callback is None:
        login_manager.request_loader(_no_staff_from_request)
    for code in (400, 403, 404, 405, 410, 413, 429, 500, 503):
        app.register_error_handler(code, _error_page)
    for unavailable in OUTAGE_CANDIDATES:
        app.register_error_handler(unavailable, _unavailable_page)
