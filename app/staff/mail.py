"""Mail to staff, and the links in it.

Every link is ``PORTAL_BASE_URL`` plus the route's path, never the host of the request that caused
the mail: a request with ``Host: evil.example`` must not turn an invite into a link to evil.example
(the finding in issue 12). ``portal_link`` works without a request too (the CLI, the workers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import current_app

from app.mail import queue_mail

if TYPE_CHECKING:
    from app.staff.models import StaffUser


def portal_link(endpoint: str, **values: Any) -> str:
    """The absolute URL of ``endpoint`` under ``PORTAL_BASE_URL``."""
    path = current_app.url_map.bind("localhost").build(endpoint, values)
    return current_app.config["PORTAL_BASE_URL"].rstrip("/") + path


def send_invite(user: StaffUser, inviter_email: str, enrol_link: str | None = None) -> None:
    """The 'your account exists' mail: where to sign in, and the second-factor enrolment link if one is due."""
    queue_mail(
        user.email,
        "admin_staff_invite",
        "Your ChatGPTTech privacy dashboard account",
        role=user.role,
        login_url=portal_link("admin.login"),
        enrol_url=enrol_link,
        hours=current_app.config["STAFF_ENROL_LINK_HOURS"],
        inviter=inviter_email,
    )


def enrolment_link(raw_token: str) -> str:
    return portal_link("admin.enrol", token=raw_token)


def send_enrolment(user: StaffUser, raw_token: str, reason: str) -> None:
    """The second-factor enrolment link, mailed to the account's own address (which is the point)."""
    queue_mail(
        user.email,
        "admin_staff_enrol",
        "Set up two-step sign-in for the ChatGPTTech privacy dashboard",
        reason=reason,
        enrol_url=enrolment_link(raw_token),
        login_url=portal_link("admin.login"),
        hours=current_app.config["STAFF_ENROL_LINK_HOURS"],
    )
