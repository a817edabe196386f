"""What staff write for themselves stays with staff: the hold reason is labelled "internal" on the
dashboard, so the subject's status page must not show it (it did: a reason such as "suspected fraud"
would have been shown to whoever holds the status link). Notes likewise."""

from __future__ import annotations

from app.audit import Actor
from app.dsr import services
from app.dsr.states import RequestStatus
from app.extensions import db
from tests.factories import make_request, make_staff

INTERNAL = "Suspected fraud: name does not match the account holder"


def test_status_page_hides_internal_hold_reason_and_notes(app, client):
    officer = make_staff("officer")
    dsr = make_request(RequestStatus.PENDING_REVIEW)
    services.add_note(dsr, Actor.staff(officer), INTERNAL + " (note)")
    dsr = services.hold(dsr, Actor.staff(officer), INTERNAL)
    raw = services.issue_token(dsr, "status")
    db.session.commit()
    html = client.get(f"/requests/{dsr.reference}?token={raw}", follow_redirects=True).get_data(as_text=True)
    assert "On hold" in html or "on hold" in html
    assert "Suspected fraud" not in html and officer.email not in html
