"""``/download/<token>``: the zip as an attachment, 7 days, 5 uses, every download audited."""

from __future__ import annotations

import zipfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.dsr import services
from app.dsr.models import Export, Token
from app.dsr.states import RequestStatus
from app.extensions import db
from app.models_base import utcnow
from tests.factories import make_request


def make_export(app, status: str = "ready"):
    dsr = make_request(RequestStatus.COMPLETED)
    export_dir = Path(app.config["EXPORT_DIR"])
    export_dir.mkdir(parents=True, exist_ok=True)
    name = f"{dsr.reference}-test.zip"
    with zipfile.ZipFile(export_dir / name, "w") as z:
        z.writestr("README.html", "<p>hello</p>")
        z.writestr("manifest.json", "{}")
    export = Export(request_id=dsr.id, status=status, filename=name, expires_at=utcnow() + timedelta(days=7))
    db.session.add(export)
    db.session.flush()
    raw = services.issue_token(dsr, "download", lifetime=timedelta(days=7), max_uses=5, export_id=export.id)
    db.session.commit()
    return dsr, export, raw


def test_download_serves_zip_attachment_and_audits(app, client):
    dsr, export, raw = make_export(app)
    hop = client.get(f"/download/{raw}")
    assert hop.status_code == 303 and hop.headers["Location"] == "/download"  # the token leaves the URL
    assert raw not in hop.headers["Location"]
    r = client.get("/download")
    assert r.status_code == 200
    assert r.data[:2] == b"PK"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.mimetype == "application/zip"
    assert f"filename={dsr.reference}-data.zip" in r.headers["Content-Disposition"]
    assert r.headers["Content-Disposition"].startswith("attachment")
    db.session.refresh(export)
    assert export.download_count == 1
    events = db.session.execute(select(AuditEvent).where(AuditEvent.event == "export.downloaded")).scalars().all()
    assert len(events) == 1 and events[0].public and events[0].request_id == dsr.id


def test_download_refused_after_fifth_use(app, client):
    _, export, raw = make_export(app)
    for _ in range(5):
        assert client.get(f"/download/{raw}", follow_redirects=True).status_code == 200
    r = client.get(f"/download/{raw}")
    assert r.status_code == 410
    html = r.get_data(as_text=True)
    assert "used 5 times" in html and "privacy@chatgpttech.mobi" in html
    db.session.refresh(export)
    assert export.download_count == 5
    assert db.session.execute(select(Token.use_count).where(Token.purpose == "download")).scalar_one() == 5
    n = len(db.session.execute(select(AuditEvent).where(AuditEvent.event == "export.downloaded")).scalars().all())
    assert n == 5


def test_download_refused_after_expiry(app, client):
    _, _, raw = make_export(app)
    tok = db.session.execute(select(Token).where(Token.purpose == "download")).scalar_one()
    tok.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    r = client.get(f"/download/{raw}")
    assert r.status_code == 410
    assert "expired" in r.get_data(as_text=True) and "new access request" in r.get_data(as_text=True)


def test_download_refused_when_export_purged_or_building(app, client):
    _, export, raw = make_export(app)
    export.status = "purged"
    db.session.commit()
    assert client.get(f"/download/{raw}").status_code == 410
    export.status = "building"
    db.session.commit()
    r = client.get(f"/download/{raw}")
    assert r.status_code == 404 and "not ready" in r.get_data(as_text=True)
    assert db.session.execute(select(AuditEvent).where(AuditEvent.event == "export.downloaded")).first() is None


def test_download_missing_file_is_410(app, client):
    _, export, raw = make_export(app)
    (Path(app.config["EXPORT_DIR"]) / export.filename).unlink()
    assert client.get(f"/download/{raw}").status_code == 410


def test_download_unknown_or_wrong_purpose_token_is_404(app, client):
    dsr, _, _ = make_export(app)
    status_raw = services.issue_token(dsr, "status")
    db.session.commit()
    assert client.get("/download/not-a-token").status_code == 404
    assert client.get(f"/download/{status_raw}").status_code == 404


def test_head_and_range_requests_spend_no_download(app, client):
    """Link scanners send HEAD or a short Range request: neither may use up one of the five downloads."""
    _, export, raw = make_export(app)
    assert client.get(f"/download/{raw}").status_code == 303
    head = client.head("/download")
    assert head.status_code == 200 and head.data == b"" and head.headers["Content-Type"] == "application/zip"
    assert client.head(f"/download/{raw}").status_code == 303
    peek = client.get("/download", headers={"Range": "bytes=0-10"})
    assert peek.status_code == 416 and peek.data[:2] != b"PK"
    db.session.refresh(export)
    assert export.download_count == 0
    assert db.session.execute(select(Token.use_count).where(Token.purpose == "download")).scalar_one() == 0
    full = client.get("/download")
    assert full.status_code == 200 and full.data[:2] == b"PK"
    db.session.refresh(export)
    assert export.download_count == 1


def test_each_download_is_audited_with_its_own_number(app, client):
    _, _, raw = make_export(app)
    for _ in range(3):
        assert client.get(f"/download/{raw}", follow_redirects=True).status_code == 200
    uses = [e.data["use"] for e in db.session.execute(select(AuditEvent).where(AuditEvent.event == "export.downloaded"))
            .scalars()]  # fmt: skip
    assert uses == [1, 2, 3]
