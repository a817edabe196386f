"""Human words for audit events, for the timeline and the audit log (the codes stay in the data)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

EVENT_LABELS = {
    "request.submitted": "Request received",
    "request.entered_by_staff": "Request entered by staff",
    "request.identity_verified_by_staff": "Identity verified by staff",
    "request.status_changed": "Status changed",
    "request.duplicate_linked": "Linked to an open request",
    "request.duplicate_submitted": "Sent again (joined the open request)",
    "request.verification_resent": "Confirmation link sent again",
    "request.status_link_resent": "Status link sent again",
    "request.viewed": "Opened by staff",
    "request.assigned": "Assigned",
    "request.note_added": "Note added",
    "request.extended": "Deadline extended",
    "request.info_requested": "Subject asked for information",
    "request.message_sent": "Message sent to the subject",
    "request.subject_answered": "The subject answered",
    "request.subject_reminded": "The subject was reminded",
    "request.correction_decided": "Proposed change decided",
    "request.email_change_confirmed": "New email address confirmed",
    "request.identifier_added": "Identifier added",
    "request.identifier_confirmed": "Identifier confirmed by staff",
    "request.identifier_verified": "Identifier confirmed by its link",
    "request.identifier_removed": "Identifier removed",
    "request.first_approval": "First approval (a second officer must approve)",
    "request.fulfilment_resumed": "Fulfilment resumed after an interruption",
    "request.plan_drift": "The deletion found other counts than its plan",
    "request.portal_copies_erased": "The portal's copies erased",
    "request.minimised": "Personal data minimised",
    "request.attachment_viewed": "Attachment opened by staff",
    "mailbox.reply_threaded": "A reply by email joined the thread",
    "mailbox.intake_item": "Mail received at the privacy address",
    "mailbox.item_viewed": "Mail opened by staff",
    "mailbox.item_dismissed": "Mail dismissed",
    "mailbox.item_converted": "Request made from a mail",
    "mailbox.attachment_viewed": "Mail attachment opened by staff",
    "mailbox.reply_added_by_staff": "A reply from another address added to the thread by staff",
    "mailbox.unreadable": "Mail that could not be read in (kept on the mail server)",
    "mail.bounced": "Our message could not be delivered (bounced)",
    "mail.failed": "Our message was refused by the mail server (not retried)",
    "export.downloaded": "Package downloaded",
    "export.purged": "Package file deleted",
    "retention.swept": "Retention sweep",
    "retention.account_erased": "Closed account erased",
    "retention.records_purged": "Old request records purged",
    "schedule.stale_jobs": "Scheduled jobs stopped",
    "audit.exported": "Audit log exported",
    "report.register_exported": "Request register exported",
    "settings.changed": "Settings changed",
    "staff.created": "Staff account created",
    "staff.login": "Signed in",
    "staff.login_failed": "Sign-in failed",
    "staff.login_delayed": "Sign-in delayed after failures",
    "staff.login_refused": "Sign-in refused",
    "staff.logout": "Signed out",
    "staff.password_changed": "Password changed",
    "staff.password_reset": "Password reset by an admin",
    "staff.role_changed": "Role changed",
    "staff.deactivated": "Staff account deactivated",
    "staff.reactivated": "Staff account reactivated",
    "staff.reauthenticated": "Signed in again for a sensitive page",
    "staff.enrolment_issued": "Two-step sign-in enrolment link issued",
    "staff.totp_enabled": "Two-step sign-in turned on",
    "staff.totp_disabled": "Two-step sign-in turned off",
    "staff.totp_reset": "Two-step sign-in reset by an admin",
    "staff.recovery_codes_issued": "Recovery codes issued",
    "staff.recovery_code_used": "Recovery code used",
}


def event_label(event: str) -> str:
    return EVENT_LABELS.get(event, event.rsplit(".", 1)[-1].replace("_", " ").capitalize())


def event_detail(event: str, data: dict[str, Any] | None, status_label: Callable[[str], str]) -> str:
    """A short readable line for an event's data (a status change says from what to what)."""
    data = data or {}
    if event == "request.status_changed" and data.get("from"):
        return f"{status_label(data['from'])} → {status_label(data.get('to', ''))}"
    if event == "request.extended" and data.get("new_due_at"):
        return f"new deadline {data['new_due_at'][:10]}"
    if event == "request.plan_drift":
        return ", ".join(f"{k}: planned {v[0]}, found {v[1]}" for k, v in data.items() if isinstance(v, list))
    return ""
