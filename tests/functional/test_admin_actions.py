"""Officer actions on a request: effect, audit event, email to the subject, refusal in the wrong state."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.dsr.models import CorrectionItem, DsrRequest
from app.extensions import db
from app.mail.models import OutgoingMail
from app.queue import fetch_job
from tests.factories import make_account, make_request, make_staff
from tests.functional.admin_support import act, fresh_g, staff_client  # noqa: F401


@pytest.fixture
def officer(app):
    return staff_client(app, "officer")


def audit(dsr, event):
    stmt = select(AuditEvent).where(AuditEvent.request_id == dsr.id, AuditEvent.event == event).order_by(AuditEvent.id)
    return list(db.session.execute(stmt).scalars())


def mails(dsr, template):
    stmt = select(OutgoingMail).where(OutgoingMail.request_id == dsr.id, OutgoingMail.template == template)
    return list(db.session.execute(stmt).scalars())


def test_approve_access_moves_to_approved_audits_and_enqueues_after_commit(app, officer, redis_conn):
    client, user = officer
    dsr = make_request("pending_review")
    page = act(client, dsr, "approve")
    assert "Approved" in page
    assert dsr.status == "approved" and dsr.decided_by_id == user.id
    [ev] = audit(dsr, "request.status_changed")
    assert ev.data["to"] == "approved" and ev.actor_id == user.id
    assert fetch_job(f"fulfil-{dsr.id}", redis_conn).func_name == "workers.jobs.build_export"


def test_approve_rendered_form_has_no_required_empty_fields(app, officer):
    client, _ = officer
    dsr = make_request("pending_review")
    html = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    from bs4 import BeautifulSoup

    forms = [f for f in BeautifulSoup(html, "html.parser").find_all("form") if f.find("button", value="approve")]
    assert len(forms) == 1
    assert not forms[0].find_all(attrs={"required": True})
    assert forms[0].find("input", attrs={"name": "csrf_token"})


def test_approve_deletion_stores_the_plan_shown(app, officer):
    client, _ = officer
    make_account(email="gone@example.com")
    dsr = make_request("pending_review", request_type="deletion", email="gone@example.com")
    html = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert "Deletion plan (dry run)" in html and "anonymise" in html or "delete" in html
    act(client, dsr, "approve", confirm_reference=dsr.reference)
    assert dsr.status == "approved"
    items = dsr.plan["items"]
    assert {i["action"] for i in items} <= {"delete", "anonymise", "keep"} and items


def test_correction_needs_every_item_decided_before_approval(app, officer):
    client, user = officer
    dsr = make_request("pending_review", request_type="correction")
    db.session.add_all(
        [
            CorrectionItem(request_id=dsr.id, field="name", proposed_value="New Name", current_value="Old Name"),
            CorrectionItem(request_id=dsr.id, field="company", proposed_value="=HYPERLINK()"),
        ]
    )
    db.session.commit()
    page = act(client, dsr, "approve")
    assert dsr.status == "pending_review" and "Decide every proposed change" in page
    first, second = dsr.corrections
    html = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert "Old Name" in html and "New Name" in html
    act(client, dsr, "decide_item", item_id=str(first.id), decision="approved")
    page = act(client, dsr, "decide_item", item_id=str(second.id), decision="rejected")
    assert "reason for rejecting" in page.lower() and dsr.corrections[1].decision == "pending"
    act(client, dsr, "decide_item", item_id=str(second.id), decision="rejected", reject_reason="Not a company name")
    assert [c.decision for c in dsr.corrections] == ["approved", "rejected"]
    assert dsr.corrections[1].reject_reason == "Not a company name"
    assert dsr.corrections[0].decided_by_id == user.id
    assert len(audit(dsr, "request.correction_decided")) == 2
    act(client, dsr, "approve")
    assert dsr.status == "approved"
    # decisions are frozen once the request left review
    page = act(client, dsr, "decide_item", item_id=str(second.id), decision="approved")
    assert dsr.corrections[1].decision == "rejected" and "only be decided while" in page


def test_correction_all_rejected_cannot_be_approved(app, officer):
    client, _ = officer
    dsr = make_request("pending_review", request_type="correction")
    db.session.add(CorrectionItem(request_id=dsr.id, field="name", proposed_value="X", decision="rejected"))
    db.session.commit()
    page = act(client, dsr, "approve")
    assert dsr.status == "pending_review" and "deny the request instead" in page


def test_deny_with_reason_emails_the_subject(app, officer):
    client, _ = officer
    dsr = make_request("pending_review")
    html = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert "sent to the subject" in html
    act(client, dsr, "deny", reason="excessive", reason_text="You asked for the same data yesterday.")
    assert dsr.status == "denied" and dsr.denial_code == "excessive" and dsr.closed_at is not None
    [mail] = mails(dsr, "admin_denied")
    assert mail.to_addr == dsr.email
    assert "excessive or repeats" in mail.body_text and "same data yesterday" in mail.body_text
    assert f"/requests/{dsr.reference}?token=" in mail.body_text
    assert audit(dsr, "request.status_changed")[0].data["denial_code"] == "excessive"


def test_deny_other_without_explanation_or_bad_code_is_refused(app, officer):
    client, _ = officer
    dsr = make_request("pending_review")
    assert "Explain the reason" in act(client, dsr, "deny", reason="other", reason_text="  ")
    assert "Choose a reason" in act(client, dsr, "deny", reason="because")
    assert dsr.status == "pending_review" and not mails(dsr, "admin_denied")


def test_hold_resume_and_request_info(app, officer):
    client, _ = officer
    dsr = make_request("pending_review")
    act(client, dsr, "hold", reason="legal check")
    assert dsr.status == "on_hold" and dsr.hold_reason == "legal check" and not dsr.hold_pauses_clock
    act(client, dsr, "resume")
    assert dsr.status == "pending_review"
    act(client, dsr, "request_info", message="Which account email did you use?", identity="1")
    assert dsr.status == "on_hold" and dsr.hold_pauses_clock  # GDPR, identity information: a lawful pause
    [mail] = mails(dsr, "admin_info_requested")
    assert "Which account email did you use?" in mail.body_text and "paused" in mail.body_text
    [ev] = audit(dsr, "request.info_requested")
    assert ev.public and "Which account" not in ev.message and ev.data["clock_paused"]
    assert dsr.messages[0].body == "Which account email did you use?"
    assert "Write the question" in act(client, dsr, "request_info", message="")


def test_extend_once_with_reason_tells_the_subject(app, officer):
    client, _ = officer
    dsr = make_request("pending_review", jurisdiction="ccpa")
    before = dsr.due_at
    assert "Give the reason" in act(client, dsr, "extend", reason="")
    act(client, dsr, "extend", reason="Records span several systems.")
    assert (dsr.due_at - before).days == 45 and dsr.extension_reason == "Records span several systems."
    [mail] = mails(dsr, "admin_extended")
    assert "Records span several systems." in mail.body_text
    assert "already extended once" in act(client, dsr, "extend", reason="again")
    assert len(audit(dsr, "request.extended")) == 1


def test_retry_only_after_failure(app, officer, redis_conn):
    client, _ = officer
    failed = make_request("failed", last_error="boom")
    act(client, failed, "retry")
    assert failed.status == "approved" and failed.last_error is None
    assert fetch_job(f"fulfil-{failed.id}", redis_conn)
    pending = make_request("pending_review")
    assert "Cannot retry" in act(client, pending, "retry")
    assert pending.status == "pending_review"


def test_cancel_assign_note(app, officer):
    client, user = officer
    other = make_staff("officer")
    auditor = make_staff("auditor")
    dsr = make_request("pending_review")
    act(client, dsr, "assign", assignee=str(other.id))
    assert dsr.assignee_id == other.id
    assert "Choose an active officer" in act(client, dsr, "assign", assignee=str(auditor.id))
    assert dsr.assignee_id == other.id
    page = act(client, dsr, "note", note="Called legal <b>today</b>")
    assert "Called legal &lt;b&gt;today&lt;/b&gt;" in page
    act(client, dsr, "cancel", reason="duplicate")
    assert dsr.status == "cancelled"
    assert {e.event for e in db.session.execute(select(AuditEvent)).scalars()} >= {
        "request.assigned",
        "request.note_added",
        "request.status_changed",
    }


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("completed", "approve"),
        ("denied", "deny"),
        ("approved", "hold"),
        ("pending_review", "resume"),
        ("cancelled", "cancel"),
        ("in_progress", "approve"),
    ],
)
def test_actions_refused_in_the_wrong_state(app, officer, status, action):
    client, _ = officer
    dsr = make_request(status)
    page = act(client, dsr, action, reason="excessive")
    assert "Cannot" in page and dsr.status == status
    assert not audit(dsr, "request.status_changed")


def test_unknown_action_and_unknown_request(app, officer):
    client, _ = officer
    dsr = make_request("pending_review")
    assert "Unknown action" in act(client, dsr, "delete_everything")
    page = f"/admin/requests/{dsr.reference}"
    assert client.post_form("/admin/requests/DSR-0000-0000/action", {"action": "approve"}, page=page).status_code == 404
    assert client.get("/admin/requests/<script>").status_code == 404


def test_bulk_approve_and_deny(app, officer):
    client, _ = officer
    a, b = make_request("pending_review"), make_request("pending_review")
    done = make_request("completed")
    resp = client.post_form(
        "/admin/requests/bulk",
        {
            "action": "approve",
            "ref": [a.reference, b.reference, done.reference],
            "return_to": "/admin/requests?type=access",
        },
        page="/admin/requests",
    )
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/admin/requests?type=access")
    db.session.expire_all()
    assert (a.status, b.status, done.status) == ("approved", "approved", "completed")
    c = make_request("pending_review")
    client.post_form(
        "/admin/requests/bulk",
        {"action": "deny", "ref": [c.reference], "reason": "suspected_fraud", "return_to": "https://evil.test/"},
        page="/admin/requests",
    )
    db.session.expire_all()
    assert c.status == "denied" and c.denial_code == "suspected_fraud" and mails(c, "admin_denied")


def test_progress_endpoint_reports_the_job(app, officer):
    client, _ = officer
    dsr = make_request("in_progress", progress_percent=42, progress_rows=1234, progress_note="usage")
    data = client.get(f"/admin/requests/{dsr.reference}/progress").get_json()
    assert data == {
        "status": "in_progress",
        "status_label": "Being carried out",
        "percent": 42,
        "rows": 1234,
        "note": "usage",
        "running": True,
    }
    html = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert "<progress" in html and "js/progress.js" in html and "<script>" not in html
    assert db.session.get(DsrRequest, dsr.id).status == "in_progress"
