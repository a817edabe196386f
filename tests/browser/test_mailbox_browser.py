"""An officer in a real browser turns a mail from the privacy mailbox (a real dovecot) into a request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import select

from app.dsr.models import DsrRequest
from app.extensions import db
from app.mailbox.services import read_mailbox
from tests.factories import PASSWORD, make_staff
from tests.functional.admin_support import fresh_g  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config(app_config, imap_server, tmp_path):
    return {**app_config, "MAIL_IMAP_URL": imap_server.url, "ATTACHMENT_DIR": str(tmp_path / "attachments")}


def test_mailbox_browser_officer_turns_a_mail_into_a_request(
    app, live_server, browser_page, imap_server, screenshot_path
):
    arrived = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    sent = arrived - timedelta(minutes=5)
    imap_server.append(
        "From: Ola Letter <ola@example.com>\nTo: privacy@chatgpttech.mobi\nSubject: My data\n"
        f"Message-ID: <browser-1@example.com>\nDate: {format_datetime(sent)}\n"
        "Content-Type: text/html; charset=utf-8\n\n"
        "<p>Send me <b>everything</b> you hold.</p><script>alert(1)</script>\n",
        arrived=arrived,
    )
    read_mailbox()
    officer = make_staff("officer", email="mailbox.officer@staff.test")
    page = browser_page
    csp_errors: list[str] = []
    page.on("console", lambda msg: csp_errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("dialog", lambda dialog: csp_errors.append(f"a script ran: {dialog.message}"))
    page.goto(f"{live_server}/admin/mailbox")
    page.fill("#email", officer.email)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{live_server}/admin/mailbox")
    page.click("a:has-text('My data')")
    assert "Send me everything you hold." in page.inner_text("main")
    page.screenshot(path=screenshot_path("admin-mailbox-item"), full_page=True)
    page.click("a:has-text('Turn into a request')")
    assert page.input_value("#email") == "ola@example.com"
    assert page.input_value("#received_at") == sent.strftime("%Y-%m-%dT%H:%M:%S")  # the mail's date
    page.select_option("#request_type", "access")
    page.click("button:has-text('Enter the request')")
    page.wait_for_selector(".flash-success")
    dsr = db.session.execute(select(DsrRequest)).scalar_one()
    assert dsr.email == "ola@example.com" and dsr.channel == "email" and dsr.received_at == sent
    assert "Send me everything you hold." in page.inner_text("main")
    assert not csp_errors, csp_errors
