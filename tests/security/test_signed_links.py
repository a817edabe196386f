"""Every signed link (verify, status, download) tampered, expired, replayed, used for another purpose or
for another request: refused with a 4xx, never a 500, never the other request's data.
"""

from __future__ import annotations

import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.dsr import services
from app.dsr.models import DsrRequest, Export, Token, hash_token
from app.dsr.states import RequestStatus
from app.extensions import db
from app.models_base import utcnow
from tests.factories import make_request

S = RequestStatus


def flip(raw: str, at: int = -1) -> str:
    """The token with one character changed (the last by default)."""
    chars = list(raw)
    chars[at] = "A" if chars[at] != "A" else "B"
    return "".join(chars)


def _refused(resp, *codes: int) -> None:
    assert 400 <= resp.status_code < 500, resp.status_code
    if codes:
        assert resp.status_code in codes, resp.status_code


@pytest.fixture
def links(app):
    """Two requests with every kind of link: ``a`` unverified (verify link), ``b`` completed (status and
    download links, export on disk), ``c`` another request with its own status link."""
    a = make_request(S.UNVERIFIED, email="a@example.com")
    verify = services.issue_token(a, "verify", lifetime=timedelta(hours=24), max_uses=1)
    a_status = services.issue_token(a, "status")
    b = make_request(S.COMPLETED, email="b@example.com")
    export_dir = Path(app.config["EXPORT_DIR"])
    export_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(export_dir / f"{b.reference}.zip", "w") as z:
        z.writestr("manifest.json", "{}")
    export = Export(request_id=b.id, status="ready", filename=f"{b.reference}.zip", expires_at=utcnow() + timedelta(7))
    db.session.add(export)
    db.session.flush()
    download = services.issue_token(b, "download", lifetime=timedelta(days=7), max_uses=5, export_id=export.id)
    b_status = services.issue_token(b, "status")
    c = make_request(S.PENDING_REVIEW, email="c@example.com")
    c_status = services.issue_token(c, "status")
    db.session.commit()
    return {
        "a": a.reference, "verify": verify, "a_status": a_status,
        "b": b.reference, "download": download, "b_status": b_status,
        "c": c.reference, "c_status": c_status,
    }  # fmt: skip


def _expire(raw: str) -> None:
    tok = db.session.execute(select(Token).where(Token.token_hash == hash_token(raw))).scalar_one()
    tok.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()


def opened(client, url: str):
    """Open a link as a browser does: the token is traded for a cookie and a redirect to the clean URL."""
    hop = client.get(url)
    assert hop.status_code == 303, hop.status_code
    assert "token" not in hop.headers["Location"] and url.rsplit("/", 1)[-1] not in hop.headers["Location"]
    return client.get(hop.headers["Location"])


def test_signed_links_genuine_links_work(client, links):
    """The control: untouched links are accepted, so the refusals below are about the change made."""
    assert opened(client, f"/verify/{links['verify']}").status_code == 200
    assert opened(client, f"/requests/{links['b']}?token={links['b_status']}").status_code == 200
    resp = opened(client, f"/download/{links['download']}")
    assert resp.status_code == 200 and resp.data[:2] == b"PK"


def test_a_cookie_for_one_request_opens_no_other(app, client, links):
    """The cookie a status link leaves is scoped to its page; replayed by hand at another request's page
    it is refused like a wrong link."""
    for ref, raw in ((links["c"], links["b_status"]), (links["b"], links["a_status"])):
        client.set_cookie("dsr_status", raw, path=f"/requests/{ref}")
        _refused(client.get(f"/requests/{ref}"), 404)
    client.set_cookie("dsr_download", links["b_status"], path="/download")
    _refused(client.get("/download"), 404)
    client.set_cookie("dsr_verify", links["download"], path="/verify")
    _refused(client.get("/verify"), 404)


