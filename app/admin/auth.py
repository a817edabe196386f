"""Staff sign-in: argon2id passwords, lockout, per-IP rate limit, optional TOTP, password change.

A failed attempt costs the same whether or not the email is known (``verify_password`` hashes
against a dummy), and the answer is the same too, so the form does not reveal who is staff. Five
failures lock the account for 15 minutes; Flask-Limiter bounds attempts per address on top.
Every sign-in, failure, lockout and sign-out is audited.

Sessions are server-side (``app.staff.sessions``): signing in opens a session record, signing out
or changing a credential ends it, and the user loader accepts a cookie only while its record is live.
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pyotp
from flask import current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select

from app.admin.forms import LoginForm, PasswordChangeForm, ReauthForm, TotpDisableForm, TotpForm
from app.admin.guard import bp, requires, totp_required
from app.audit import Actor, record_event
from app.extensions import db, limiter, login_manager
from app.models_base import utcnow
from app.security import hash_password, keyed_hash, needs_rehash, verify_password
from app.staff import sessions as staff_sessions
from app.staff.models import StaffUser
from app.staff.passwords import password_problem

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
TOTP_PENDING_SECONDS = 300
GENERIC_FAILURE = "That email and password did not work, or the account is locked for a while. Try again later."


@login_manager.user_loader
def load_user(session_id: str) -> StaffUser | None:
    """The cookie's id is a session id: the user of its live session record, or nobody."""
    return staff_sessions.resume(session_id)


def _client() -> dict:
    return {"ip": request.remote_addr, "user_agent": request.user_agent.string}


def _sign_in_cookie(user: StaffUser) -> None:
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


def _actor(user: StaffUser | None) -> Actor:
    """The account's own id and stored email, or "unknown address": never the text that was typed."""
    return Actor.staff(user) if user is not None else Actor.anonymous()


def _failure_data(user: StaffUser | None, email: str, reason: str) -> dict:
    data = {"reason": reason, "known": user is not None}
    if user is None:  # tells repeated tries on one unknown address apart without storing it
        data["email_key"] = keyed_hash("staff-login-email", email)
    return data


