"""Erasure that is complete, safe and true (the erasure issue): each rule of the issue as a scenario on
the real database, Redis, the development outbox and localstripe, driven the way an officer drives it."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.dsr.models import CorrectionItem, DsrRequest, Export, Token
from app.extensions import db
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from app.platform.models import Account, SupportMessage
from tests.factories import make_request
from tests.functional._fulfil import make_subject_data, run_jobs, usage_count
from tests.functional.admin_support import act, fresh_g, staff_client  # noqa: F401


@pytest.fixture
def officer(app):
    return staff_client(app, "officer")


def mails_to(address: str, template: str | None = None) -> list[OutgoingMail]:
    stmt = select(OutgoingMail).where(OutgoingMail.to_addr == address).order_by(OutgoingMail.id)
    if template:
        stmt = stmt.where(OutgoingMail.template == template)
    return list(db.session.execute(stmt).scalars())


def link_in(mail: OutgoingMail, needle: str) -> str:
    [link] = [u for u in re.findall(r"https?://[^\s\"'<>]+", mail.body_text) if needle in u][:1]
    return link.split("portal.test", 1)[1]


def deletion(client, email: str, jurisdiction: str = "gdpr") -> DsrRequest:
    dsr = make_request("pending_review", "deletion", email=email, jurisdiction=jurisdiction)
    act(client, dsr, "approve", confirm_reference=dsr.reference)
    return db.session.get(DsrRequest, dsr.id)


def test_deletion_revokes_the_earlier_export_link_and_removes_its_file(app, officer, redis_conn):
    client, _ = officer
    make_subject_data(usage=30)
    access = make_request("pending_review", "access", email="ada@example.com")
    act(client, access, "approve")
    access_id = access.id
    run_jobs(redis_conn)
    link = link_in(mails_to("ada@example.com", "fulfil_export_ready")[0], "/download/")
    first = app.test_client().get(link, follow_redirects=True)
    assert first.status_code == 200 and first.data[:2] == b"PK"
    export = db.session.execute(select(Export).where(Export.request_id == access_id)).scalar_one()
    path, export_id = Path(app.config["EXPORT_DIR"]) / export.filename, export.id
    assert path.is_file()

    dsr_id = deletion(client, "ada@example.com").id
    run_jobs(redis_conn)
    assert db.session.get(DsrRequest, dsr_id).status == "completed"
    again = app.test_client().get(link, follow_redirects=True)
    assert again.status_code in (404, 410) and again.data[:2] != b"PK"
    assert not path.exists()
    assert db.session.get(Export, export_id).status == "purged"
    assert not db.session.execute(select(Token).where(Token.request_id == access_id)).scalars().all()
    # the earlier request's mail keeps only metadata, and the request itself is minimised at once
    for mail in db.session.execute(select(OutgoingMail).where(OutgoingMail.request_id == access_id)).scalars():
        assert mail.body_text is None and mail.to_addr is None and mail.to_hash and mail.message_id
    access = db.session.get(DsrRequest, access_id)
    assert access.email is None and access.full_name is None and access.email_hash


def test_deletion_for_an_address_with_no_account_says_so_and_changes_nothing(app, officer, redis_conn):
    client, _ = officer
    account_id = make_subject_data(usage=10).id
    dsr_id = deletion(client, "nobody@example.com").id
    run_jobs(redis_conn)
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == "completed" and dsr.outcome == "no_data", dsr.last_error
    assert usage_count(account_id) == 10 and db.session.get(Account, account_id) is not None
    [report] = mails_to("nobody@example.com", "fulfil_deletion_report")
    text = report.body_text.lower()
    assert "we found no account" in text and "no personal data" in text
    assert "no longer exists" not in text and "deleted (0)" not in text and "cancelled" not in text
    assert {i["action"] for i in dsr.report["items"]} <= {"not_found", "not_held", "not_checked"}
    status = app.test_client().get(
        link_in(mails_to("nobody@example.com", "fulfil_deletion_report")[0], "/requests/"), follow_redirects=True
    )
    assert 'data-outcome="no_data"' in status.get_data(as_text=True)


def test_an_address_replaced_by_a_correction_is_flagged_to_staff_and_never_erased(app, officer, redis_conn):
    client, _ = officer
    acct = make_subject_data(email="new@example.com", usage=5)
    account_id = acct.id
    db.session.add(
        SupportMessage(email="old@example.com", account_id=acct.id, direction="inbound", subject="s", body="b")
    )
    db.session.commit()
    done = make_request("completed", "correction", email="old@example.com")
    db.session.add(
        CorrectionItem(
            request_id=done.id,
            field="email",
            proposed_value="new@example.com",
            current_value="old@example.com",
            decision="approved",
            applied_at=utcnow(),
            result="Account email updated.",
        )
    )
    db.session.commit()
    dsr = make_request("pending_review", "deletion", email="old@example.com")
    page = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert done.reference in page and f"account {acct.id}" in page.lower()
    act(client, dsr, "approve", confirm_reference=dsr.reference)
    dsr_id = dsr.id
    run_jobs(redis_conn)
    assert db.session.get(Account, account_id) is not None and usage_count(account_id) == 5
    assert db.session.execute(select(SupportMessage).where(SupportMessage.email == "old@example.com")).scalar_one()
    assert db.session.get(DsrRequest, dsr_id).outcome == "no_data"


def test_an_added_email_is_used_only_once_verified(app, officer, redis_conn):
    client, _ = officer
    account_id = make_subject_data(email="work@example.com", usage=3).id
    dsr = make_request("pending_review", "deletion", email="home@example.com")
    page = act(client, dsr, "add_identifier", kind="email", value="work@example.com", method="link")
    assert "work@example.com" in page and "waiting for confirmation" in page.lower()
    act(client, dsr, "approve", confirm_reference=dsr.reference)
    # approved while the added address is unconfirmed: the plan and the job ignore it
    run_jobs(redis_conn)
    assert db.session.get(Account, account_id) is not None
    [mail] = mails_to("work@example.com", "identifier_verify")
    assert "/identifiers/" in mail.body_text


def test_an_added_email_confirmed_by_its_link_finds_the_account(app, officer, redis_conn):
    client, _ = officer
    acct = make_subject_data(email="work@example.com", usage=3)
    account_id = acct.id
    dsr = make_request("pending_review", "deletion", email="home@example.com")
    act(client, dsr, "add_identifier", kind="email", value="work@example.com", method="link")
    [mail] = mails_to("work@example.com", "identifier_verify")
    subject = app.test_client()
    page = subject.get(link_in(mail, "/identifiers/"), follow_redirects=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True)).group(1)
    assert subject.post(page.request.path, data={"csrf_token": token}).status_code == 200
    detail = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert f"account {acct.id}" in detail.lower()
    act(client, dsr, "approve", confirm_reference=dsr.reference)
    run_jobs(redis_conn)
    assert db.session.get(Account, account_id) is None and usage_count(account_id) == 0
    events = {e.event for e in db.session.execute(select(AuditEvent)).scalars()}
    assert "request.identifier_verified" in events


def test_a_staff_confirmed_account_id_needs_a_reason_shown_in_the_audit(app, officer, redis_conn):
    client, _ = officer
    acct = make_subject_data(email="other@example.com", usage=3)
    dsr = make_request("pending_review", "deletion", email="home@example.com")
    page = act(client, dsr, "add_identifier", kind="account_id", value=str(acct.id), method="staff")
    assert "reason" in page.lower() and not dsr.identifiers
    act(client, dsr, "add_identifier", kind="account_id", value=str(acct.id), method="staff", justification="ID doc")
    [ident] = db.session.get(DsrRequest, dsr.id).identifiers
    assert ident.status == "verified" and ident.justification == "ID doc"
    ev = db.session.execute(select(AuditEvent).where(AuditEvent.event == "request.identifier_confirmed")).scalar_one()
    assert ev.data["identifier_id"] == ident.id and ev.data["method"] == "staff"
    audit_page = client.get(f"/admin/audit?reference={dsr.reference}").get_data(as_text=True)
    assert "identifier" in audit_page.lower()


def test_approving_a_deletion_without_the_typed_reference_erases_nothing(app, officer, redis_conn):
    client, _ = officer
    account_id = make_subject_data(usage=10).id
    dsr = make_request("pending_review", "deletion", email="ada@example.com")
    page = act(client, dsr, "approve")
    assert "type the reference" in page.lower()
    page = act(client, dsr, "approve", confirm_reference="DSR-0000-0000")
    dsr_id = dsr.id
    run_jobs(redis_conn)
    assert db.session.get(DsrRequest, dsr_id).status == "pending_review"
    assert usage_count(account_id) == 10


def test_bulk_approve_leaves_deletions_out(app, officer, redis_conn):
    client, _ = officer
    account_id = make_subject_data(usage=10).id
    dsr = make_request("pending_review", "deletion", email="ada@example.com")
    other = make_request("pending_review", "access")
    ids = dsr.id, other.id
    resp = client.post_form(
        "/admin/requests/bulk", {"action": "approve", "ref": [dsr.reference, other.reference]}, page="/admin/requests"
    )
    assert resp.status_code == 303
    run_jobs(redis_conn)
    assert db.session.get(DsrRequest, ids[0]).status == "pending_review"
    assert db.session.get(DsrRequest, ids[1]).status != "pending_review"
    assert usage_count(account_id) == 10


def test_second_approver_setting(app, redis_conn):
    from tests.conftest import CsrfClient
    from tests.factories import make_staff
    from tests.functional.admin_support import login

    app.config["DELETION_REQUIRES_SECOND_APPROVER"] = True
    a = login(CsrfClient(app.test_client()), make_staff("officer"))
    b = login(CsrfClient(app.test_client()), make_staff("officer"))
    make_subject_data(usage=2)
    dsr = make_request("pending_review", "deletion", email="ada@example.com")
    page = act(a, dsr, "approve", confirm_reference=dsr.reference)
    assert db.session.get(DsrRequest, dsr.id).status == "pending_review"
    assert "second" in page.lower()
    act(a, dsr, "approve", confirm_reference=dsr.reference)
    assert db.session.get(DsrRequest, dsr.id).status == "pending_review"  # not the same officer twice
    act(b, dsr, "approve", confirm_reference=dsr.reference)
    assert db.session.get(DsrRequest, dsr.id).status == "approved"
    names = [e.event for e in db.session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()]
    assert "request.first_approval" in names


def test_seeded_demo_is_never_fulfilled_by_reconcile_or_a_worker(app, redis_conn):
    from workers.reconcile import reconcile

    result = app.test_cli_runner().invoke(args=["seed-demo", "--accounts", "30", "--usage-rows", "100"])
    assert result.exit_code == 0, result.output
    before = {a.email for a in db.session.execute(select(Account)).scalars()}
    statuses = dict(db.session.execute(select(DsrRequest.reference, DsrRequest.status)).all())
    reconcile()
    run_jobs(redis_conn)
    db.session.expire_all()
    assert {a.email for a in db.session.execute(select(Account)).scalars()} == before
    assert dict(db.session.execute(select(DsrRequest.reference, DsrRequest.status)).all()) == statuses


def test_ccpa_deletion_report_cites_the_ccpa_only(app, officer, redis_conn):
    client, _ = officer
    make_subject_data(usage=3)
    deletion(client, "ada@example.com", jurisdiction="ccpa")
    run_jobs(redis_conn)
    [report] = mails_to("ada@example.com", "fulfil_deletion_report")
    text = (report.body_text + (report.body_html or "")).lower()
    assert "1798.105" in text
    assert "gdpr" not in text and "art. 17" not in text and "article 17" not in text


def test_plan_drift_is_reported_to_staff(app, officer, redis_conn):
    from app.demo import insert_usage, usage_rows

    client, _ = officer
    acct = make_subject_data(usage=10)
    dsr = make_request("pending_review", "deletion", email="ada@example.com")
    act(client, dsr, "approve", confirm_reference=dsr.reference)
    import random

    insert_usage(usage_rows(acct.id, ["sk-x"], 4, random.Random(2), utcnow()))
    dsr_id = dsr.id
    run_jobs(redis_conn)
    dsr = db.session.get(DsrRequest, dsr_id)
    counts = {(i["category"], i["action"]): i["count"] for i in dsr.report["items"]}
    assert counts[("usage_logs", "deleted")] == 14
    ev = db.session.execute(select(AuditEvent).where(AuditEvent.event == "request.plan_drift")).scalar_one()
    assert ev.data["usage_logs"] == [10, 14]
    assert db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_staff_drift")).scalars().all()


def test_export_files_are_private(app, officer, redis_conn):
    client, _ = officer
    make_subject_data(usage=3)
    access_id = make_request("pending_review", "access", email="ada@example.com").id
    act(client, db.session.get(DsrRequest, access_id), "approve")
    run_jobs(redis_conn)
    export = db.session.execute(select(Export).where(Export.request_id == access_id)).scalar_one()
    path = Path(app.config["EXPORT_DIR"]) / export.filename
    assert path.stat().st_mode & 0o777 == 0o600


def text_columns_holding(needle: str) -> list[str]:
    """Every portal table column whose text holds ``needle`` (the platform has its own scan)."""
    import sqlalchemy as sa

    hits = []
    for table in db.metadatas[None].sorted_tables:
        for col in table.columns:
            n = db.session.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(sa.func.lower(sa.cast(col, sa.Text)).like(f"%{needle.lower()}%"))
            ).scalar_one()
            if n:
                hits.append(f"{table.name}.{col.name}")
    return hits


def test_minimisation_after_the_grace_period_keeps_only_the_keyed_hash(app, officer, redis_conn):
    from workers.maintenance import minimise_closed_requests

    client, _ = officer
    make_subject_data(email="zed@example.com", name="Zed Quill", usage=3)
    dsr = make_request("pending_review", "access", email="zed@example.com", full_name="Zed Quill", details="I am Zed")
    act(client, dsr, "note", note="Zed Quill phoned us")
    act(client, dsr, "approve")
    dsr_id = dsr.id
    run_jobs(redis_conn)
    assert text_columns_holding("zed@example.com")  # while the grace period runs, the record is whole
    row = db.session.get(DsrRequest, dsr_id)
    row.closed_at = utcnow() - timedelta(days=app.config["CLOSED_REQUEST_GRACE_DAYS"] + 1)
    db.session.commit()
    assert minimise_closed_requests() == 1
    db.session.expire_all()
    assert text_columns_holding("zed@example.com") == []
    assert text_columns_holding("zed quill") == []
    row = db.session.get(DsrRequest, dsr_id)
    assert row.email_hash and row.reference and row.request_type == "access" and row.status == "completed"
    assert row.received_at and row.closed_at and row.minimised_at
    assert not list(Path(app.config["EXPORT_DIR"]).glob("*.zip"))
    assert minimise_closed_requests() == 0  # idempotent


def test_audit_trail_holds_no_free_text_about_the_subject(app, officer, redis_conn):
    client, _ = officer
    dsr = make_request("pending_review", "access", email="kim@example.com")
    act(client, dsr, "note", note="Kim Secret called")
    act(client, dsr, "hold", reason="Kim Secret must send ID")
    act(client, dsr, "resume")
    act(client, dsr, "extend", reason="Kim Secret has many keys")
    act(client, dsr, "cancel", reason="Kim Secret withdrew")
    for ev in db.session.execute(select(AuditEvent)).scalars():
        assert "kim secret" not in (ev.message or "").lower()
        assert "kim secret" not in str(ev.data).lower()


def test_a_deletion_closes_and_minimises_the_subjects_other_open_requests(app, officer, redis_conn):
    client, _ = officer
    make_subject_data(usage=3)
    waiting = make_request("pending_review", "access", email="ada@example.com", details="my home address is X")
    waiting_id = waiting.id
    act(client, waiting, "note", note="Ada phoned")
    deletion(client, "ada@example.com")
    run_jobs(redis_conn)
    other = db.session.get(DsrRequest, waiting_id)
    assert other.status == "cancelled" and other.minimised_at is not None
    assert other.email is None and other.details is None and not other.notes
