"""A staff member's own account: password, second factor, recovery codes."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from app.admin.auth import client_info, sign_in_cookie
from app.admin.forms import PasswordChangeForm, RecoveryCodesForm, TotpDisableForm, TotpForm
from app.admin.guard import bp, requires
from app.extensions import db
from app.staff import accounts, policy, second_factor, signin
from app.staff.models import StaffUser
from app.staff.passwords import password_problem


@bp.route("/account/password", methods=["GET", "POST"])
@requires("auditor")
def change_password() -> ResponseReturnValue:
    form = PasswordChangeForm()
    if form.validate_on_submit():
        user: StaffUser = current_user._get_current_object()
        new, current = form.new_password.data, form.current_password.data
        problem = password_problem(new, user.email)
        if problem:
            form.new_password.errors.append(problem)
        elif new != form.confirm_password.data:
            form.confirm_password.errors.append("The two new passwords differ.")
        elif new == current:
            form.new_password.errors.append("Choose a password different from the current one.")
        else:
            outcome = signin.check_current_password(user, current)
            if outcome.ok:
                accounts.change_own_password(user, new, **client_info())
                db.session.commit()
                sign_in_cookie(user)  # this browser continues in a new session; every other one (and copy) ends
                flash("Your password was changed. Other sessions were signed out.", "success")
                return redirect(url_for("admin.dashboard"))
            db.session.commit()
            form.current_password.errors.append(
                signin.wait_message(outcome.wait) if outcome.status == "wait" else "That is not your current password."
            )
    return render_template("admin/password.html", form=form)


def _setup_page(user: StaffUser, form: TotpForm, status: int = 200) -> tuple[str, int]:
    secret = second_factor.setup_secret(user)
    db.session.commit()
    uri = second_factor.provisioning_uri(user, secret)
    return (
        render_template(
            "admin/totp.html",
            user=user,
            form=form,
            secret=secret,
            uri=uri,
            qr=second_factor.qr_data_uri(uri),
            required=policy.second_factor_required(user),
        ),
        status,
    )


@bp.route("/account/totp", methods=["GET", "POST"])
@requires("auditor")
def totp_setup() -> ResponseReturnValue:
    user: StaffUser = current_user._get_current_object()
    if user.totp_enabled:
        return render_template(
            "admin/totp.html",
            user=user,
            disable_form=TotpDisableForm(),
            codes_form=RecoveryCodesForm(),
            codes_left=second_factor.recovery_codes_left(user),
            required=policy.second_factor_required(user),
        )
    form = TotpForm()
    if form.validate_on_submit():
        codes = second_factor.confirm_setup(user, form.totp.data, **client_info())
        if codes is not None:
            db.session.commit()
            sign_in_cookie(user)
            flash("Two-step sign-in is on. Other sessions were signed out.", "success")
            return render_template("admin/recovery_codes.html", codes=codes)
        flash("That code did not match. Check the time on your phone and try again.", "error")
    return _setup_page(user, form)


@bp.route("/account/recovery-codes", methods=["POST"])
@requires("auditor")
def recovery_codes() -> ResponseReturnValue:
    """Ten new recovery codes (the old ones stop working); needs a recent re-authentication."""
    user: StaffUser = current_user._get_current_object()
    if not user.totp_enabled or not RecoveryCodesForm().validate_on_submit():
        flash("Recovery codes come with two-step sign-in.", "error")
        return redirect(url_for("admin.totp_setup"))
    codes = second_factor.new_recovery_codes(user)
    db.session.commit()
    return render_template("admin/recovery_codes.html", codes=codes)


@bp.route("/account/totp/disable", methods=["POST"])
@requires("auditor")
def totp_disable() -> ResponseReturnValue:
    user: StaffUser = current_user._get_current_object()
    form = TotpDisableForm()
    if policy.second_factor_required(user):
        flash("Two-step sign-in is required for your account; it cannot be turned off.", "error")
    elif not form.validate_on_submit():
        flash("Enter your current password.", "error")
    else:
        outcome = signin.check_current_password(user, form.current_password.data)
        if outcome.ok:
            second_factor.turn_off(user, **client_info())
            db.session.commit()
            sign_in_cookie(user)
            flash("Two-step sign-in is off. Other sessions were signed out.", "success")
        else:
            db.session.commit()
            wrong = "That is not your current password."
            flash(signin.wait_message(outcome.wait) if outcome.status == "wait" else wrong, "error")
    return redirect(url_for("admin.totp_setup"))
