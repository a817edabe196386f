"""A NUL byte anywhere in the input is a 400, not a 500 (PostgreSQL refuses NUL in text, so on
PostgreSQL any query or insert carrying one failed: found by the hypothesis fuzzing here)."""

from __future__ import annotations

from app.dsr.states import RequestStatus
from tests.factories import make_request


def test_nul_byte_in_query_or_form_is_refused_with_400(app, client, officer_client):
    dsr = make_request(RequestStatus.PENDING_REVIEW)
    for path, args in [
        ("/admin/audit", {"event": "\x00"}),
        ("/admin/audit", {"actor": "a\x00b"}),
        ("/admin/requests", {"q": "x\x00"}),
        ("/admin/requests", {"status\x00": "1"}),
        ("/admin/reports", {"year": "\x002026"}),
    ]:
        resp = officer_client.get(path, query_string=args)
        assert resp.status_code == 400, (path, args, resp.status_code)
        assert "Something was wrong with that request" in resp.get_data(as_text=True)
    resp = officer_client.post_form(
        f"/admin/requests/{dsr.reference}/action", {"action": "note", "note": "a\x00b"}, page="/admin/"
    )
    assert resp.status_code == 400
    assert client.get("/requests/new", query_string={"type": "\x00"}).status_code == 400
    resp = client.post_form("/requests/new", {"email": "a\x00@example.com", "request_type": "access"})
    assert resp.status_code == 400 and "error-summary" in resp.get_data(as_text=True)  # the form's own errors
    resp = client.post_form("/admin/login", {"email": "a\x00@example.com", "password": "x"})
    assert resp.status_code == 400
    assert client.get(f"/requests/{dsr.reference}%00", query_string={"token": "x"}).status_code == 404
    assert officer_client.get(f"/admin/requests/{dsr.reference}%00").status_code == 404
    # Ordinary input still goes through.
    assert officer_client.get("/admin/audit", query_string={"actor": "officer"}).status_code == 200
