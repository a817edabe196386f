"""Each policy number has one place (config or one constants module); what a subject reads follows it.

The pages and mail say the privacy address, the link lifetimes and the download count the app enforces,
because they read the same config values the code does; the staff lists page by one size."""

from __future__ import annotations

import pytest
from flask import render_template

from app.config import PRIVACY_ADDRESS
from tests.conftest import make_config

CONTACT = "dpo@example.org"


@pytest.fixture
def app_config(migrated, redis_url, tmp_path):
    return make_config(
        migrated,
        redis_url,
        tmp_path,
        PRIVACY_CONTACT=CONTACT,
        UNVERIFIED_EXPIRY_DAYS=3,
        DOWNLOAD_DAYS=4,
        DOWNLOAD_MAX=2,
        VERIFY_TOKEN_HOURS=12,
    )


def test_portal_home_names_the_configured_contact_and_lifetimes(client):
    page = " ".join(client.get("/").get_data(as_text=True).split())
    assert PRIVACY_ADDRESS not in page
    assert page.count(f'href="mailto:{CONTACT}"') == 1 and page.count(CONTACT) >= 3  # questions and the footer
    assert "(it works for 12 hours)" in page and "a download link that works for 4 days" in page
    assert "not confirmed within 3 days are closed" in page
    assert "7 days" not in page and "24 hours" not in page


@pytest.mark.parametrize("kind", ["expired", "used"])
def test_download_gone_page_follows_download_days_uses_and_contact(app, kind):
    with app.test_request_context("/download"):
        page = " ".join(render_template("portal/download_gone.html", kind=kind).split())
    assert CONTACT in page and PRIVACY_ADDRESS not in page
    if kind == "expired":
        assert "Download links work for 4 days" in page
    else:
        assert "works 2 times, and this one has been used 2 times" in page


def test_unconfirmed_expiry_pages_say_the_configured_days(app):
    with app.test_request_context("/"):
        inbox = " ".join(render_template("portal/check_inbox.html", hours=12).split())
        problem = " ".join(render_template("portal/link_problem.html", kind="closed", purpose="verify").split())
    assert "Unconfirmed requests are closed after 3 days." in inbox
    assert "not confirmed within 3 days" in problem
    assert "7 days" not in inbox + problem


def test_verify_mail_says_the_configured_expiry(app):
    from app.mail import render_message

    with app.test_request_context("/"):
        text, _html = render_message(
            "verify", "Confirm", {"link": "http://portal.test/verify/x", "hours": 12, "type_label": "Access"}
        )
    assert "closed after 3 days" in text and "7 days" not in text


def test_correction_labels_are_one_list_on_pages_mail_and_form(app):
    """The account's correctable fields are defined once: the form offers them, and the confirmation
    page, the status page and the mail name each (``full_name``, the name as older requests recorded
    it, included) in the same words."""
    from app.dsr.models import CorrectionItem
    from app.dsr.notices import correction_context
    from app.dsr.states import RequestStatus
    from app.extensions import db
    from app.portal.forms import CORRECTABLE_FIELDS, ConfirmForm
    from app.sources.account import CORRECTABLE, FIELD_LABELS
    from tests.factories import make_request

    assert [field for field, _label in CORRECTABLE_FIELDS] == ["name", "email", "company"]
    assert set(FIELD_LABELS) == set(CORRECTABLE)
    dsr = make_request(RequestStatus.UNVERIFIED, request_type="correction")
    for field, value in (("full_name", "Ada Lovelace"), ("email", "ada@example.org")):
        db.session.add(CorrectionItem(request_id=dsr.id, field=field, proposed_value=value))
    db.session.flush()
    db.session.refresh(dsr)
    with app.test_request_context("/verify"):
        verify = " ".join(
            render_template("portal/verify.html", form=ConfirmForm(), dsr=dsr, type_label="Correction").split()
        )
        lines = correction_context(dsr.corrections)["correction_lines"]
    assert "<dt>Change name to</dt>" in verify and "<dt>Change email address to</dt>" in verify
    assert "full_name" not in verify
    assert [line.split(":", 1)[0] for line in lines] == ["Name", "Email address"]


