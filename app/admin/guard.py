"""The one guard in front of every admin view (default deny).

Each view declares the least role that may use it with ``@requires(role)``; a view that declares
nothing is refused (403) even to admins, so forgetting the declaration fails closed. Auditors read
everything and change nothing: any state-changing method from an auditor is refused, except on the
few self-service endpoints (logout, own password, own second factor). The test suite walks
``app.url_map`` to prove every admin endpoint is covered.

Staff management and security settings (every path under ``REAUTH_PATHS``) also need the password
(and second factor) entered in this session within ``STAFF_REAUTH_MINUTES``: a session left open, or
a stolen cookie, cannot add an admin or turn the second factor off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from app.extensions import db
from app.staff import policy
from app.staff import sessions as staff_sessions
from app.staff.models import Role

if TYPE_CHECKING:
    from flask_login import AnonymousUserMixin

    from app.staff.models import StaffUser

bp = Blueprint("admin", __name__, url_prefix="/admin")

ROLE_RANK = {Role.AUDITOR.value: 1, Role.OFFICER.value: 2, Role.ADMIN.value: 3}
# endpoint -> least role allowed; filled by @requires at import time.
ENDPOINT_ROLES: dict[str, str] = {}
# Reachable without a session.
PUBLIC = frozenset({"admin.login", "admin.login_totp", "admin.enrol"})
# A signed-in user of any role may POST here (their own session and credentials only).
SELF_SERVICE = frozenset(
    {
        "admin.logout",
        "admin.save_view",  # an officer's own saved queue views
        "admin.change_password",
        "admin.totp_setup",
        "admin.totp_disable",
        "admin.recovery_codes",
        "admin.reauth",
    }
)
# Staff management, settings and new recovery codes: a recent re-authentication is needed.
REAUTH_PATHS = ("/admin/staff", "/admin/settings", "/admin/account/recovery-codes")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


ViewT = TypeVar("ViewT", bound=Callable[..., Any])


def requires(role: Role | str) -> Callable[[ViewT], ViewT]:
    """Declare the least role allowed on a view. Put it under ``@bp.route``."""
    role = Role(role).value

    def deco(view: ViewT) -> ViewT:
        ENDPOINT_ROLES[f"{bp.name}.{view.__name__}"] = role
        return view

    return deco


def has_role(user: StaffUser | AnonymousUserMixin | None, role: str) -> bool:
    if not user or not user.is_authenticated:
        return False
    return ROLE_RANK.get(user.role, 0) >= ROLE_RANK[role]


@bp.before_request
def guard() -> ResponseReturnValue | None:
    endpoint = request.endpoint or ""
    if endpoint in PUBLIC:
        return None
    if not current_user.is_authenticated:
        if request.method in SAFE_METHODS:
            return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
        abort(401)
    least = ENDPOINT_ROLES.get(endpoint)
    if least is None or not has_role(current_user, least):
        abort(403)
    if request.method not in SAFE_METHODS and current_user.role == Role.AUDITOR and endpoint not in SELF_SERVICE:
        abort(403)
    if not current_user.totp_enabled and policy.second_factor_required(current_user):
        # Required (by role or by the setting) and not set up: no dashboard. Setting it up needs the
        # emailed enrolment link, not this session, which may have been opened with a password alone.
        return _end_session_for_missing_second_factor()
    if endpoint not in SELF_SERVICE and current_user.must_change_password:
        return redirect(url_for("admin.change_password"))
    if request.path.startswith(REAUTH_PATHS) and not staff_sessions.is_fresh(staff_sessions.current()):
        flash(
            "Confirm it is you to manage staff and settings."
            + ("" if request.method in SAFE_METHODS else " Then do that again."),
            "info",
        )
        back = request.full_path.rstrip("?") if request.method in SAFE_METHODS else url_for("admin.staff_list")
        return redirect(url_for("admin.reauth", next=back))
    return None


def _end_session_for_missing_second_factor() -> ResponseReturnValue:
    from flask import session
    from flask_login import logout_user

    record = staff_sessions.current()
    if record is not None:
        staff_sessions.end(record, "second_factor_required")
        db.session.commit()
    logout_user()
    session.clear()
    flash(SECOND_FACTOR_NEEDED, "error")
    return redirect(url_for("admin.login"))


SECOND_FACTOR_NEEDED = (
    "Your account needs two-step sign-in before you can use the dashboard. Open the setup link we emailed "
    "you; if it has expired or is lost, ask an admin to reset your two-step sign-in."
)


@bp.app_context_processor
def _admin_helpers() -> dict[str, Any]:
    from app.mail import outbox_enabled

    return {"has_role": has_role, "outbox_enabled": outbox_enabled()}
