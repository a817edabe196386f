from app import create_app
from tests.conftest import make_config


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json == {"status": "ok"}


def test_readyz_ready(client):
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json["checks"] == {
        "database": "ok",
        "platform_database": "ok",
        "redis": "ok",
        "export_store": "ok",
        "scheduled_jobs": "ok",
    }


def test_readyz_reports_down_redis_as_not_ready(migrated, tmp_path):
    cfg = make_config(migrated, "redis://127.0.0.1:1/0", tmp_path, RATELIMIT_ENABLED=False)
    app = create_app(cfg)
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.json["status"] == "not ready"
    assert r.json["checks"]["redis"].startswith("error")
    assert r.json["checks"]["database"] == "ok"


def test_security_headers_present(client):
    r = client.get("/healthz")
    csp = r.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "same-origin"
