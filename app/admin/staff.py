"""Staff management (admins): accounts, roles, resets, the second-factor setting.

Every route here sits under ``/admin/staff`` or ``/admin/settings``, so the guard also wants a recent
re-authentication. The rules (who needs a second factor, which sessions end) are in ``app.staff``;
these views parse the forms, call it, mail what it returns and render.
"""

from __future__ import annotations

import secrets

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select

from app.admin.forms import ROLE_CHOICES, SettingsForm, StaffCreateForm, StaffRoleForm
from app.admin.guard import bp, requires
from app.audit import Actor
from app.extensions import db
from app.staff import accounts, policy, second_factor
from app.staff.mail import enrolment_link, send_enrolment, send_invite
from app.staff.models import StaffUser


def _staff_or_404(user_id: int) -> StaffUser:
    user = db.session.get(StaffUser, user_id)
    if user is None:
        abort(404)
    return user


def _temporary_password() -> str:
    return secrets.token_urlsafe(15)


def _staff_page(form: StaffCreateForm | None = None, status: int = 200) -> tuple[str, int]:
    staff = db.session.execute(select(StaffUser).order_by(StaffUser.email)).scalars().all()
    return (
        render_template(
            "admin/staff.html",
            staff=staff,
            form=form or StaffCreateForm(),
            settings=SettingsForm(require_totp=policy.require_all_setting()),
            required_roles=sorted(policy.required_roles()),
            role_choices=ROLE_CHOICES,
        ),
        status,
    )


@bp.route("/staff")
@requires("admin")
def staff_list() -> ResponseReturnValue:
    return _staff_page()


@bp.route("/staff", methods=["POST"])
@requires("admin")
def staff_create() -> ResponseReturnValue:
    form = StaffCreateForm()
    if not form.validate_on_submit():
        return _staff_page(form, 400)
    password = _temporary_password()
    try:
        user, enrol = accounts.create(
            form.email.data, form.role.data, password, Actor.staff(current_user), temporary=True
        )
    except accounts.AccountError as exc:
        form.email.errors.append(str(exc))
        return _staff_page(form, 400)
    if form.send_invite.data or enrol:  # a required second factor is set up only from the mailed link
        send_invite(user, current_user.email, enrolment_link(enrol) if enrol else None)
    db.session.commit()
    return render_template("admin/staff_secret.html", user=user, password=password, created=True, enrolment=bool(enrol))


@bp.route("/staff/<id:user_id>/role", methods=["POST"])
@requires("admin")
def staff_role(user_id: int) -> ResponseReturnValue:
    user = _staff_or_404(user_id)
    form = StaffRoleForm()
    if not form.validate_on_submit():
        flash("Choose a role.", "error")
    elif user.id == current_user.id:
        flash("You cannot change your own role; ask another admin.", "error")
    else:
        enrol = accounts.change_role(user, form.role.data, current_user)
        if enrol:
            send_enrolment(user, enrol, "role")
        db.session.commit()
        flash(
            f"{user.email} is now {user.role}." + (" We emailed them a two-step setup link." if enrol else ""),
            "success",
        )
    return redirect(url_for("admin.staff_list"), code=303)


@bp.route("/staff/<id:user_id>/active", methods=["POST"])
@requires("admin")
def staff_active(user_id: int) -> ResponseReturnValue:
    user = _staff_or_404(user_id)
    activate = request.form.get("active") == "1"
    if user.id == current_user.id:
        flash("You cannot deactivate yourself.", "error")
    else:
        accounts.set_active(user, activate, current_user)  # ends every session of theirs now
        db.session.commit()
        flash(f"{user.email} {'reactivated' if activate else 'deactivated; their sessions ended'}.", "success")
    return redirect(url_for("admin.staff_list"), code=303)


@bp.route("/staff/<id:user_id>/reset", methods=["POST"])
@requires("admin")
def staff_reset(user_id: int) -> ResponseReturnValue:
    user = _staff_or_404(user_id)
    password = _temporary_password()
    enrol = accounts.reset_password(user, password, current_user)
    if enrol:
        send_enrolment(user, enrol, "reset")
    db.session.commit()
    return render_template(
        "admin/staff_secret.html", user=user, password=password, created=False, enrolment=bool(enrol)
    )


@bp.route("/staff/<id:user_id>/totp-reset", methods=["POST"])
@requires("admin")
def staff_totp_reset(user_id: int) -> ResponseReturnValue:
    """A lost phone: the factor and recovery codes go, sessions end, a new enrolment link is mailed."""
    user = _staff_or_404(user_id)
    if user.id == current_user.id:
        flash("You cannot reset your own two-step sign-in; ask another admin.", "error")
    else:
        send_enrolment(user, second_factor.reset(user, current_user), "reset")
        db.session.commit()
        flash(f"Two-step sign-in of {user.email} was reset; we emailed them a link to set it up again.", "success")
    return redirect(url_for("admin.staff_list"), code=303)


@bp.route("/settings", methods=["POST"])
@requires("admin")
def settings_update() -> ResponseReturnValue:
    form = SettingsForm()
    if form.validate_on_submit():
        try:
            issued = accounts.require_second_factor_for_all(bool(form.require_totp.data), current_user)
        except accounts.AccountError as exc:
            flash(str(exc), "error")
            return redirect(url_for("admin.staff_list"), code=303)
        for user, raw in issued:
            send_enrolment(user, raw, "setting")
        db.session.commit()
        flash(
            "Settings saved." + (f" We emailed a two-step setup link to {len(issued)} staff." if issued else ""),
            "success",
        )
    return redirect(url_for("admin.staff_list"), code=303)
