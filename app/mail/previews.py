"""Every message we send, rendered with sample data: the admin's preview page and the test that each
template gives an HTML and a text part carrying its main link."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from flask import current_app

from app.dsr.law import authority_lines, law_for
from app.models_base import utcnow

SAMPLE_LINK = "https://privacy.example.com/requests/DSR-SAMP-LE01?token=sample-token"


def sample_request(jurisdiction: str = "gdpr") -> SimpleNamespace:
    now = utcnow()
    return SimpleNamespace(
        id=None,
        reference="DSR-SAMP-LE01",
        request_type="access",
        jurisdiction=jurisdiction,
        full_name="Ada Sample",
        email="ada@example.com",
        received_at=now - timedelta(days=3),
        due_at=now + timedelta(days=27),
        original_due_at=now + timedelta(days=27),
        extended_at=None,
        hold_pauses_clock=False,
        verified_at=now,
        attempts=1,
    )


def samples() -> dict[str, dict[str, Any]]:
    """Template name -> (main link, context)."""
    base = current_app.config["PORTAL_BASE_URL"]
    items = [
        {"title": "Account", "action": "deleted", "count": 1, "reason": "Deleted.", "category": "account"},
        {
            "title": "API usage logs",
            "action": "deleted",
            "count": 1200,
            "reason": "Deleted in batches.",
            "category": "usage_logs",
        },  # fmt: skip
    ]
    common = {"status_link": SAMPLE_LINK}
    return {
        "verify": {"link": base + "/verify/sample-token", "hours": 24, "type_label": "Access (a copy of your data)"},
        "receipt": {"link": SAMPLE_LINK, "link_days": 30, "type_label": "Access", "law_label": "GDPR"},
        "cancelled": {"link": SAMPLE_LINK, "type_label": "Access"},
        "duplicate_notice": {"link": SAMPLE_LINK, "type_label": "Access"},
        "lookup_links": {"lines": [("DSR-SAMP-LE01", "Access", SAMPLE_LINK)]},
        "admin_cancelled": {**common, "reason": "You withdrew it by phone."},
        "admin_denied": {
            **common,
            "reason_code": "identity_not_verified",
            "reason_label": "We could not verify your identity",
            "reason_explained": "We must be sure a request comes from the person the data is about.",
            "reason_text": "",
        },
        "admin_extended": {**common, "reason": "Your records are in three systems."},
        "admin_info_requested": {
            **common,
            "message": "Which API key prefix do you use?",
            "clock_paused": True,
            "identity": True,
        },  # fmt: skip
        "admin_message": {**common, "message": "We are working on it."},
        "subject_reminder": {**common},
        "fulfil_export_ready": {
            "download_url": base + "/download/sample-token",
            "expires_at": utcnow(),
            "max_uses": 5,
        },  # fmt: skip
        "fulfil_no_data": {**common},
        "fulfil_deletion_report": {
            **common,
            "outcome": "completed",
            "report_lines": ["Account: deleted (1).", "API usage logs: deleted (1200)."],
            "kept_any": False,
            "stripe_deleted": False,
            "items": items,
        },  # fmt: skip
        "fulfil_correction_done": {
            **common,
            "correction_lines": ["Name: updated. The new value is Ada Sample."],
            "rejected": False,
            "applied_any": True,
        },  # fmt: skip
        "fulfil_opt_out": {**common, "opted_out": True},
        "fulfil_decision": {**common, "decision": "We stopped using your data for product analytics."},
        "email_change_confirm": {"link": base + "/confirm/sample-token", "hours": 24},
        "email_changed_notice": {},
        "identifier_verify": {"link": base + "/identifiers/sample-token", "hours": 24, "type_label": "Deletion"},
        "fulfil_staff_alert": {
            "error": "BillingTransient: Stripe unreachable",
            "link": base + "/admin/requests/DSR-SAMP-LE01",
        },  # fmt: skip
        "fulfil_staff_review": {"rows": 1234, "withheld": 1, "link": base + "/admin/requests/DSR-SAMP-LE01"},
        "fulfil_staff_reminder": {
            "today": utcnow(),
            "overdue": [],
            "due_soon": [],
            "waiting": [],
            "days": 7,
            "link": base + "/admin/requests?overdue=1",
        },  # fmt: skip
        "fulfil_staff_drift": {
            "drift_lines": ["usage_logs: the plan said 10, the job found 14"],
            "link": base + "/admin/requests/DSR-SAMP-LE01",
        },  # fmt: skip
        "fulfil_staff_stale_jobs": {"jobs": ["retention_sweep_job"]},
        "admin_staff_invite": {
            "role": "officer",
            "login_url": base + "/admin/login",
            "inviter": "admin@example.com",
            "enrol_url": base + "/admin/enrol/sample-token",
            "hours": 72,
        },  # fmt: skip
        "admin_staff_enrol": {
            "reason": "reset",
            "enrol_url": base + "/admin/enrol/sample-token",
            "login_url": base + "/admin/login",
            "hours": 72,
        },  # fmt: skip
    }


# Messages that only inform: they carry no link to act on.
NO_LINK = frozenset({"email_changed_notice", "fulfil_staff_stale_jobs"})


def main_link(template: str, context: dict[str, Any]) -> str | None:
    for key in ("link", "download_url", "enrol_url", "status_link", "login_url"):
        if context.get(key):
            return context[key]
    if template == "lookup_links":
        return context["lines"][0][2]
    return None


def render_sample(template: str, jurisdiction: str = "gdpr") -> tuple[str, str | None, str | None]:
    """(text, html, main link) of a template with its sample data."""
    from app.mail import render_message

    law = law_for(jurisdiction)
    context = {
        "base_url": current_app.config["PORTAL_BASE_URL"],
        "dsr": sample_request(jurisdiction),
        "law": law,
        "authorities": authority_lines(law),
        "name": "Ada Sample",
        "privacy_contact": current_app.config["PRIVACY_CONTACT"],
        **samples()[template],
    }
    text, html = render_message(template, f"Sample: {template}", context)
    return text, html, main_link(template, context)
