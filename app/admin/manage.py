"""The audit log viewer (read-only: there is no update or delete path) and staff management."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from app.admin.forms import ROLE_CHOICES, SettingsForm, StaffCreateForm, StaffRoleForm
from app.admin.guard import REQUIRE_TOTP_KEY, bp, requires, totp_required
from app.admin.models import Role, StaffUser
from app.admin.queries import filter_date
from app.audit import Actor, record_event
from app.audit.models import AuditEvent
from app.csvsafe import csv_download, csv_line
from app.dsr.models import AppSetting
from app.extensions import db
from app.models_base import utcnow
from app.security import hash_password
from app.staff import accounts
from app.staff.mail import send_invite

PER_PAGE = 50


def audit_filters(args) -> dict:
    page = args.get("page") or "1"
    return {
        "event": (args.get("event") or "").strip()[:64],
        "actor": (args.get("actor") or "").strip()[:254],
        "reference": (args.get("reference") or "").strip().upper()[:32],
        "date_from": filter_date(args.get("date_from")),
        "date_to": filter_date(args.get("date_to")),
        "page": int(page) if page.isdigit() and 0 < len(page) < 6 and int(page) > 0 else 1,
    }


def audit_statement(f: dict):
    stmt = select(AuditEvent)
    if f["event"]:
        stmt = stmt.where(AuditEvent.event == f["event"])
    if f["actor"]:
        escaped = f["actor"].lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(func.lower(AuditEvent.actor_label).like(escaped + "%", escape="\\"))
    if f["reference"]:
        stmt = stmt.where(AuditEvent.request_reference == f["reference"])
    if f["date_from"]:
        stmt = stmt.where(AuditEvent.occurred_at >= datetime.combine(f["date_from"], datetime.min.time(), UTC))
    if f["date_to"]:
        end = datetime.combine(f["date_to"], datetime.min.time(), UTC) + timedelta(days=1)
        stmt = stmt.where(AuditEvent.occurred_at < end)
    return stmt


@bp.route("/audit")
@requires("auditor")
def audit_log():
    f = audit_filters(request.args)
    stmt = audit_statement(f)
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    events = db.session.execute(
        stmt.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
        .limit(PER_PAGE)
        .offset((f["page"] - 1) * PER_PAGE)
    ).scalars()
    names = db.session.execute(select(AuditEvent.event).distinct().order_by(AuditEvent.event)).scalars().all()
    args = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in f.items() if v and k != "page"}
    return render_template(
        "admin/audit.html",
        events=list(events),
        total=total,
        f=f,
        args=args,
        names=names,
        pages=max(1, -(-total // PER_PAGE)),
    )


@bp.route("/audit.csv")
@requires("auditor")
def audit_csv():
    f = audit_filters(request.args)
    record_event("audit.exported", Actor.staff(current_user), data={k: str(v) for k, v in f.items() if v})
    db.session.commit()
    stmt = audit_statement(f).order_by(AuditEvent.occurred_at, AuditEvent.id)

    def generate():
        yield csv_line(["id", "occurred_at", "event", "actor_type", "actor", "reference", "public", "message", "ip"])
        for ev in db.session.execute(stmt.execution_options(yield_per=1000)).scalars():
            yield csv_line(
                [
                    ev.id,
                    ev.occurred_at,
                    ev.event,
                    ev.actor_type,
                    ev.actor_label,
                    ev.request_reference,
                    ev.public,
                    ev.message,
                    ev.ip,
                ]
            )

    return csv_download(generate(), f"audit-{utcnow():%Y%m%d}.csv")


# --- staff management (admins) -------------------------------------------------------------------


def _staff_or_404(user_id: int) -> StaffUser:
    user = db.session.get(StaffUser, user_id)
    if user is None:
        abort(404)
    return user


def _temporary_password() -> str:
    return secrets.token_urlsafe(15)


def _staff_page(form: StaffCreateForm | None = None, status: int = 200):
    staff = db.session.execute(select(StaffUser).order_by(StaffUser.email)).scalars().all()
    settings = SettingsForm(require_totp=totp_required())
    return (
        render_template(
            "admin/staff.html",
            staff=staff,
            form=form or StaffCreateForm(),
            settings=settings,
            role_choices=ROLE_CHOICES,
        ),
        status,
    )


@bp.route("/staff")
@requires("admin")
def staff_list():
    return _staff_page()


@bp.route("/staff", methods=["POST"])
@requires("admin")
def staff_create():
    form = StaffCreateForm()
    if not form.validate_on_submit():
        return _staff_page(form, 400)
    email = form.email.data.strip().lower()
    if db.session.execute(select(StaffUser.id).where(StaffUser.email == email)).first():
        form.email.errors.append("A staff member with that email already exists.")
        return _staff_page(form, 400)
    password = _temporary_password()
    user = StaffUser(email=email, role=form.role.data, password_hash=hash_password(password), must_change_password=True)
    db.session.add(user)
    db.session.flush()
    record_event("staff.created", Actor.staff(current_user), data={"staff_id": user.id, "role": user.role})
    if form.send_invite.data:
        send_invite(user, current_user.email)
    db.session.commit()
    return render_template("admin/staff_secret.html", user=user, password=password, created=True)


@bp.route("/staff/<id:user_id>/role", methods=["POST"])
@requires("admin")
def staff_role(user_id: int):
    user = _staff_or_404(user_id)
    form = StaffRoleForm()
    if not form.validate_on_submit():
        flash("Choose a role.", "error")
    elif user.id == current_user.id:
        flash("You cannot change your own role; ask another admin.", "error")
    else:
        accounts.change_role(user, form.role.data, current_user)
        db.session.commit()
        flash(f"{user.email} is now {user.role}.", "success")
    return redirect(url_for("admin.staff_list"), code=303)


@bp.route("/staff/<id:user_id>/active", methods=["POST"])
@requires("admin")
def staff_active(user_id: int):
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
def staff_reset(user_id: int):
    user = _staff_or_404(user_id)
    password = _temporary_password()
    accounts.reset_password(user, password, current_user)
    db.session.commit()
    return render_template("admin/staff_secret.html", user=user, password=password, created=False)


@bp.route("/settings", methods=["POST"])
@requires("admin")
def settings_update():
    form = SettingsForm()
    if form.validate_on_submit():
        value = "1" if form.require_totp.data else "0"
        setting = db.session.get(AppSetting, REQUIRE_TOTP_KEY)
        if setting is None:
            db.session.add(AppSetting(key=REQUIRE_TOTP_KEY, value=value))
        else:
            setting.value = value
        record_event("settings.changed", Actor.staff(current_user), data={REQUIRE_TOTP_KEY: value})
        db.session.commit()
        flash("Settings saved.", "success")
    return redirect(url_for("admin.staff_list"), code=303)


__all__ = ["Role"]