def test_signed_links_tampered_are_refused(client, links):
    for at in (0, len(links["verify"]) // 2, -1):
        _refused(client.get(f"/verify/{flip(links['verify'], at)}"), 404)
        _refused(client.get(f"/requests/{links['b']}?token={flip(links['b_status'], at)}"), 404)
        _refused(client.get(f"/download/{flip(links['download'], at)}"), 404)
    for bad in ("", "x", links["verify"][:-1], links["verify"] + "A", links["verify"].upper(), "A" * 5000):
        _refused(client.get(f"/verify/{bad}")) if bad else None
        _refused(client.get(f"/requests/{links['b']}?token={bad}"), 404)
    token = client.csrf_from("/requests/new")
    client.set_cookie("dsr_verify", flip(links["verify"]), path="/verify")
    _refused(client.post("/verify", data={"csrf_token": token}), 404)
    client.set_cookie("dsr_status", flip(links["c_status"]), path=f"/requests/{links['c']}")
    resp = client.post(f"/requests/{links['c']}", data={"csrf_token": token, "action": "cancel"})
    _refused(resp, 404)
    assert db.session.execute(select(DsrRequest.status).where(DsrRequest.reference == links["c"])).scalar_one() == (
        S.PENDING_REVIEW.value
    )


def test_signed_links_expired_are_refused(client, links):
    for name in ("verify", "b_status", "download"):
        _expire(links[name])
    _refused(client.get(f"/verify/{links['verify']}"), 410)
    _refused(client.get(f"/requests/{links['b']}?token={links['b_status']}"), 404)
    _refused(client.get(f"/download/{links['download']}"), 410)


def test_signed_links_replayed_are_refused(client, links):
    opened(client, f"/verify/{links['verify']}")
    token = client.csrf_from("/verify")
    first = client.post("/verify", data={"csrf_token": token})
    assert first.status_code == 200
    client.set_cookie("dsr_verify", links["verify"], path="/verify")  # the used link's cookie, kept by hand
    _refused(client.post("/verify", data={"csrf_token": token}), 410)
    _refused(client.get(f"/verify/{links['verify']}"), 410)
    for _ in range(5):
        assert opened(client, f"/download/{links['download']}").status_code == 200
    for _ in range(2):
        _refused(client.get(f"/download/{links['download']}"), 410)
        _refused(client.get("/download"), 410)


def test_signed_links_used_for_another_purpose_are_refused(client, links):
    for raw in (links["a_status"], links["b_status"], links["download"]):
        _refused(client.get(f"/verify/{raw}"), 404)
    for raw in (links["a_status"], links["b_status"], links["verify"]):
        _refused(client.get(f"/download/{raw}"), 404)
    _refused(client.get(f"/requests/{links['b']}?token={links['download']}"), 404)
    _refused(client.get(f"/requests/{links['a']}?token={links['verify']}"), 404)


def test_signed_links_used_for_another_request_are_refused(client, links):
    _refused(client.get(f"/requests/{links['c']}?token={links['b_status']}"), 404)
    _refused(client.get(f"/requests/{links['b']}?token={links['a_status']}"), 404)
    _refused(client.get(f"/requests/{links['b'].lower()}?token={links['c_status']}"), 404)
    token = client.csrf_from("/requests/new")
    client.set_cookie("dsr_status", links["a_status"], path=f"/requests/{links['c']}")
    resp = client.post(f"/requests/{links['c']}", data={"csrf_token": token, "action": "cancel"})
    _refused(resp, 404)
    client.set_cookie("dsr_status", links["c_status"], path=f"/requests/{links['a']}")
    resp = client.post(f"/requests/{links['a']}", data={"csrf_token": token, "action": "cancel"})
    _refused(resp, 404)
    statuses = dict(db.session.execute(select(DsrRequest.reference, DsrRequest.status)).all())
    assert statuses[links["a"]] == S.UNVERIFIED.value and statuses[links["c"]] == S.PENDING_REVIEW.value
