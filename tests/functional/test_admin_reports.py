"""Queue filters, dashboard counts, reports with known answers, CSV exports, audit viewer, outbox."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from app.admin.queries import QueueFilters, dashboard_counts, deadline_badge, mask_email, queue_page
from app.admin.reports import ccpa_metrics, monthly_report
from app.audit import Actor, record_event
from app.extensions import db
from app.mail import queue_mail
from app.models_base import utcnow
from tests.factories import make_request
from tests.functional.admin_support import fresh_g, staff_client  # noqa: F401


@pytest.fixture
def auditor(app):
    return staff_client(app, "auditor")[0]


def closed(status, kind, jurisdiction, received, days, due_days=30, **kw):
    dsr = make_request(status, request_type=kind, jurisdiction=jurisdiction, **kw)
    dsr.received_at = received
    dsr.due_at = received + timedelta(days=due_days)
    dsr.closed_at = received + timedelta(days=days)
    db.session.commit()
    return dsr


def test_monthly_report_known_answers(app):
    year = 2025
    march = datetime(year, 3, 1, tzinfo=UTC)
    # access: completed in March after 2, 4 and 40 days (the last one late); one denied
    for days in (2, 4):
        closed("completed", "access", "gdpr", march, days)
    closed("completed", "access", "gdpr", march - timedelta(days=45), 45)  # received in January, done 15 March
    closed("denied", "access", "gdpr", march + timedelta(days=1), 3)
    closed("completed", "deletion", "gdpr", march + timedelta(days=2), 10)
    rows = {(r["month"], r["type"]): r for r in monthly_report(year)}
    access = rows[("2025-03", "access")]
    assert access["received"] == 3  # the two on 1 March and the denied one
    assert access["completed"] == 3 and access["denied"] == 1
    assert access["median_days"] == 4.0 and access["mean_days"] == pytest.approx((2 + 4 + 45) / 3, abs=0.05)
    assert access["on_time_share"] == pytest.approx(2 / 3)
    assert rows[("2025-01", "access")]["received"] == 1 and rows[("2025-01", "access")]["completed"] == 0
    deletion = rows[("2025-03", "deletion")]
    assert (deletion["completed"], deletion["median_days"], deletion["on_time_share"]) == (1, 10.0, 1.0)
    assert ("2025-03", "correction") not in rows


def test_ccpa_metrics_known_answers(app):
    jan = datetime(2025, 1, 10, tzinfo=UTC)
    closed("completed", "access", "ccpa", jan, 10)
    closed("completed", "access", "ccpa", jan, 20)
    closed("completed", "access", "ccpa", jan, 40, due_days=45)
    closed("denied", "deletion", "ccpa", jan, 5)
    make_request("pending_review", request_type="deletion", jurisdiction="ccpa").received_at = jan
    closed("completed", "access", "gdpr", jan, 1)  # not CCPA
    closed("completed", "access", "ccpa", datetime(2024, 12, 30, tzinfo=UTC), 3)  # other year
    db.session.commit()
    metrics = {m["type"]: m for m in ccpa_metrics(2025)}
    assert metrics["access"] == {
        "type": "access",
        "label": "Requests to know",
        "received": 3,
        "complied": 3,
        "denied": 0,
        "median_days": 20.0,
        "on_time": 3,
    }
    assert (metrics["deletion"]["received"], metrics["deletion"]["denied"], metrics["deletion"]["median_days"]) == (
        2,
        1,
        5.0,
    )
    assert metrics["correction"]["received"] == 0 and metrics["correction"]["median_days"] is None


def test_reports_page_and_register_csv_escape_formulas(app, auditor):
    dsr = closed("denied", "access", "gdpr", utcnow() - timedelta(days=3), 1)
    dsr.reference = "DSR-AAAA-0001"
    dsr.denial_code = "other"
    db.session.commit()
    page = auditor.get("/admin/reports").get_data(as_text=True)
    assert "CCPA metrics" in page and "Requests to know" in page
    resp = auditor.get("/admin/reports/register.csv")
    assert resp.mimetype == "text/csv" and "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    from app.admin.reports import REGISTER_HEADER

    assert rows[0] == REGISTER_HEADER
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["reference"] == "DSR-AAAA-0001" and row["status"] == "denied" and row["denial reason"] == "Other reason"
    assert dsr.email not in resp.get_data(as_text=True)  # the register carries no subject data


def test_csv_helpers_neutralise_formula_cells():
    from app.csvsafe import csv_line, safe_cell

    for bad in ("=1+1", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(bad).startswith("'")
    assert safe_cell("plain") == "plain" and safe_cell(-3) == "-3"
    assert next(csv.reader(io.StringIO(csv_line(["=cmd|' /C calc'!A0"])))) == ["'=cmd|' /C calc'!A0"]


def test_audit_viewer_filters_and_csv(app, auditor):
    dsr = make_request("pending_review")
    record_event("request.note_added", Actor("staff", 99, "mallory@staff.test"), dsr=dsr, message='=HYPERLINK("x")')
    record_event("staff.login", Actor("staff", 98, "alice@staff.test"))
    db.session.commit()
    page = auditor.get("/admin/audit?event=request.note_added").get_data(as_text=True)
    assert "mallory@staff.test" in page and "alice@staff.test" not in page.split("<tbody>")[1]
    page = auditor.get(f"/admin/audit?reference={dsr.reference}&actor=MALL").get_data(as_text=True)
    assert "1 event." in page
    assert "0 events" in auditor.get("/admin/audit?date_to=2000-01-01").get_data(as_text=True)
    assert auditor.get("/admin/audit?date_from=nonsense&page=abc").status_code == 200
    rows = list(
        csv.reader(io.StringIO(auditor.get("/admin/audit.csv?event=request.note_added").get_data(as_text=True)))
    )
    assert rows[1][2] == "request.note_added" and rows[1][7].startswith("'=")


def test_queue_filters_pagination_and_masking(app, auditor):
    now = utcnow()
    late = make_request("pending_review", received_days_ago=40, email="late.person@example.com")
    soon = make_request("pending_review", received_days_ago=25, jurisdiction="gdpr")
    ccpa = make_request("approved", request_type="deletion", jurisdiction="ccpa", received_days_ago=2)
    make_request("unverified")
    make_request("completed")
    rows, total = queue_page(QueueFilters.parse({}), now)
    assert total == 3 and [r.id for r in rows] == [late.id, soon.id, ccpa.id]  # soonest deadline first
    assert queue_page(QueueFilters.parse({"overdue": "1"}), now)[1] == 1
    assert queue_page(QueueFilters.parse({"type": "deletion", "jurisdiction": "ccpa"}), now)[0] == [ccpa]
    assert queue_page(QueueFilters.parse({"q": late.reference.lower()}), now)[0] == [late]
    assert queue_page(QueueFilters.parse({"q": late.reference[:6]}), now)[1] >= 1
    assert queue_page(QueueFilters.parse({"q": "LATE.person@"}), now)[0] == [late]
    assert queue_page(QueueFilters.parse({"q": "%"}), now)[1] == 0  # LIKE wildcards are literal
    # A whole email is an exact (indexed) match; only when nothing matches is it tried as a prefix.
    longer = make_request("completed", email="late.person@example.com.au")
    exact = QueueFilters.parse({"q": "late.person@example.com", "status": "all"})
    assert queue_page(exact, now)[0] == [late]
    prefix = QueueFilters.parse({"q": "late.person@example", "status": "all"})
    assert {r.id for r in queue_page(prefix, now)[0]} == {late.id, longer.id}
    assert queue_page(QueueFilters.parse({"status": "all"}), now)[1] == 6
    assert queue_page(QueueFilters.parse({"assignee": "none"}), now)[1] == 3
    today = now.date().isoformat()
    assert queue_page(QueueFilters.parse({"received_from": today, "status": "all"}), now)[1] == 0
    f = QueueFilters.parse({"received_to": "31/01/2026", "page": "-2", "status": "bogus"})
    assert f.page == 1 and len(f.problems) == 2
    assert deadline_badge(late, now)[1] == "badge-bad" and "overdue" in deadline_badge(late, now)[0]
    assert deadline_badge(soon, now)[1] == "badge-bad" and "left" in deadline_badge(soon, now)[0]
    assert deadline_badge(ccpa, now)[1] == "badge-ok"
    assert mask_email("late.person@example.com") == "la***@example.com"
    html = auditor.get("/admin/requests").get_data(as_text=True)
    assert f'href="/admin/requests/{late.reference}"' in html
    assert "late.person@example.com" not in html and "la***@example.com" in html
    for i in range(30):
        make_request("pending_review", received_days_ago=i / 10)
    assert queue_page(QueueFilters.parse({"page": "2"}), now)[1] == 33
    assert len(queue_page(QueueFilters.parse({"page": "2"}), now)[0]) == 8
    assert "Page 2 of 2" in auditor.get("/admin/requests?page=2").get_data(as_text=True)
    for junk in ("?page=99999999999", "?received_from=2026-13-45", "?assignee=abc", "?q=" + "x" * 5000):
        assert auditor.get("/admin/requests" + junk).status_code == 200


def test_dashboard_counts_and_charts(app, auditor):
    make_request("pending_review", received_days_ago=40)  # overdue
    make_request("pending_review", received_days_ago=26)  # due within 7 days
    make_request("in_progress")
    make_request("failed")
    done = make_request("completed", received_days_ago=5)
    done.closed_at = utcnow()
    db.session.commit()
    counts = dashboard_counts(utcnow())
    assert counts == {
        "awaiting_review": 2,
        "due_soon": 1,
        "overdue": 1,
        "in_progress": 1,
        "failed": 1,
        "on_hold": 0,
    }
    html = auditor.get("/admin/").get_data(as_text=True)
    assert html.count("<svg") == 2 and "style=" not in html and "<script" not in html
    assert "1 of 1 completed on time" in html


def test_dashboard_charts_count_only_their_window(app):
    from app.admin.charts import on_time_per_week, requests_per_week

    now = utcnow()
    recent = now - timedelta(days=3)
    closed("completed", "access", "gdpr", recent - timedelta(days=20), 20)  # on time, this week
    closed("completed", "deletion", "gdpr", recent - timedelta(days=50), 50)  # late, this week
    closed("denied", "access", "gdpr", recent - timedelta(days=5), 5)  # closed, not completed
    closed("completed", "access", "gdpr", now - timedelta(days=400), 10)  # history outside the window
    make_request("pending_review", request_type="correction", received_days_ago=1)
    weeks, series = requests_per_week(now)
    assert weeks[0].start <= recent < weeks[-1].end
    # received in the window: all but the 400-day-old request
    assert sum(series["access"]) == 2 and sum(series["correction"]) == 1 and sum(series["deletion"]) == 1
    _weeks, done, ok = on_time_per_week(now)
    assert (sum(done), sum(ok)) == (2, 1)


def test_outbox_lists_mail_and_shows_html_escaped(app, auditor):
    from app.mail.models import OutgoingMail

    mail = queue_mail("x@example.com", "admin_staff_invite", "Hello", role="r", login_url="u", inviter="i")
    mail.body_html = '<img src=x onerror="alert(1)"><b>hi</b>'
    db.session.commit()
    assert "Hello" in auditor.get("/admin/outbox").get_data(as_text=True)
    page = auditor.get(f"/admin/outbox/{mail.id}").get_data(as_text=True)
    assert "&lt;img src=x onerror=" in page and "<img src=x" not in page
    assert auditor.get("/admin/outbox/999999").status_code == 404
    assert db.session.get(OutgoingMail, mail.id)


def test_outbox_is_404_when_smtp_is_configured(app, auditor):
    app.config["MAIL_SERVER"] = "smtp.example.test"
    assert auditor.get("/admin/outbox").status_code == 404
    assert auditor.get("/admin/outbox/1").status_code == 404


def test_reports_page_draws_its_charts_without_script(app, auditor):
    for days_ago in (40, 10):
        dsr = make_request("completed", received_days_ago=days_ago)
        dsr.closed_at = dsr.received_at + timedelta(days=3)
        db.session.commit()
    html = auditor.get(f"/admin/reports?year={utcnow().year}").get_data(as_text=True)
    assert html.count("<svg") >= 3 and "<script>" not in html
    assert "Requests received per month" in html and "completed on time, per month" in html