@pytest.mark.parametrize(("days", "expected"), [(0, 0), (3, 1), (1, 0)])
def test_due_soon_window_is_one_setting_for_dashboard_queue_and_reminders(app, days, expected):
    """``DUE_SOON_DAYS`` is the one window: the dashboard, the queue's filter and count and the staff
    reminder agree for every value (0 included: nothing is due soon)."""
    from datetime import timedelta

    from sqlalchemy import select

    from app.admin.queries import QueueFilters, dashboard_counts, queue_page, quick_counts
    from app.dsr.states import RequestStatus
    from app.extensions import db
    from app.mail.models import OutgoingMail
    from app.models_base import utcnow
    from tests.factories import make_request
    from workers.maintenance import deadline_reminders

    now = utcnow()
    dsr = make_request(RequestStatus.PENDING_REVIEW)
    dsr.due_at = now + timedelta(days=2)
    db.session.commit()
    app.config.update(DUE_SOON_DAYS=days, STAFF_ALERT_EMAIL="staff@example.org")
    assert dashboard_counts(now)["due_soon"] == expected
    assert quick_counts(now, None)["due_soon"] == expected
    assert queue_page(QueueFilters.parse({"due_soon": "1"}), now)[1] == expected
    assert deadline_reminders(now) == expected  # one reminder to staff when something is due soon
    subjects = db.session.execute(select(OutgoingMail.subject)).scalars().all()
    assert [s for s in subjects if "due soon" in s] == (
        ["Privacy requests: 0 overdue, 1 due soon, 0 waiting"] if expected else []
    )


def test_search_wildcards_are_literal_in_the_queue_and_the_audit_filter(app):
    """One way to search by prefix (SQLAlchemy's autoescape): ``%``, ``_`` and the escape character a
    staff member types match only themselves, in the queue's search and the audit log's actor filter."""
    from app.admin.manage import audit_filters, audit_statement
    from app.admin.queries import QueueFilters, queue_page
    from app.audit import Actor, record_event
    from app.dsr.states import RequestStatus
    from app.extensions import db
    from app.models_base import utcnow
    from tests.factories import make_request

    now = utcnow()
    plain = make_request(RequestStatus.PENDING_REVIEW, email="ab.cd@example.com", full_name="Ab Cd")
    odd = make_request(RequestStatus.PENDING_REVIEW, email="a_b/c%d@example.com", full_name="A_b Ward")
    for text, found in (("a_", [odd]), ("a_b/c%", [odd]), ("%", []), ("_", [odd]), ("/", [])):
        assert queue_page(QueueFilters.parse({"q": text}), now)[0] == found, text
    assert queue_page(QueueFilters.parse({"q": "ab"}), now)[0] == [plain]
    record_event("request.note_added", Actor("staff", None, "a_b officer"), dsr=plain)
    record_event("request.note_added", Actor("staff", None, "axb officer"), dsr=plain)
    db.session.commit()

    def actors(text: str) -> list[str]:
        stmt = audit_statement(audit_filters({"actor": text}))
        return sorted({e.actor_label for e in db.session.execute(stmt).scalars()})

    assert actors("a_") == ["a_b officer"]
    assert actors("A") == ["a_b officer", "axb officer"]
    assert actors("%") == []


def test_staff_lists_page_by_one_size(app):
    from app.admin import mailbox, manage, outbox, queries

    assert queries.QUEUE_PAGE_SIZE == 25 and queries.LIST_PAGE_SIZE == 50
    assert not any(hasattr(module, "PER_PAGE") for module in (queries, mailbox, manage, outbox))
    assert [queries.page_count(n, 50) for n in (0, 1, 50, 51)] == [1, 1, 1, 2]


def test_expiry_notice_on_the_status_page_says_the_configured_days(app):
    from sqlalchemy import select

    from app.audit.models import AuditEvent
    from app.dsr.services import expire_unverified
    from app.dsr.states import RequestStatus
    from app.extensions import db
    from tests.factories import make_request

    dsr = make_request(RequestStatus.UNVERIFIED, received_days_ago=5)
    assert expire_unverified() == 1
    db.session.commit()
    messages = db.session.execute(
        select(AuditEvent.message).where(AuditEvent.request_id == dsr.id, AuditEvent.public.is_(True))
    ).scalars()
    assert list(messages) == ["Your request expired because the email address was not confirmed within 3 days."]


def test_retention_periods_are_the_inventorys_unless_the_operator_sets_one(app):
    """The package README states the inventory's periods; the sweeps apply the same numbers."""
    from app.sources.inventory import BY_NAME, retention_days
    from app.sources.usage import UsageSource

    for name, key in (
        ("requests", "RECORD_RETENTION_DAYS"),
        ("usage_logs", "USAGE_RETENTION_DAYS"),
        ("account", "CLOSED_ACCOUNT_DAYS"),
    ):
        assert app.config[key] is None
        assert retention_days(name, key) == BY_NAME[name].retention_days
    assert UsageSource().retention_days() == BY_NAME["usage_logs"].retention_days
    app.config["CLOSED_ACCOUNT_DAYS"] = 45
    assert retention_days("account", "CLOSED_ACCOUNT_DAYS") == 45
