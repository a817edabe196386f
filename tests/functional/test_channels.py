"""Every channel in, every right out: staff intake with the real receipt date, opt-out, restriction and
objection decided by staff, authorised agents and guardians, the two-way thread."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from app.admin.queries import QueueFilters, queue_page
from app.dsr.models import DsrRequest, RequestMessage
from app.extensions import db
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from app.platform.models import Account
from tests.factories import make_account, make_request
from tests.functional._fulfil import run_jobs
from tests.functional.admin_support import act, fresh_g, staff_client  # noqa: F401

INTAKE = {
    "request_type": "access",
    "email": "post@example.com",
    "full_name": "Post Sender",
    "jurisdiction": "gdpr",
    "channel": "letter",
    "details": "Sent by post.",
    "verification": "verified",
    "verification_method": "signed letter",
    "verification_evidence": "signature matches the contract on file",
}


@pytest.fixture
def officer(app):
    return staff_client(app, "officer")


def test_staff_intake_with_a_back_dated_receipt_runs_the_deadline_from_it(app, officer):
    client, _ = officer
    received = (date.today() - timedelta(days=40)).isoformat()
    resp = client.post_form("/admin/requests/new", {**INTAKE, "received_at": received})
    assert resp.status_code == 303
    dsr = db.session.execute(select(DsrRequest)).scalar_one()
    assert dsr.status == "pending_review" and dsr.channel == "letter" and dsr.verification_method == "signed letter"
    assert dsr.received_at.date().isoformat() == received
    assert dsr.due_at < utcnow()  # one month from the letter's date: already overdue
    rows, _ = queue_page(QueueFilters.parse({"overdue": "1", "channel": "letter"}), utcnow())
    assert [r.id for r in rows] == [dsr.id]
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "letter" in page and dsr.reference in page
    assert [m.template for m in db.session.execute(select(OutgoingMail)).scalars()] == ["receipt"]
    page = act(client, dsr, "extend", reason="busy")
    assert "has passed" in page


def test_staff_intake_refuses_a_future_date_and_unverified_claims(app, officer):
    client, _ = officer
    future = (date.today() + timedelta(days=2)).isoformat()
    assert client.post_form("/admin/requests/new", {**INTAKE, "received_at": future}).status_code == 400
    bad = {**INTAKE, "received_at": date.today().isoformat(), "verification_evidence": ""}
    assert client.post_form("/admin/requests/new", bad).status_code == 400
    assert client.post_form("/admin/requests/new", {**INTAKE, "received_at": "yesterday"}).status_code == 400
    assert db.session.execute(select(DsrRequest)).first() is None


def test_staff_intake_with_a_link_waits_for_the_subject(app, officer):
    client, _ = officer
    data = {**INTAKE, "verification": "link", "channel": "phone", "received_at": date.today().isoformat()}
    assert client.post_form("/admin/requests/new", data).status_code == 303
    dsr = db.session.execute(select(DsrRequest)).scalar_one()
    assert dsr.status == "unverified"
    [mail] = db.session.execute(select(OutgoingMail)).scalars()
    assert mail.template == "verify" and "/verify/" in mail.body_text and "Post Sender" not in mail.body_text


def test_auditors_cannot_enter_requests(app):
    auditor, _ = staff_client(app, "auditor")
    assert auditor.get("/admin/requests/new").status_code == 403


def test_opt_out_reaches_the_platform_account(app, officer, redis_conn):
    client, _ = officer
    account_id = make_account(email="opt@example.com").id
    dsr = make_request("pending_review", "opt_out", email="opt@example.com")
    act(client, dsr, "approve")
    dsr_id = dsr.id
    run_jobs(redis_conn)
    assert db.session.get(Account, account_id).analytics_opt_out is True
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == "completed" and dsr.outcome == "completed"
    [mail] = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_opt_out")).scalars()
    assert "opted out of analytics" in mail.body_text


@pytest.mark.parametrize("kind", ["restriction", "objection"])
def test_restriction_and_objection_send_the_officers_recorded_decision(app, officer, redis_conn, kind):
    client, _ = officer
    dsr = make_request("pending_review", kind)
    assert "write what you decided" in act(client, dsr, "approve").lower()
    act(client, dsr, "approve", decision_text="We stopped using your usage logs for product analytics.")
    dsr_id = dsr.id
    run_jobs(redis_conn)
    assert db.session.get(DsrRequest, dsr_id).status == "completed"
    [mail] = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_decision")).scalars()
    assert "stopped using your usage logs" in mail.body_text


def test_an_agent_submits_with_permission_and_the_consumer_confirms(app, client):
    from io import BytesIO

    form = {
        "request_type": "access",
        "email": "consumer@example.com",
        "full_name": "Cal Consumer",
        "jurisdiction": "ccpa",
        "details": "",
        "requester": "agent",
        "agent_name": "Privacy Agents Inc",
        "agent_email": "agent@example.com",
        "permission": (BytesIO(b"%PDF-1.4 signed"), "permission.pdf", "application/pdf"),
    }
    resp = client.post_form("/requests/new", form, content_type="multipart/form-data")
    assert resp.status_code == 303, resp.get_data(as_text=True)
    dsr = db.session.execute(select(DsrRequest)).scalar_one()
    assert dsr.channel == "agent"
    [note] = db.session.execute(select(RequestMessage)).scalars()
    assert note.kind == "agent_permission" and note.attachment_name == "permission.pdf"
    [mail] = db.session.execute(select(OutgoingMail)).scalars()
    assert mail.to_addr == "consumer@example.com" and mail.template == "verify"  # the consumer's own link
    no_permission = {**form, "email": "other@example.com"}
    no_permission.pop("permission")
    assert client.post_form("/requests/new", no_permission).status_code == 400


def test_staff_can_deny_an_agent_for_missing_proof(app, officer):
    client, _ = officer
    dsr = make_request("pending_review", channel="agent")
    act(client, dsr, "deny", reason="agent_not_authorised")
    [mail] = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "admin_denied")).scalars()
    assert "agent" in mail.body_text.lower() and "permission" in mail.body_text.lower()


def test_a_guardians_report_waits_for_staff_not_the_childs_address(app, client):
    form = {
        "request_type": "deletion",
        "email": "parent@example.com",
        "full_name": "Pat Parent",
        "jurisdiction": "gdpr",
        "details": "My 12-year-old made an account as kid@example.com",
        "requester": "guardian",
        "confirm_deletion": "y",
    }
    assert client.post_form("/requests/new", form).status_code == 303
    dsr = db.session.execute(select(DsrRequest)).scalar_one()
    assert "guardian" in dsr.verification_method.lower()
    from app.sources.resolve import resolve_subject

    make_account(email="kid@example.com")
    assert resolve_subject(dsr).subject.account_id is None  # nothing of the child's is used unverified


def test_an_officer_messages_without_a_hold_and_the_subject_answers(app, officer):
    from app.dsr import services
    from tests.conftest import CsrfClient

    client, _ = officer
    dsr = make_request("pending_review")
    act(client, dsr, "message", message="We are working on it; which key do you use?")
    assert db.session.get(DsrRequest, dsr.id).status == "pending_review"
    raw = services.issue_token(dsr, "status")
    db.session.commit()
    subject = CsrfClient(app.test_client())
    page = subject.get(f"/requests/{dsr.reference}?token={raw}", follow_redirects=True).get_data(as_text=True)
    assert "which key do you use?" in page
    resp = subject.post_form(f"/requests/{dsr.reference}", {"action": "reply", "message": "the sk-live one"})
    assert resp.status_code == 200
    detail = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert "the sk-live one" in detail


def test_a_back_dated_staff_request_gets_its_full_week_to_be_confirmed(app, officer):
    from app.dsr.services import expire_unverified

    client, _ = officer
    old = (date.today() - timedelta(days=12)).isoformat()
    data = {**INTAKE, "verification": "link", "received_at": old}
    assert client.post_form("/admin/requests/new", data).status_code == 303
    assert expire_unverified(utcnow()) == 0  # its link was sent today
    db.session.commit()
    assert db.session.execute(select(DsrRequest.status)).scalar_one() == "unverified"
    assert expire_unverified(utcnow() + timedelta(days=8)) == 1
