"""ACCESS_REVIEW_BEFORE_RELEASE: each access package waits for an officer, who previews it (README and file
list), may release a withheld record (the package is built again with it) and releases the link."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.dsr.models import DsrRequest
from app.dsr.states import RequestStatus
from app.extensions import db
from app.mail.models import OutgoingMail
from app.platform.models import SupportMessage
from tests.conftest import CsrfClient, make_config
from tests.factories import make_request, make_staff
from tests.functional._fulfil import make_subject_data, run_jobs
from tests.functional.admin_support import fresh_g, login  # noqa: F401
from tests.functional.test_access_package import approve, export_zip


@pytest.fixture
def app_config(migrated, redis_url, tmp_path):
    return make_config(migrated, redis_url, tmp_path, ACCESS_REVIEW_BEFORE_RELEASE=True)


def test_review_before_release_holds_the_link_until_an_officer_releases_records_and_package(app, redis_conn):
    acct = make_subject_data(usage=5)
    db.session.add(
        SupportMessage(
            email="other@example.org", account_id=acct.id, direction="inbound", subject="s", body="SECRET-3P"
        )
    )
    db.session.commit()
    dsr = make_request(RequestStatus.PENDING_REVIEW, "access", email="ada@example.com")
    approve(dsr)
    dsr_id, ref = dsr.id, dsr.reference
    run_jobs(redis_conn)

    def mails() -> list[str]:
        return [m.template for m in db.session.execute(select(OutgoingMail)).scalars()]

    assert db.session.get(DsrRequest, dsr_id).status == RequestStatus.AWAITING_RELEASE.value
    assert "fulfil_export_ready" not in mails()
    assert "fulfil_staff_review" in mails()  # staff are told a package waits for them
    assert b"SECRET-3P" not in export_zip(app, dsr_id).read("support_messages.json")

    officer = make_staff("officer", email="reviewer@staff.test")
    client = CsrfClient(app.test_client())
    login(client, officer)
    page = client.get(f"/admin/requests/{ref}").get_data(as_text=True)
    assert "Package waiting for release" in page and "usage_logs.csv" in page and "SECRET-3P" in page
    preview = client.get(f"/admin/requests/{ref}/package/readme")
    assert preview.status_code == 200 and b"Your personal data held by ChatGPTTech" in preview.data
    assert "sandbox" in preview.headers["Content-Security-Policy"]

    third_id = db.session.execute(select(SupportMessage.id).where(SupportMessage.email == "other@example.org"))
    third_id = third_id.scalar_one()
    token = client.csrf_from(f"/admin/requests/{ref}")
    resp = client.post(
        f"/admin/requests/{ref}/action",
        data={"csrf_token": token, "action": "release_record", "category": "support_messages", "record_id": third_id},
    )
    assert resp.status_code == 303
    run_jobs(redis_conn)
    assert db.session.get(DsrRequest, dsr_id).status == RequestStatus.AWAITING_RELEASE.value
    assert b"SECRET-3P" in export_zip(app, dsr_id).read("support_messages.json")
    assert "fulfil_export_ready" not in mails()

    token = client.csrf_from(f"/admin/requests/{ref}")
    client.post(f"/admin/requests/{ref}/action", data={"csrf_token": token, "action": "release_package"})
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == RequestStatus.COMPLETED.value
    assert mails().count("fulfil_export_ready") == 1


def test_release_record_refuses_a_record_that_is_not_withheld(app, redis_conn):
    from app.audit import Actor
    from app.dsr import packages
    from app.dsr.services import ActionError

    acct = make_subject_data(usage=1)
    own = db.session.execute(select(SupportMessage.id).where(SupportMessage.account_id == acct.id)).scalars().first()
    dsr = make_request(RequestStatus.PENDING_REVIEW, "access", email="ada@example.com")
    officer = Actor.staff(make_staff("officer"))
    with pytest.raises(ActionError, match="not withheld"):
        packages.release_record(dsr, officer, "support_messages", own)
    with pytest.raises(ActionError, match="not withheld"):
        packages.release_record(dsr, officer, "account", 1)
    deletion = make_request(RequestStatus.PENDING_REVIEW, "deletion", email="ada@example.com")
    with pytest.raises(ActionError, match="only before"):
        packages.release_record(deletion, officer, "support_messages", own)
