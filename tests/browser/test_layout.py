"""Every portal and dashboard page fits the screen at 1280 and at 390 pixels: nothing wider than the
viewport, and the queue's table inside its container (no hidden columns behind a scrollbar)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.dsr import services
from app.dsr.models import CorrectionItem, RequestMessage
from app.dsr.states import RequestStatus
from app.extensions import db
from app.mail import queue_mail
from tests.browser_fixtures import fresh_page
from tests.factories import make_request, make_staff
from tests.security.conftest import browser_login

pytestmark = pytest.mark.browser

WIDE = "ada.lovelace.with.a.very.long.address.indeed@subdomain.example-company-with-a-long-name.com"


@pytest.mark.parametrize("width", [1280, 390])
def test_no_page_is_wider_than_the_screen(app, live_server, _chromium, screenshot_path, width):
    correction = make_request(
        RequestStatus.PENDING_REVIEW, "correction", email=WIDE, full_name="Maximiliana Wolfeschlegelsteinhausen"
    )
    correction.corrections.append(CorrectionItem(field="company", proposed_value="A" * 120))
    deletion = make_request(RequestStatus.PENDING_REVIEW, "deletion", email=WIDE)
    db.session.add(RequestMessage(request_id=correction.id, direction="in", body="x" * 400))
    mail = queue_mail(WIDE, "admin_message", "A message", dsr=correction, message="y" * 300, status_link="z")
    raw = services.issue_token(correction, "status")
    unverified = make_request(RequestStatus.UNVERIFIED)
    raw_verify = services.issue_token(unverified, "verify", lifetime=timedelta(hours=24), max_uses=1)
    for _ in range(30):
        make_request(RequestStatus.PENDING_REVIEW, email=WIDE, assignee_id=None)
    admin = make_staff("admin", email="layout.admin.with.a.long.address@staff.example-company.test")
    from app.mailbox.models import InboundMail
    from app.models_base import utcnow

    inbound = InboundMail(
        mailbox="layout",
        uid_validity=1,
        uid=1,
        message_id_hash="1" * 64,
        from_addr=WIDE,
        from_name="Maximiliana Wolfeschlegelsteinhausen",
        subject="S" * 200,
        body_text="w" * 600,
        refused=[{"name": "n" * 150 + ".exe", "size": 10, "reason": "Attach a PDF, PNG, JPEG or plain text file."}],
        received_at=utcnow(),
    )
    db.session.add(inbound)
    db.session.commit()
    portal = [
        "/",
        "/requests/new",
        "/requests/lookup",
        f"/verify/{raw_verify}",
        f"/requests/{correction.reference}?token={raw}",
    ]
    dashboard = [
        "/admin/",
        "/admin/requests",
        f"/admin/requests/{correction.reference}",
        f"/admin/requests/{deletion.reference}",
        f"/admin/requests/{correction.reference}/mail/{mail.id}",
        "/admin/requests/new",
        "/admin/mailbox",
        f"/admin/mailbox/{inbound.id}",
        "/admin/reports",
        "/admin/audit",
        "/admin/staff",
        "/admin/outbox",
        f"/admin/outbox/{mail.id}",
        "/admin/mail-previews",
        "/admin/account/password",
        "/admin/no-such-page",
    ]
    too_wide = []
    with fresh_page(_chromium) as page:
        page.set_viewport_size({"width": width, "height": 900})
        for path in portal + ["/admin/login"]:
            page.goto(live_server + path)
            _measure(page, path, width, too_wide)
        browser_login(page, live_server, admin)
        for path in dashboard:
            page.goto(live_server + path)
            if "/admin/reauth" in page.url:  # staff pages ask for the password again
                page.fill("#password", "correct horse battery staple")
                page.click("button[type=submit]")
                page.goto(live_server + path)
            _measure(page, path, width, too_wide)
            if path == "/admin/requests":
                page.screenshot(path=screenshot_path(f"layout-queue-{width}"), full_page=True)
                inside = page.evaluate(
                    "() => { const t = document.querySelector('table.queue'), w = t.closest('.table-wrap');"
                    " return t.getBoundingClientRect().width <= w.clientWidth + 1; }"
                )
                if width >= 1280 and not inside:
                    too_wide.append((path, "the queue's table is wider than its container"))
    assert not too_wide, too_wide


def _measure(page, path: str, width: int, found: list) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    inner = page.evaluate("window.innerWidth")
    if scroll > inner:
        found.append((path, f"{scroll}px wide in a {inner}px window"))
