"""Behind a proxy: forwarded headers count only for the configured number of trusted hops."""

from __future__ import annotations

from sqlalchemy import select

from app import create_app
from app.audit.models import AuditEvent
from app.extensions import db
from tests.conftest import CsrfClient, _empty_everything, make_config
from tests.factories import PASSWORD, make_staff


def _login_ip(application, headers) -> str | None:
    client = CsrfClient(application.test_client())
    user = make_staff("officer")
    token = client.csrf_from("/admin/login")
    client.post(
        "/admin/login",
        data={"email": user.email, "password": PASSWORD, "csrf_token": token},
        headers=headers,
        environ_base={"REMOTE_ADDR": "10.0.0.5"},
    )
    event = db.session.execute(select(AuditEvent).where(AuditEvent.event == "staff.login")).scalars().first()
    return event.ip if event else None


def test_without_trusted_proxies_a_spoofed_forwarded_for_changes_nothing(app):
    assert _login_ip(app, {"X-Forwarded-For": "203.0.113.9"}) == "10.0.0.5"


def test_one_trusted_proxy_gives_the_real_client(migrated, redis_url, tmp_path):
    application = create_app(make_config(migrated, redis_url, tmp_path, TRUSTED_PROXIES=1))
    with application.app_context():
        try:
            # the client's own spoofed value comes first; our proxy appends the address it saw
            ip = _login_ip(
                application, {"X-Forwarded-For": "198.51.100.1, 203.0.113.9", "Referer": "http://localhost/admin/login"}
            )
            assert ip == "203.0.113.9"
        finally:
            db.session.remove()
            _empty_everything(application)


def test_production_sends_hsts(migrated, redis_url, tmp_path, monkeypatch):
    cfg = make_config(
        migrated,
        redis_url,
        tmp_path,
        APP_ENV="production",
        SECRET_KEY="kT3v9QmZ2rW8yL5nB7xC4pF6hJ1sD0gA",
        EMAIL_HASH_KEY="x" * 8 + "kT3v9QmZ2rW8yL5nB7xC4pF6hJ1sD0gA",
        PORTAL_BASE_URL="https://privacy.example.com",
        MAIL_SERVER="127.0.0.1",
        ALLOW_SQLITE_IN_PRODUCTION=True,
    )
    application = create_app(cfg)
    with application.app_context():
        resp = application.test_client().get("/healthz", base_url="https://privacy.example.com")
        assert resp.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        db.session.remove()
