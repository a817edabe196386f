"""Staff sign-in and sign-out: password, then a second-factor code when the account has one.

The rules live in ``app.staff``: ``signin`` checks what was typed (throttled per account and client,
never a lock an anonymous attacker can put on the owner), ``sessions`` opens and ends the server-side
session the cookie names. These views parse the forms, call them, and render. Flask-Limiter bounds
attempts per address on top. Every sign-in, failure, delay and sign-out is audited.
"""

from __future__ import annotations

import hashlib
import time
from typing import TypedDict
from urllib.parse import urlsplit

from flask import current_app, flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user

from app.admin.forms import EnrolForm, LoginForm, ReauthForm, TotpForm
from app.admin.guard import SECOND_FACTOR_NEEDED, bp, requires
from app.audit import Actor, record_event
from app.extensions import db, limiter, login_manager
from app.staff import second_factor, signin
from app.staff import sessions as staff_sessions
from app.staff.models import StaffUser

TOTP_PENDING_SECONDS = 300
GENERIC_FAILURE = "That email and password did not work. Check them and try again."


@login_manager.user_loader
def load_user(session_id: str) -> StaffUser | None:
    """The cookie's id is a session id: the user of its live session record, or nobody."""
    return staff_sessions.resume(session_id)


class ClientInfo(TypedDict):
    """The client a session records (keyword arguments of ``open_session`` and ``confirm_setup``)."""

    ip: str | None
    user_agent: str | None


def client_info() -> ClientInfo:
    return {"ip": request.remote_addr, "user_agent": request.user_agent.string}


def sign_in_cookie(user: StaffUser) -> None:
    """Put the session just opened or renewed for ``user`` into the cookie."""
    login_user(user)
    session.permanent = True


def safe_next(target: str | None) -> str | None:
    """Only same-origin relative paths inside the dashboard; anything else is ignored."""
    if not target or len(target) > 500 or any(ord(c) < 32 for c in target):
        return None
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin"):
        return None
    if parts.path.startswith("/admin/login"):
        return None
    return target


def complete_login(user: StaffUser, next_url: str | None, method: str = "password") -> ResponseReturnValue:
    """Open a session for ``user`` (fresh cookie, fresh CSRF secret) and tell them of failed attempts."""
    failures, last = signin.signed_in(user, request.remote_addr)
    staff_sessions.open_session(user, **client_info())
    record_event("staff.login", Actor.staff(user), data={"totp": bool(user.totp_enabled), "method": method})
    db.session.commit()
    session.clear()  # nothing from before sign-in survives it, the CSRF secret included
    g.pop("csrf_token", None)  # so the next form gets a token bound to the new session
    sign_in_cookie(user)
    notice = signin.failures_message(failures, last)
    if notice:
        flash(notice, "warning")
    return redirect(next_url or url_for("admin.dashboard"))


