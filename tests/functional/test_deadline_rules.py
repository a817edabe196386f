"""Deadlines and notices the law would accept (the deadline issue): each finding as a test, through the
dashboard's actions and the jobs, on the real database and the development outbox."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.admin.queries import QueueFilters, dashboard_counts, queue_page
from app.admin.reports import ccpa_metrics, monthly_report
from app.dsr import deadlines
from app.dsr.models import CorrectionItem, DsrRequest
from app.extensions import db
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from tests.factories import make_request
from tests.functional.admin_support import act, fresh_g, staff_client  # noqa: F401


@pytest.fixture
def officer(app):
    return staff_client(app, "officer")


def mails(dsr_id: int, template: str) -> list[OutgoingMail]:
    stmt = select(OutgoingMail).where(OutgoingMail.request_id == dsr_id, OutgoingMail.template == template)
    return list(db.session.execute(stmt).scalars())


def aged(jurisdiction: str, days: float, status: str = "pending_review", **kw) -> DsrRequest:
    """A request received ``days`` ago, its deadlines computed as verification computes them."""
    dsr = make_request(status, jurisdiction=jurisdiction, received_days_ago=days, **kw)
    dsr.original_due_at = deadlines.due_date(jurisdiction, dsr.received_at)
    dsr.due_at = dsr.original_due_at
    db.session.commit()
    return dsr


# --- extensions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("jurisdiction, days", [("gdpr", 40), ("ccpa", 50)])
def test_an_extension_after_the_deadline_is_refused(app, officer, jurisdiction, days):
    client, _ = officer
    dsr = aged(jurisdiction, days)
    due = dsr.due_at
    page = act(client, dsr, "extend", reason="We are busy")
    assert "deadline" in page.lower() and "has passed" in page.lower()
    dsr = db.session.get(DsrRequest, dsr.id)
    assert dsr.due_at == due and dsr.extended_at is None and not mails(dsr.id, "admin_extended")


@pytest.mark.parametrize("jurisdiction, days, extra", [("gdpr", 10, None), ("ccpa", 10, 45)])
def test_an_extension_in_time_is_accepted_once_and_emailed(app, officer, jurisdiction, days, extra):
    client, _ = officer
    dsr = aged(jurisdiction, days)
    act(client, dsr, "extend", reason="Records in three systems")
    dsr = db.session.get(DsrRequest, dsr.id)
    assert dsr.extended_at is not None and dsr.original_due_at < dsr.due_at
    if extra:
        assert dsr.due_at - dsr.received_at == timedelta(days=90)
    else:
        assert dsr.due_at == dsr.original_due_at + deadlines.rule("gdpr").extension
    [mail] = mails(dsr.id, "admin_extended")
    assert "Records in three systems" in mail.body_text and dsr.due_at.strftime("%d %B %Y") in mail.body_text


# --- the clock: CCPA never pauses, GDPR only for identity, holds still go overdue -------------------


def test_ccpa_hold_and_question_leave_the_due_date_alone(app, officer):
    client, _ = officer
    dsr = aged("ccpa", 20)
    act(client, dsr, "extend", reason="Complex")
    dsr = db.session.get(DsrRequest, dsr.id)
    due = dsr.due_at
    act(client, dsr, "hold", reason="legal review")
    dsr = db.session.get(DsrRequest, dsr.id)
    dsr.hold_started_at = utcnow() - timedelta(days=30)
    db.session.commit()
    act(client, dsr, "resume")
    act(client, dsr, "request_info", message="Which key prefix?", identity="1")
    dsr = db.session.get(DsrRequest, dsr.id)
    assert not dsr.hold_pauses_clock
    dsr.hold_started_at = utcnow() - timedelta(days=30)
    db.session.commit()
    act(client, dsr, "resume")
    dsr = db.session.get(DsrRequest, dsr.id)
    assert dsr.due_at == due and dsr.due_at <= dsr.received_at + timedelta(days=90)
    [mail] = mails(dsr.id, "admin_info_requested")
    assert "does not change our time limit" in mail.body_text


def test_gdpr_internal_hold_never_pauses(app, officer):
    client, _ = officer
    dsr = aged("gdpr", 5)
    due = dsr.due_at
    act(client, dsr, "hold", reason="legal review", pause_clock="1")
    dsr = db.session.get(DsrRequest, dsr.id)
    assert not dsr.hold_pauses_clock
    dsr.hold_started_at = utcnow() - timedelta(days=20)
    db.session.commit()
    act(client, dsr, "resume")
    assert db.session.get(DsrRequest, dsr.id).due_at == due


def test_gdpr_identity_question_pauses_with_a_notice_and_the_answer_resumes(app, officer, redis_conn):
    client, _ = officer
    dsr = aged("gdpr", 5)
    due = dsr.due_at
    act(client, dsr, "request_info", message="Please send the prefix of one of your API keys.", identity="1")
    dsr = db.session.get(DsrRequest, dsr.id)
    assert dsr.status == "on_hold" and dsr.hold_pauses_clock
    [mail] = mails(dsr.id, "admin_info_requested")
    assert "paused" in mail.body_text and "starts again the day we receive your answer" in mail.body_text
    dsr.hold_started_at = utcnow() - timedelta(days=6)
    db.session.commit()
    # the subject answers on the status page: back to review, and the clock runs again, 6 days later
    from app.dsr import services

    raw = services.issue_token(dsr, "status")
    db.session.commit()
    subject = app.test_client()
    subject.get(f"/requests/{dsr.reference}?token={raw}")
    from tests.conftest import CsrfClient

    resp = CsrfClient(subject).post_form(f"/requests/{dsr.reference}", {"action": "reply", "message": "sk-abc1"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    dsr = db.session.get(DsrRequest, dsr.id)
    assert dsr.status == "pending_review" and not dsr.hold_pauses_clock
    assert timedelta(days=6) <= dsr.due_at - due < timedelta(days=6, minutes=5)
    assert dsr.due_at <= deadlines.legal_maximum("gdpr", dsr.received_at, dsr.paused_seconds)


def test_on_hold_requests_go_overdue_everywhere(app, officer):
    from workers.maintenance import deadline_reminders

    client, _ = officer
    dsr = aged("gdpr", 40)
    act(client, dsr, "hold", reason="legal")
    now = utcnow()
    assert dashboard_counts(now)["overdue"] == 1
    rows, total = queue_page(QueueFilters.parse({"overdue": "1"}), now)
    assert total == 1 and rows[0].id == dsr.id
    assert deadline_reminders(now) >= 1
    reminder = db.session.execute(
        select(OutgoingMail).where(OutgoingMail.template == "fulfil_staff_reminder")
    ).scalar_one()
    assert dsr.reference in reminder.body_text and "overdue (1)" in reminder.body_text.lower()


def test_waiting_for_the_subject_reminds_them_and_staff(app, officer):
    from workers.maintenance import deadline_reminders

    client, _ = officer
    dsr = aged("gdpr", 3)
    act(client, dsr, "request_info", message="Which account?")
    row = db.session.get(DsrRequest, dsr.id)
    row.waiting_since = utcnow() - timedelta(days=app.config["SUBJECT_REMINDER_DAYS"] + 1)
    db.session.commit()
    deadline_reminders(utcnow())
    assert len(mails(dsr.id, "subject_reminder")) == 1
    staff = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_staff_reminder")).scalar()
    assert dsr.reference in staff.body_text
    deadline_reminders(utcnow())  # not again the same day
    assert len(mails(dsr.id, "subject_reminder")) == 1


def test_ccpa_confirmation_skips_us_federal_holidays():
    # Wednesday 24 Dec 2025: 25 Dec (Christmas) and 1 Jan (New Year) are federal holidays
    received = datetime(2025, 12, 24, 12, tzinfo=UTC)
    assert deadlines.confirmation_due_date("ccpa", received) == datetime(2026, 1, 9, 12, tzinfo=UTC)
    # 4 July 2026 is a Saturday: Independence Day is observed on Friday 3 July
    assert deadlines.is_business_day(datetime(2026, 7, 3).date()) is False
    assert deadlines.confirmation_due_date("gdpr", received) is None


# --- notices ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("jurisdiction, authority", [("gdpr", "edpb.europa.eu"), ("ccpa", "cppa.ca.gov")])
def test_a_denial_names_the_reason_the_authority_the_remedy_and_how_to_try_again(app, officer, jurisdiction, authority):
    client, _ = officer
    dsr = aged(jurisdiction, 3)
    act(client, dsr, "deny", reason="identity_not_verified")
    [mail] = mails(dsr.id, "admin_denied")
    text = mail.body_text
    assert "We could not verify your identity" in text and "To try again" in text
    assert authority in text and "/requests/new" in text
    assert "court" in text.lower()
    if jurisdiction == "gdpr":
        assert "ico.org.uk" in text and "Articles 78 and 79 GDPR" in text
    else:
        assert "gdpr" not in text.lower()


def test_the_authorities_are_configurable(app, officer):
    app.config["SUPERVISORY_AUTHORITIES_GDPR"] = "Data Protection Commission (Ireland)|https://www.dataprotection.ie"
    client, _ = officer
    dsr = aged("gdpr", 3)
    act(client, dsr, "deny", reason="legal_exemption", reason_text="Legal privilege covers the file.")
    [mail] = mails(dsr.id, "admin_denied")
    assert "Data Protection Commission (Ireland)" in mail.body_text and "Legal privilege" in mail.body_text


def test_a_rejected_correction_carries_its_reason_and_the_written_statement_right(app, officer, redis_conn):
    from tests.factories import make_account
    from tests.functional._fulfil import run_jobs

    client, _ = officer
    make_account(email="pat@example.com", name="Pat Old", company="Old Co")
    dsr = aged("ccpa", 2, request_type="correction", email="pat@example.com")
    db.session.add_all(
        [
            CorrectionItem(request_id=dsr.id, field="name", proposed_value="Pat New"),
            CorrectionItem(request_id=dsr.id, field="company", proposed_value="=cmd|x"),
        ]
    )
    db.session.commit()
    first, second = db.session.get(DsrRequest, dsr.id).corrections
    act(client, dsr, "decide_item", item_id=str(first.id), decision="approved")
    act(client, dsr, "decide_item", item_id=str(second.id), decision="rejected", reject_reason="Not a company")
    act(client, dsr, "approve")
    dsr_id = dsr.id
    run_jobs(redis_conn)
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == "completed"
    name, company = dsr.corrections
    assert (name.current_value, name.proposed_value) == ("Pat Old", "Pat New")  # the old value is recorded
    [mail] = mails(dsr_id, "fulfil_correction_done")
    assert "Not a company" in mail.body_text and "written statement" in mail.body_text
    assert "it was Pat Old" in mail.body_text


def test_an_email_change_waits_for_the_new_address_and_tells_the_old_one(app, officer, redis_conn):
    from app.platform.models import Account
    from tests.factories import make_account
    from tests.functional._fulfil import run_jobs
    from tests.functional.test_erasure_truth import link_in

    client, _ = officer
    acct = make_account(email="old@example.com")
    account_id = acct.id
    dsr = aged("gdpr", 2, request_type="correction", email="old@example.com")
    db.session.add(CorrectionItem(request_id=dsr.id, field="email", proposed_value="new@example.com"))
    db.session.commit()
    [item] = db.session.get(DsrRequest, dsr.id).corrections
    act(client, dsr, "decide_item", item_id=str(item.id), decision="approved")
    page = act(client, dsr, "approve")
    assert "not confirmed" in page.lower() and db.session.get(DsrRequest, dsr.id).status == "pending_review"
    [confirm] = db.session.execute(
        select(OutgoingMail).where(OutgoingMail.template == "email_change_confirm")
    ).scalars()
    assert confirm.to_addr == "new@example.com"
    subject = app.test_client()
    page = subject.get(link_in(confirm, "/confirm/"), follow_redirects=True)
    from tests.conftest import CSRF_RE

    token = CSRF_RE.search(page.get_data(as_text=True))
    assert subject.post(page.request.path, data={"csrf_token": token.group(1) or token.group(2)}).status_code == 200
    act(client, dsr, "approve")
    dsr_id, reference = dsr.id, dsr.reference
    run_jobs(redis_conn)
    assert db.session.get(Account, account_id).email == "new@example.com"
    [notice] = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "email_changed_notice")).scalars()
    assert notice.to_addr == "old@example.com" and reference in notice.body_text
    assert db.session.get(DsrRequest, dsr_id).corrections[0].current_value == "old@example.com"


def test_a_staff_cancellation_tells_the_subject_why(app, officer):
    client, _ = officer
    dsr = aged("gdpr", 2)
    assert "reason" in act(client, dsr, "cancel", reason="").lower()
    act(client, dsr, "cancel", reason="You asked us by phone to withdraw it.")
    [mail] = mails(dsr.id, "admin_cancelled")
    assert "withdraw it" in mail.body_text


def test_the_status_page_shows_why_the_date_moved(app, officer):
    from app.dsr import services

    client, _ = officer
    dsr = aged("gdpr", 3)
    act(client, dsr, "extend", reason="Records in three systems")
    raw = services.issue_token(db.session.get(DsrRequest, dsr.id), "status")
    db.session.commit()
    html = app.test_client().get(f"/requests/{dsr.reference}?token={raw}", follow_redirects=True).get_data(as_text=True)
    dsr = db.session.get(DsrRequest, dsr.id)
    assert dsr.due_at.strftime("%d %B %Y") in html and dsr.original_due_at.strftime("%d %B %Y") in html
    assert "Records in three systems" in html


# --- metrics on the lawful deadline --------------------------------------------------------------------


def _late_extended(jurisdiction: str = "gdpr") -> DsrRequest:
    """GDPR: received 23 Oct, due 23 Nov, extended on 2 Dec (too late: the old code allowed it) to 23 Jan,
    answered 40 days after receipt. CCPA: due 7 Dec, extended on 12 Dec, answered 60 days after receipt."""
    received = datetime(2025, 10, 23, 9, tzinfo=UTC)
    late_by = {"gdpr": (40, 40), "ccpa": (50, 60)}[jurisdiction]
    dsr = make_request("completed", jurisdiction=jurisdiction)
    dsr.received_at = received
    dsr.original_due_at = deadlines.due_date(jurisdiction, received)
    dsr.extended_at = received + timedelta(days=late_by[0])
    dsr.extension_reason = "late"
    dsr.due_at = deadlines.extended_due_date(jurisdiction, received)
    dsr.closed_at = received + timedelta(days=late_by[1])
    db.session.commit()
    return dsr


def test_metrics_count_a_late_extended_request_as_late(app):
    dsr = _late_extended()
    month = dsr.closed_at.strftime("%Y-%m")
    [row] = [r for r in monthly_report(2025) if r["month"] == month and r["type"] == "access"]
    assert row["on_time_share"] == 0.0
    ccpa = _late_extended("ccpa")
    [metric] = [m for m in ccpa_metrics(2025) if m["type"] == "access"]
    assert metric["on_time"] == 0 and ccpa.id


def test_register_shows_original_due_extension_and_manner(app):
    auditor, _ = staff_client(app, "auditor")
    dsr = _late_extended()
    resp = auditor.get("/admin/reports/register.csv")
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    [row] = [r for r in rows if r["reference"] == dsr.reference]
    assert row["original deadline"].startswith("2025-11-23") and row["extended to"].startswith("2026-01-23")
    assert row["extension reason"] == "late" and row["extended on"].startswith("2025-12-02")
    assert row["manner"] == "web" and row["on time"] == "no" and row["responded"].startswith("2025-12-02")
    assert resp.headers["Cache-Control"] == "no-store"


def test_every_refusal_names_the_authority_and_the_remedy(app, officer, redis_conn):
    from tests.factories import make_account
    from tests.functional._fulfil import run_jobs

    client, _ = officer
    dsr = aged("gdpr", 2)
    assert "which legal exemption" in act(client, dsr, "deny", reason="legal_exemption").lower()
    act(client, dsr, "cancel", reason="Withdrawn by phone.")
    [cancelled] = mails(dsr.id, "admin_cancelled")
    assert "edpb.europa.eu" in cancelled.body_text and "Articles 78 and 79 GDPR" in cancelled.body_text
    make_account(email="rej@example.com", name="Old")
    corr = aged("gdpr", 2, request_type="correction", email="rej@example.com")
    db.session.add_all(
        [
            CorrectionItem(request_id=corr.id, field="name", proposed_value="New"),
            CorrectionItem(request_id=corr.id, field="company", proposed_value="X"),
        ]
    )
    db.session.commit()
    first, second = db.session.get(DsrRequest, corr.id).corrections
    act(client, corr, "decide_item", item_id=str(first.id), decision="approved")
    act(client, corr, "decide_item", item_id=str(second.id), decision="rejected", reject_reason="No such company")
    act(client, corr, "approve")
    corr_id = corr.id
    run_jobs(redis_conn)
    [done] = mails(corr_id, "fulfil_correction_done")
    assert "edpb.europa.eu" in done.body_text and "No such company" in done.body_text
