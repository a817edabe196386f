"""CSV exports are never cached; anonymous sign-in failures put no attacker text in the audit trail."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db
from tests.conftest import CsrfClient
from tests.factories import make_staff


@pytest.mark.parametrize("path", ["/admin/audit.csv", "/admin/reports/register.csv"])
def test_csv_exports_are_not_stored_by_caches(app, officer_client, path):
    resp = officer_client.get(path)
    resp.get_data()
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "no-store" in resp.headers.get("Cache-Control", "")


ATTACKER_TEXT = [
    "<script>alert(1)</script>@evil.example",
    "ceo@example.com; DROP TABLE staff_user",
    "x" * 240 + "@evil.example",
    '=HYPERLINK("http://evil.example")@x.example',
]


def _failures() -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.event.like("staff.login%"))
    return list(db.session.execute(stmt).scalars())


def test_anonymous_failed_logins_write_no_attacker_text_into_the_audit_log(app):
    client = CsrfClient(app.test_client())
    for email in ATTACKER_TEXT:
        client.post_form("/admin/login", {"email": email, "password": "whatever it is"})
    events = _failures()
    assert len(events) == len(ATTACKER_TEXT)
    for ev in events:
        stored = " ".join([ev.actor_label, ev.message, json.dumps(ev.data), ev.ip or ""])
        for email in ATTACKER_TEXT:
            assert email not in stored and email.split("@")[0][:12] not in stored, stored
        assert ev.actor_id is None and ev.actor_label == "unknown address"
        assert len(json.dumps(ev.data)) < 200  # codes and a short keyed hash, never free text
    # The same unknown address gives the same keyed hash, so repeated attempts can still be told apart.
    again = CsrfClient(app.test_client())
    again.post_form("/admin/login", {"email": ATTACKER_TEXT[0], "password": "another guess"})
    keys = [e.data.get("email_key") for e in _failures()]
    assert keys[-1] == keys[0] and len(set(keys)) == len(ATTACKER_TEXT)


def test_failed_login_for_a_known_account_names_the_staff_member_not_the_typed_text(app):
    user = make_staff("officer", email="known@staff.test")
    CsrfClient(app.test_client()).post_form("/admin/login", {"email": "  KNOWN@Staff.TEST ", "password": "wrong one!"})
    (ev,) = _failures()
    assert ev.actor_id == user.id and ev.actor_label == "known@staff.test"
