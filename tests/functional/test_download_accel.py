"""DOWNLOAD_ACCEL: a directory store's package sent by the front server (X-Accel-Redirect, X-Sendfile)
after the app has counted and audited the download exactly as when it streams; nothing else is ever named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.dsr.models import Token
from app.extensions import db
from tests.conftest import make_config
from tests.functional.test_portal_download import make_export

PREFIX = "/_protected/exports/"


@pytest.fixture
def app_config(migrated, redis_url, tmp_path):
    return make_config(migrated, redis_url, tmp_path, DOWNLOAD_ACCEL="x-accel-redirect", DOWNLOAD_ACCEL_PREFIX=PREFIX)


def downloaded_events() -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.event == "export.downloaded")).scalars())


def uses() -> int:
    return db.session.execute(select(Token.use_count).where(Token.purpose == "download")).scalar_one()


def test_download_accel_redirect_names_the_internal_location_with_no_body(app, client):
    dsr, export, raw = make_export(app)
    assert client.get(f"/download/{raw}").status_code == 303
    r = client.get("/download")
    assert r.status_code == 200
    assert r.headers["X-Accel-Redirect"] == PREFIX + export.filename
    assert r.data == b"" and "X-Sendfile" not in r.headers
    assert r.headers["Content-Disposition"].startswith("attachment")
    assert f"filename={dsr.reference}-data.zip" in r.headers["Content-Disposition"]
    assert r.headers["Cache-Control"] == "no-store" and r.mimetype == "application/zip"
    db.session.refresh(export)
    assert export.download_count == 1 and uses() == 1
    (event,) = downloaded_events()
    assert event.request_id == dsr.id and event.data["use"] == 1 and event.public


def test_download_x_sendfile_names_the_file_in_the_export_dir(app, client):
    app.config["DOWNLOAD_ACCEL"] = "x-sendfile"
    _, export, raw = make_export(app)
    r = client.get(f"/download/{raw}", follow_redirects=True)
    assert r.status_code == 200 and r.data == b""
    real_dir = Path(os.path.realpath(app.config["EXPORT_DIR"]))
    assert r.headers["X-Sendfile"] == str(real_dir / export.filename)
    assert "X-Accel-Redirect" not in r.headers
    assert len(downloaded_events()) == 1 and uses() == 1


def test_download_accel_counts_exactly_five_then_refuses(app, client):
    _, export, raw = make_export(app)
    for _ in range(5):
        r = client.get(f"/download/{raw}", follow_redirects=True)
        assert r.status_code == 200 and r.headers["X-Accel-Redirect"] == PREFIX + export.filename
    sixth = client.get(f"/download/{raw}", follow_redirects=True)
    assert sixth.status_code == 410 and "X-Accel-Redirect" not in sixth.headers
    db.session.refresh(export)
    assert export.download_count == 5 and uses() == 5
    assert [e.data["use"] for e in downloaded_events()] == [1, 2, 3, 4, 5]


def test_download_accel_missing_file_hands_out_nothing_and_counts_nothing(app, client):
    _, export, raw = make_export(app)
    assert client.get(f"/download/{raw}").status_code == 303
    (Path(app.config["EXPORT_DIR"]) / export.filename).unlink()
    r = client.get("/download")
    assert r.status_code == 410 and "X-Accel-Redirect" not in r.headers
    assert uses() == 0 and downloaded_events() == []


def test_download_accel_head_and_range_hand_out_nothing(app, client):
    _, _, raw = make_export(app)
    assert client.get(f"/download/{raw}").status_code == 303
    head = client.head("/download")
    peek = client.get("/download", headers={"Range": "bytes=0-10"})
    assert head.status_code == 200 and peek.status_code == 416
    assert "X-Accel-Redirect" not in head.headers and "X-Accel-Redirect" not in peek.headers
    assert uses() == 0 and downloaded_events() == []


@pytest.mark.parametrize("mode", ["x-accel-redirect", "x-sendfile"])
def test_download_accel_never_names_a_path_outside_the_export_dir(app, client, tmp_path, mode):
    """A stored name with a path in it, or a link out of the directory, is no package: 410, nothing
    counted, no header (the front server would send whatever the header names)."""
    app.config["DOWNLOAD_ACCEL"] = mode
    secret = tmp_path / "outside.zip"
    secret.write_bytes(b"PK not yours")
    header = "X-Accel-Redirect" if mode == "x-accel-redirect" else "X-Sendfile"
    for name in ("../outside.zip", str(secret), "link.zip"):
        _, export, raw = make_export(app)
        if name == "link.zip":
            (Path(app.config["EXPORT_DIR"]) / name).symlink_to(secret)
        export.filename = name
        db.session.commit()
        r = client.get(f"/download/{raw}", follow_redirects=True)
        assert r.status_code == 410, name
        assert header not in r.headers and b"not yours" not in r.data
    assert downloaded_events() == []
    spent = select(Token.id).where(Token.purpose == "download", Token.use_count > 0)
    assert db.session.execute(spent).first() is None


def test_download_accel_none_streams_as_before(app, client):
    app.config["DOWNLOAD_ACCEL"] = "none"
    _, _, raw = make_export(app)
    r = client.get(f"/download/{raw}", follow_redirects=True)
    assert r.status_code == 200 and r.data[:2] == b"PK"
    assert "X-Accel-Redirect" not in r.headers and "X-Sendfile" not in r.headers
