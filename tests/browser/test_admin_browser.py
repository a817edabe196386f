"""An officer in a real browser: sign in, filter the queue, open a request, approve it.

Runs against demo data (requests in every state from ``seed-demo``) and fails on any Content
Security Policy violation, so inline script or style would be caught here.
"""

from __future__ import annotations

import pytest

from app.demo import seed_demo
from app.dsr.models import DsrRequest
from app.extensions import db
from tests.factories import PASSWORD, make_staff
from tests.functional.admin_support import fresh_g  # noqa: F401

pytestmark = pytest.mark.browser


def test_admin_browser_officer_filters_opens_and_approves(app, live_server, browser_page, screenshot_path):
    seed_demo(accounts=26)
    officer = make_staff("officer", email="browser.officer@staff.test")
    page = browser_page
    csp_errors: list[str] = []
    page.on("console", lambda msg: csp_errors.append(msg.text) if "Content Security Policy" in msg.text else None)

    page.goto(f"{live_server}/admin/requests")
    assert "/admin/login" in page.url
    page.fill("#email", officer.email)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{live_server}/admin/requests")
    page.goto(f"{live_server}/admin/")
    assert page.locator(".stat").count() >= 5
    page.screenshot(path=screenshot_path("admin-dashboard"), full_page=True)

    page.goto(f"{live_server}/admin/requests")
    page.select_option("#type", "deletion")
    page.click("button:has-text('Filter')")
    page.wait_for_url("**type=deletion**")
    rows = page.locator("table.queue tbody tr")
    assert rows.count() >= 2
    assert all(t == "deletion" for t in rows.locator("td:nth-child(3)").all_inner_texts())
    page.screenshot(path=screenshot_path("admin-queue"), full_page=True)

    page.click("a:has-text('DSR-DM03-SEED')")
    page.wait_for_url("**/admin/requests/DSR-DM03-SEED")
    assert page.locator("text=Deletion plan (dry run)").count() == 1
    page.screenshot(path=screenshot_path("admin-detail"), full_page=True)
    page.click("button[name=action][value=approve]")  # without the typed reference the browser refuses
    assert page.url.endswith("/admin/requests/DSR-DM03-SEED")
    page.fill("#confirm-reference", "DSR-DM03-SEED")
    page.click("button[name=action][value=approve]")
    page.wait_for_selector(".flash-success")
    assert "Approved" in page.inner_text(".flashes")
    page.screenshot(path=screenshot_path("admin-detail-approved"), full_page=True)

    page.goto(f"{live_server}/admin/requests/DSR-DM04-SEED")
    page.screenshot(path=screenshot_path("admin-detail-correction"), full_page=True)
    page.goto(f"{live_server}/admin/requests/DSR-DM0A-SEED")
    assert page.locator("progress#job-progress").count() == 1
    page.goto(f"{live_server}/admin/reports")
    page.screenshot(path=screenshot_path("admin-reports"), full_page=True)

    db.session.expire_all()
    dsr = db.session.query(DsrRequest).filter_by(reference="DSR-DM03-SEED").one()
    assert dsr.status == "approved" and dsr.plan["items"]
    assert not csp_errors, csp_errors
