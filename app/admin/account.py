"""A staff member's own account: password and second factor."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from app.admin.auth import client_info, sign_in_cookie
from app.admin.forms import PasswordChangeForm, TotpDisableForm, TotpForm
from app.admin.guard import bp, requires, totp_required
from app.extensions import db
from app.staff import accounts, second_factor, signin
from app.staff.passwords import password_problem


@bp.route("/account/password", methods=["GET", "POST"])
@requires("auditor")
def change_password():
    form = PasswordChangeForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
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


@bp.route("/account/totp", methods=["GET", "POST"])
@requires("auditor")
def totp_setup():
    user = current_user._get_current_object()
    if user.totp_enabled:
        return render_template(
            "admin/totp.html", form=None, disable_form=TotpDisableForm(), required=totp_required(), user=user
        )
    form = TotpForm()
    secret = second_factor.setup_secret(user)
    db.session.commit()
    if form.validate_on_submit():
        if second_factor.confirm_setup(user, form.totp.data, **client_info()):
            db.session.commit()
            sign_in_cookie(user)
            flash("Two-step sign-in is on. Other sessions were signed out.", "success")
            return redirect(url_for("admin.dashboard"))
        flash("That code did not match. Check the time on your phone and try again.", "error")
    return render_template(
        "admin/totp.html",
        form=form,
        secret=secret,
        uri=second_factor.provisioning_uri(user, secret),
        required=totp_required(),
        user=user,
        disable_form=None,
    )


@bp.route("/account/totp/disable", methods=["POST"])
@requires("auditor")
def totp_disable():
    user = current_user._get_current_object()
    form = TotpDisableForm()
    if totp_required():
        flash("Two-step sign-in is required for all staff; it cannot be turned off.", "error")
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
            flash(
                signin.wait_message(outcome.wait) if outcome.status == "wait" else "That is not your current password.",
                "error",
            )
    return redirect(url_for("admin.totp_setup"))