def _register_failure(user: StaffUser | None, email: str, reason: str) -> None:
    record_event("staff.login_failed", _actor(user), data=_failure_data(user, email, reason))
    if user is None:
        return
    user.failed_logins = (user.failed_logins or 0) + 1
    if user.failed_logins >= MAX_FAILURES:
        user.locked_until = utcnow() + LOCKOUT
        user.failed_logins = 0
        record_event("staff.locked_out", _actor(user), data={"minutes": int(LOCKOUT.total_seconds() // 60)})


def _is_locked(user: StaffUser | None) -> bool:
    return user is not None and user.locked_until is not None and user.locked_until > utcnow()


def _complete_login(user: StaffUser, next_url: str | None):
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = utcnow()
    staff_sessions.open_session(user, **_client())
    record_event("staff.login", Actor.staff(user), data={"totp": bool(user.totp_enabled)})
    db.session.commit()
    session.clear()  # a fresh session: nothing from before sign-in survives it, the CSRF secret included
    g.pop("csrf_token", None)  # so the next form gets a token bound to the new session
    _sign_in_cookie(user)
    return redirect(next_url or url_for("admin.dashboard"))


def _password_stamp(user: StaffUser) -> str:
    """Changes when the password does: a pending second step survives no password change."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def _login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    next_url = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url or url_for("admin.dashboard"))
    form = LoginForm()
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        user = db.session.execute(select(StaffUser).where(StaffUser.email == email)).scalar_one_or_none()
        locked = _is_locked(user)
        ok = verify_password(user.password_hash if user else None, form.password.data)
        if locked:
            record_event("staff.login_failed", _actor(user), data=_failure_data(user, email, "locked"))
        elif not ok or not user.active:
            _register_failure(user, email, "inactive" if ok else "password")
        else:
            if needs_rehash(user.password_hash):
                user.password_hash = hash_password(form.password.data)
            if user.totp_enabled and user.totp_secret:
                db.session.commit()
                session["totp_pending"] = {"uid": user.id, "pw": _password_stamp(user), "at": int(time.time())}
                session["totp_next"] = next_url
                return redirect(url_for("admin.login_totp"))
            return _complete_login(user, next_url)
        db.session.commit()
        flash(GENERIC_FAILURE, "error")
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


def verify_totp(user: StaffUser, code: str) -> bool:
    """Check a code (one step of clock drift allowed) and refuse to accept the same code twice."""
    code = code.strip()
    if not user.totp_secret or not pyotp.TOTP(user.totp_secret).verify(code, valid_window=1):
        return False
    from app.queue import get_redis

    return bool(get_redis().set(f"totp-used:{user.id}:{code}", "1", nx=True, ex=120))


@bp.route("/login/totp", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login_totp():
    user = _pending_totp_user()
    if user is None:
        session.pop("totp_pending", None)
        flash("Sign in again.", "error")
        return redirect(url_for("admin.login"))
    form = TotpForm()
    if form.validate_on_submit():
        if not _is_locked(user) and verify_totp(user, form.totp.data):
            return _complete_login(user, safe_next(session.get("totp_next")))
        _register_failure(user, user.email, "totp")
        db.session.commit()
        if _is_locked(user):
            session.pop("totp_pending", None)
            flash(GENERIC_FAILURE, "error")
            return redirect(url_for("admin.login"))
        flash("That code did not work. Codes change every 30 seconds.", "error")
    return render_template("admin/login_totp.html", form=form)


@bp.route("/logout", methods=["POST"])
@requires("auditor")
def logout():
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


@bp.route("/account/password", methods=["GET", "POST"])
@requires("auditor")
def change_password():
    form = PasswordChangeForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        problem = password_problem(form.new_password.data, user.email)
        if not verify_password(user.password_hash, form.current_password.data):
            form.current_password.errors.append("That is not your current password.")
        elif problem:
            form.new_password.errors.append(problem)
        elif form.new_password.data != form.confirm_password.data:
            form.confirm_password.errors.append("The two new passwords differ.")
        elif form.new_password.data == form.current_password.data:
            form.new_password.errors.append("Choose a password different from the current one.")
        else:
            user.password_hash = hash_password(form.new_password.data)
            user.password_changed_at = utcnow()
            user.must_change_password = False
            staff_sessions.renew(user, "password_changed", **_client())
            record_event("staff.password_changed", Actor.staff(user))
            db.session.commit()
            _sign_in_cookie(user)  # this browser continues in a new session; every other one (and copy) ends
            flash("Your password was changed. Other sessions were signed out.", "success")
            return redirect(url_for("admin.dashboard"))
    return render_template("admin/password.html", form=form)


@bp.route("/account/totp", methods=["GET", "POST"])
@requires("auditor")
def totp_setup():
    user = current_user._get_current_object()
    form = TotpForm()
    if user.totp_enabled:
        return render_template(
            "admin/totp.html", form=None, disable_form=TotpDisableForm(), required=totp_required(), user=user
        )
    if not user.totp_pending_secret:  # kept server-side until a code confirms it, never in the cookie
        user.totp_pending_secret = pyotp.random_base32()
        db.session.commit()
    secret = user.totp_pending_secret
    if form.validate_on_submit():
        if pyotp.TOTP(secret).verify(form.totp.data.strip(), valid_window=1):
            user.totp_secret = secret
            user.totp_enabled = True
            user.totp_pending_secret = None
            staff_sessions.renew(user, "second_factor_changed", **_client())
            record_event("staff.totp_enabled", Actor.staff(user))
            db.session.commit()
            _sign_in_cookie(user)
            flash("Two-step sign-in is on. Other sessions were signed out.", "success")
            return redirect(url_for("admin.dashboard"))
        flash("That code did not match. Check the time on your phone and try again.", "error")
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="ChatGPTTech privacy")
    return render_template(
        "admin/totp.html", form=form, secret=secret, uri=uri, required=totp_required(), user=user, disable_form=None
    )


@bp.route("/account/totp/disable", methods=["POST"])
@requires("auditor")
def totp_disable():
    user = current_user._get_current_object()
    form = TotpDisableForm()
    if totp_required():
        flash("Two-step sign-in is required for all staff; it cannot be turned off.", "error")
    elif form.validate_on_submit() and verify_password(user.password_hash, form.current_password.data):
        user.totp_enabled = False
        user.totp_secret = None
        staff_sessions.renew(user, "second_factor_changed", **_client())
        record_event("staff.totp_disabled", Actor.staff(user))
        db.session.commit()
        _sign_in_cookie(user)
        flash("Two-step sign-in is off. Other sessions were signed out.", "success")
    else:
        flash("That is not your current password.", "error")
    return redirect(url_for("admin.totp_setup"))


@bp.route("/reauth", methods=["GET", "POST"])
@requires("auditor")
@limiter.limit(_login_limit, methods=["POST"])
def reauth():
    """Enter the password (and second factor) again before staff management or settings."""
    user = current_user._get_current_object()
    next_url = safe_next(request.args.get("next")) or url_for("admin.dashboard")
    form = ReauthForm()
    if form.validate_on_submit():
        ok = verify_password(user.password_hash, form.password.data)
        if ok and user.totp_enabled:
            ok = verify_totp(user, form.totp.data or "")
        if ok:
            staff_sessions.mark_reauthenticated(staff_sessions.current())
            record_event("staff.reauthenticated", Actor.staff(user))
            db.session.commit()
            return redirect(next_url)
        record_event("staff.reauth_failed", Actor.staff(user))
        db.session.commit()
        flash(
            "That did not match. Enter your password" + (" and a current code." if user.totp_enabled else "."), "error"
        )
    return render_template("admin/reauth.html", form=form, needs_code=bool(user.totp_enabled))
