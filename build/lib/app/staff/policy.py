"""Who must have a second factor: ``TOTP_REQUIRED_ROLES`` (default ``admin``), plus every role while
the admin setting "require TOTP for every staff member" is on. A staff member it covers cannot sign
in or use the dashboard without an enrolled authenticator, and enrols one only through an emailed
(or, for ``flask staff create``, printed) enrolment link: the password alone enrols nothing.
"""

from __future__ import annotations

from flask import current_app

from app.config import STAFF_ROLES, parse_roles
from app.extensions import db
from app.staff.models import StaffUser

REQUIRE_TOTP_KEY = "require_totp"


def required_by_config() -> frozenset[str]:
    value = current_app.config.get("TOTP_REQUIRED_ROLES", frozenset({"admin"}))
    return parse_roles(value) if isinstance(value, str) else frozenset(value)


def require_all_setting() -> bool:
    from app.dsr.models import AppSetting

    setting = db.session.get(AppSetting, REQUIRE_TOTP_KEY)
    return setting is not None and setting.value == "1"


def required_roles() -> frozenset[str]:
    return frozenset(STAFF_ROLES) if require_all_setting() else required_by_config()


def second_factor_required(user: StaffUser) -> bool:
    return user.role in required_roles()


def set_require_all(on: bool) -> None:
    from app.dsr.models import AppSetting

    value = "1" if on else "0"
    setting = db.session.get(AppSetting, REQUIRE_TOTP_KEY)
    if setting is None:
        db.session.add(AppSetting(key=REQUIRE_TOTP_KEY, value=value))
    else:
        setting.value = value