def _password_stamp(user: StaffUser) -> str:
    """Changes when the password does: a pending second step survives no password change."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def _login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login() -> ResponseReturnValue:
    next_url = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url or url_for("admin.dashboard"))
    form = LoginForm()
    if form.validate_on_submit():
        outcome = signin.check_password(form.email.data.strip().lower(), form.password.data, request.remote_addr)
        db.session.commit()
        if outcome.status == "second_factor":
            user = outcome.user
            assert user is not None  # a password step that asks for the code names the account
            session["totp_pending"] = {"uid": user.id, "pw": _password_stamp(user), "at": int(time.time())}
            session["totp_next"] = next_url
            return redirect(url_for("admin.login_totp"))
        if outcome.ok:
            assert outcome.user is not None  # "ok" always names the account
            return complete_login(outcome.user, next_url)
        if outcome.status == "enrol":  # the right password, but no second factor where one is required
            flash(SECOND_FACTOR_NEEDED, "error")
        else:
            flash(signin.wait_message(outcome.wait) if outcome.status == "wait" else GENERIC_FAILURE, "error")
    elif request.method == "POST":
        flash("Enter your email and password.", "error")
    return render_template("admin/login.html", form=form)


def _pending_totp_user() -> StaffUser | None:
    pending = session.get("totp_pending")
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > TOTP_PENDING_SECONDS:
        return None
    uid = pending.get("uid")
    user = db.session.get(StaffUser, uid) if isinstance(uid, int) else None
    if user is None or not user.active or _password_stamp(user) != pending.get("pw") or not user.totp_enabled:
        return None
    return user


@bp.route("/login/totp", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login_totp() -> ResponseReturnValue:
    user = _pending_totp_user()
    if user is None:
        session.pop("totp_pending", None)
        flash("Sign in again.", "error")
        return redirect(url_for("admin.login"))
    form = TotpForm()
    if form.validate_on_submit():
        outcome = signin.check_second_factor(user, form.totp.data, request.remote_addr)
        db.session.commit()
        if outcome.ok:
            return complete_login(user, safe_next(session.get("totp_next")), outcome.method)
        if outcome.status == "wait":
            session.pop("totp_pending", None)
            flash(signin.wait_message(outcome.wait), "error")
            return redirect(url_for("admin.login"))
        flash("That code did not work. Codes change every 30 seconds.", "error")
    return render_template("admin/login_totp.html", form=form)


@bp.route("/logout", methods=["POST"])
@requires("auditor")
def logout() -> ResponseReturnValue:
    record = staff_sessions.current()
    if record is not None:
        staff_sessions.end(record, "logout")
    record_event("staff.logout", Actor.staff(current_user))
    db.session.commit()
    logout_user()
    session.clear()
    g.pop("csrf_token", None)
    flash("You are signed out.", "info")
    return redirect(url_for("admin.login"))


@bp.route("/reauth", methods=["GET", "POST"])
@requires("auditor")
def reauth() -> ResponseReturnValue:
    """Enter the password (and second factor) again before staff management or settings."""
    user: StaffUser = current_user._get_current_object()
    next_url = safe_next(request.args.get("next")) or url_for("admin.dashboard")
    form = ReauthForm()
    if form.validate_on_submit():
        code = (form.totp.data or "") if user.totp_enabled else None
        outcome = signin.check_current_password(user, form.password.data, code)
        if outcome.ok:
            record = staff_sessions.current()
            assert record is not None  # a signed-in request runs in its session (load_user -> sessions.resume)
            staff_sessions.mark_reauthenticated(record)
            record_event("staff.reauthenticated", Actor.staff(user))
            db.session.commit()
            return redirect(next_url)
        db.session.commit()
        if outcome.status == "wait":
            flash(signin.wait_message(outcome.wait), "error")
        else:
            flash(
                "That did not match. Enter your password" + (" and a current code." if code is not None else "."),
                "error",
            )
    return render_template("admin/reauth.html", form=form, needs_code=bool(user.totp_enabled))


@bp.route("/enrol/<token>", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def enrol(token: str) -> ResponseReturnValue:
    """Second-factor enrolment from the emailed (or printed) link: the link proves the mailbox, the
    password proves the person, a code proves the authenticator. Then a fresh session and the
    recovery codes, shown once."""
    enrolment = second_factor.enrolment_token(token)
    if enrolment is None:
        return render_template("admin/enrol_problem.html"), 404
    user = enrolment.user
    form = EnrolForm()
    if form.validate_on_submit():
        outcome = signin.check_current_password(user, form.password.data)
        if not outcome.ok:
            db.session.commit()
            flash(signin.wait_message(outcome.wait) if outcome.status == "wait" else GENERIC_FAILURE, "error")
        elif not second_factor.spend_enrolment(enrolment):
            db.session.rollback()
            return render_template("admin/enrol_problem.html"), 404
        else:
            g.staff_session = None  # whoever else was signed in in this browser, this is a new session
            codes = second_factor.confirm_setup(user, form.totp.data, **client_info())
            if codes is not None:
                signin.signed_in(user, request.remote_addr)
                db.session.commit()
                session.clear()
                g.pop("csrf_token", None)
                sign_in_cookie(user)
                flash("Two-step sign-in is on.", "success")
                return render_template("admin/recovery_codes.html", codes=codes)
            db.session.rollback()  # the token stays unspent
            flash("That code did not match. Check the time on your phone and try again.", "error")
    secret = second_factor.setup_secret(user)
    db.session.commit()
    uri = second_factor.provisioning_uri(user, secret)
    return render_template(
        "admin/enrol.html", form=form, user=user, secret=secret, uri=uri, qr=second_factor.qr_data_uri(uri)
    )
