"""Every message we send: one branded layout, an HTML part and a text part from the same template, each
with its main link; previews for admins; staff read any message of a request in full, audited."""

from __future__ import annotations

from bs4 import BeautifulSoup
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db
from app.mail import queue_mail
from app.mail.previews import NO_LINK, render_sample, samples
from tests.factories import make_request
from tests.functional.admin_support import fresh_g, staff_client  # noqa: F401


def test_every_template_renders_html_and_text_with_its_main_link(app):
    from pathlib import Path

    names = sorted(samples())
    on_disk = {p.stem for p in Path(app.template_folder, "email").glob("*.mail") if not p.stem.startswith("_")}
    assert set(names) == on_disk, on_disk ^ set(names)  # every template has a sample, and only templates do
    for name in names:
        text, html, link = render_sample(name)
        assert html and "ChatGPTTech" in html and "privacy@" in html, name
        if name in NO_LINK:
            assert link is None, name
            continue
        assert link and link in text, name
        anchors = [a["href"] for a in BeautifulSoup(html, "html.parser").find_all("a", href=True)]
        assert link in anchors, name
        assert "{{" not in text and "{%" not in text, name


def test_mail_previews_are_for_admins(app):
    admin, _ = staff_client(app, "admin")
    officer, _ = staff_client(app, "officer")
    page = admin.get("/admin/mail-previews")
    assert page.status_code == 200 and "fulfil_deletion_report" in page.get_data(as_text=True)
    html = admin.get("/admin/mail-previews/verify.html")
    assert html.status_code == 200 and "sandbox" in html.headers["Content-Security-Policy"]
    assert officer.get("/admin/mail-previews").status_code == 403
    assert admin.get("/admin/mail-previews/nope.html").status_code == 404


def test_staff_read_a_requests_messages_in_full_even_with_smtp_configured(app):
    app.config["MAIL_SERVER"] = "127.0.0.1"  # production-like: no outbox
    auditor, user = staff_client(app, "auditor")
    dsr = make_request("pending_review")
    mail = queue_mail(dsr.email, "admin_message", "A message", dsr=dsr, message="Hello there", status_link="x")
    db.session.commit()
    detail = auditor.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert f"/admin/requests/{dsr.reference}/mail/{mail.id}" in detail
    page = auditor.get(f"/admin/requests/{dsr.reference}/mail/{mail.id}").get_data(as_text=True)
    assert "Hello there" in page
    ev = db.session.execute(select(AuditEvent).where(AuditEvent.event == "request.mail_viewed")).scalar_one()
    assert ev.actor_id == user.id and ev.data["mail_id"] == mail.id
    other = make_request("pending_review")
    assert auditor.get(f"/admin/requests/{other.reference}/mail/{mail.id}").status_code == 404
