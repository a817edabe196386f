"""Review of issue 13: a CCPA README with withheld records cites no GDPR; an auditor does not read a withheld
third-party message; a held package erased with its subject is built again (not stuck, overdue, for good);
released_record rows go with the 24-month record purge on SQLite too."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.audit import Actor
from app.dsr import packages
from app.dsr.minimise import erase_portal_copies
from app.dsr.models import DsrRequest, ReleasedRecord
from app.dsr.states import RequestStatus
from app.extensions import db
from app.models_base import utcnow
from app.platform.models import SupportMessage
from tests.conftest import CsrfClient, make_config
from tests.factories import make_request, make_staff
from tests.functional._fulfil import make_subject_data, run_jobs
from tests.functional.admin_support import fresh_g, login  # noqa: F401
from tests.functional.test_access_package import approve, fulfil


def third_party_message(account_id: int, body: str = "Call me on +44 7700 900123") -> int:
    msg = SupportMessage(
        email="neighbour@example.org", account_id=account_id, direction="inbound", subject="s", body=body
    )
    db.session.add(msg)
    db.session.commit()
    return msg.id


def test_ccpa_readme_with_a_withheld_record_cites_no_gdpr(app, redis_conn):
    acct = make_subject_data(usage=3)
    third_party_message(acct.id)
    z = fulfil(app, redis_conn, "ccpa", expect=RequestStatus.AWAITING_RELEASE)
    readme = z.read("README.html").decode()
    assert 'id="withheld"' in readme
    assert "GDPR" not in readme and "Art. 15" not in readme and "Article 15" not in readme
    assert b"GDPR" not in z.read("manifest.json")


def test_an_auditor_does_not_read_a_withheld_third_party_message(app):
    acct = make_subject_data(usage=1)
    third_party_message(acct.id, body="SECRET-3P-BODY")
    dsr = make_request(RequestStatus.PENDING_REVIEW, "access", email="ada@example.com")
    client = login(CsrfClient(app.test_client()), make_staff("auditor", email="aud@staff.test"))
    page = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert 'id="withheld"' in page
    assert "SECRET-3P-BODY" not in page and "neighbour@example.org" not in page


def test_purging_request_records_deletes_their_released_records(app):
    from workers.maintenance import purge_records

    acct = make_subject_data(usage=1)
    mid = third_party_message(acct.id)
    dsr = make_request(RequestStatus.PENDING_REVIEW, "access", email="ada@example.com")
    packages.release_record(dsr, Actor.staff(make_staff("officer")), "support_messages", mid)
    dsr.status = RequestStatus.COMPLETED.value
    dsr.closed_at = utcnow() - timedelta(days=800)
    db.session.commit()
    assert purge_records() == 1
    assert db.session.execute(select(ReleasedRecord)).first() is None


class TestHeldPackage:
    @pytest.fixture
    def app_config(self, migrated, redis_url, tmp_path):
        return make_config(migrated, redis_url, tmp_path, ACCESS_REVIEW_BEFORE_RELEASE=True)

    def test_a_held_package_erased_with_its_subject_is_built_again_not_stuck(self, app, redis_conn):
        make_subject_data(usage=2)
        dsr = make_request(RequestStatus.PENDING_REVIEW, "access", email="ada@example.com")
        dsr_id, ref = dsr.id, dsr.reference
        approve(dsr)
        run_jobs(redis_conn)
        assert db.session.get(DsrRequest, dsr_id).status == RequestStatus.AWAITING_RELEASE.value
        # The subject's deletion purges the portal's copies, the held package's file among them.
        deletion = make_request(RequestStatus.IN_PROGRESS, "deletion", email="ada@example.com")
        erase_portal_copies(deletion, {"ada@example.com"})
        db.session.commit()
        client = login(CsrfClient(app.test_client()), make_staff("officer", email="off@staff.test"))
        page = client.get(f"/admin/requests/{ref}").get_data(as_text=True)
        assert "Build the package again" in page
        token = client.csrf_from(f"/admin/requests/{ref}")
        client.post(f"/admin/requests/{ref}/action", data={"csrf_token": token, "action": "release_package"})
        assert db.session.get(DsrRequest, dsr_id).status == RequestStatus.APPROVED.value
        run_jobs(redis_conn)
        assert db.session.get(DsrRequest, dsr_id).status == RequestStatus.AWAITING_RELEASE.value
