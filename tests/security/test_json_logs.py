"""LOG_FORMAT=json: every line one JSON object (time, level, logger, message, request_id), the request id
taken from REQUEST_ID_HEADER when it looks like one and echoed, and no token or address in any line."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from app.logs import JsonFormatter, _JsonHandler, accept_request_id
from tests.conftest import make_config

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"time", "level", "logger", "message", "request_id"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_request_id_is_kept_only_when_it_looks_like_one():
    assert accept_request_id("abc-123") == "abc-123"
    assert accept_request_id("3f2b8c1e-1d2a-4c3b-9e8f-0a1b2c3d4e5f") == "3f2b8c1e-1d2a-4c3b-9e8f-0a1b2c3d4e5f"
    assert accept_request_id("a" * 32) == "a" * 32  # hex: a proxy's 32-digit id
    token = secrets.token_urlsafe(32)
    for bad in ("ada@example.com", token, "x" * 65, "id with spaces", "id\nforged line", "", None, "/verify/abc"):
        made = accept_request_id(bad)
        assert made != bad and re.fullmatch(r"[0-9a-f]{32}", made)


@pytest.fixture
def app_config(migrated, redis_url, tmp_path):
    return make_config(migrated, redis_url, tmp_path, LOG_FORMAT="json")


@pytest.fixture
def json_app(app):
    root = logging.getLogger()
    level = root.level
    secret = secrets.token_urlsafe(32)

    @app.get("/_test/log/<path:rest>")
    def _log(rest):
        app.logger.warning("GET /verify/%s for ada@example.com", secret)
        raise RuntimeError(f"boom at /download/{secret} for ada@example.com")

    try:
        yield app, secret
    finally:
        for handler in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
            root.removeHandler(handler)
        root.setLevel(level)


def test_json_lines_in_process_carry_the_request_id_and_no_secret(json_app, capsys):
    application, secret = json_app
    application.config["PROPAGATE_EXCEPTIONS"] = False
    client = application.test_client()
    r = client.get("/_test/log/x", headers={"X-Request-ID": "req-42"})
    assert r.status_code == 500 and r.headers["X-Request-ID"] == "req-42"
    fresh = client.get("/healthz", headers={"X-Request-ID": "ada@example.com"})
    assert fresh.headers["X-Request-ID"] != "ada@example.com"
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["X-Request-ID"])
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines, err
    for entry in lines:
        assert FIELDS <= set(entry)
    ours = [e for e in lines if e["request_id"] == "req-42"]
    assert {e["level"] for e in ours} >= {"WARNING", "ERROR"}
    warning = next(e for e in ours if e["level"] == "WARNING")
    assert warning["message"] == "GET /verify/[redacted] for [address]"
    error = next(e for e in ours if e["level"] == "ERROR")
    assert "RuntimeError" in error["exception"] and "\n" not in json.dumps(error).strip("\n")
    assert secret not in err and "ada@example.com" not in err


def test_a_jobs_lines_carry_the_id_of_the_request_that_queued_it(json_app, capsys, tmp_path, redis_conn):
    from app.audit import Actor
    from app.dsr import services
    from app.dsr.states import RequestStatus
    from app.extensions import db
    from tests.factories import make_request, make_staff
    from tests.functional._fulfil import make_subject_data, run_jobs

    application, _secret = json_app
    make_subject_data(usage=3)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    application.config["EXPORT_DIR"] = str(blocker)  # the export fails for good: the job logs why
    dsr = make_request(RequestStatus.PENDING_REVIEW, "access", email="ada@example.com")
    officer = make_staff("officer")
    with application.test_request_context(headers={"X-Request-ID": "approve-77"}):
        services.transition(dsr, RequestStatus.APPROVED, Actor.staff(officer))
        db.session.commit()  # enqueued here, inside the request
    run_jobs(redis_conn)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    failed = [e for e in lines if e["logger"] == "app" and "failed" in e["message"]]
    assert failed and failed[0]["request_id"] == "approve-77" and failed[0]["exception"]
    assert all(e["request_id"] is None for e in lines if e["logger"] == "rq.worker")


def test_formatter_writes_only_its_fields():
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.email = "ada@example.com"  # an extra: never written
    entry = json.loads(JsonFormatter().format(record))
    assert set(entry) == FIELDS and entry["message"] == "hello world" and entry["time"].endswith("Z")


def test_production_defaults_to_json_and_development_to_text(monkeypatch, tmp_path):
    from app.config import ConfigError, load_config

    monkeypatch.delenv("LOG_FORMAT", raising=False)
    assert load_config(tmp_path, {"APP_ENV": "development", "SECRET_KEY": "x"})["LOG_FORMAT"] == "text"
    monkeypatch.setenv("APP_ENV", "production")
    for name, value in (("DATABASE_URL", "postgresql://db/x"), ("REDIS_URL", "redis://r/0"),
                        ("PORTAL_BASE_URL", "https://p.example"), ("MAIL_SERVER", "smtp.example"),
                        ("EMAIL_HASH_KEY", secrets.token_hex(32))):  # fmt: skip
        monkeypatch.setenv(name, value)
    assert load_config(tmp_path, {"SECRET_KEY": secrets.token_hex(32)})["LOG_FORMAT"] == "json"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_config(tmp_path, {"SECRET_KEY": secrets.token_hex(32)})
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("REQUEST_ID_HEADER", "X Bad: header")
    with pytest.raises(ConfigError, match="REQUEST_ID_HEADER"):
        load_config(tmp_path, {"SECRET_KEY": secrets.token_hex(32)})


@pytest.mark.slow
def test_gunicorn_and_worker_write_only_json_lines_without_secrets(tmp_path, redis_url):
    """A real gunicorn (master, worker, access log) and a real ``flask worker``: every line they write is
    one JSON object; the access line of a request carries its id; no token or address anywhere."""
    if not (BIN / "gunicorn").exists():
        pytest.skip("gunicorn is not installed in the venv")
    db_url = f"sqlite:///{tmp_path}/portal.db"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "DATABASE", "MAIL_", "STRIPE", "LOG_"))},
        "APP_ENV": "development",
        "LOG_FORMAT": "json",
        "REQUEST_ID_HEADER": "X-Correlation-ID",
        "SECRET_KEY": "json-logs-" + secrets.token_hex(16),
        "EMAIL_HASH_KEY": secrets.token_hex(32),
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "EXPORT_DIR": str(tmp_path / "exports"),
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "RATELIMIT_ENABLED": "false",
    }
    flask = [str(BIN / "flask"), "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120, cwd=ROOT)
    port = _free_port()
    out, err = tmp_path / "web.out", tmp_path / "web.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1", "--access-logfile", "-",
             "--logger-class", "app.gunicorn_logging.Logger", "wsgi:app"],
            env=env, stdout=o, stderr=e, cwd=ROOT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    token = secrets.token_urlsafe(32)
    try:
        for _ in range(150):
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        kept = requests.get(base + "/healthz", headers={"X-Correlation-ID": "lb-7f3a"}, timeout=10)
        assert kept.headers["X-Correlation-ID"] == "lb-7f3a"
        made = requests.get(base + f"/download/{token}", headers={"X-Correlation-ID": token}, timeout=10)
        assert made.status_code == 404 and made.headers["X-Correlation-ID"] != token
        sess = requests.Session()
        page = sess.get(base + "/requests/new", timeout=10)
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
        form = {"csrf_token": csrf, "request_type": "access", "email": "ada@example.com", "full_name": "Ada",
                "jurisdiction": "gdpr", "details": ""}  # fmt: skip
        assert sess.post(base + "/requests/new", data=form, timeout=10).status_code == 200
        with sa.create_engine(db_url).connect() as conn:
            body = conn.execute(sa.text("select body_text from outgoing_mail where template = 'verify'")).scalar()
        verify = re.search(r"/verify/([A-Za-z0-9_-]+)", body).group(1)
        requests.get(base + f"/verify/{verify}", headers={"X-Correlation-ID": "lb-verify"}, timeout=10)
    finally:
        proc.terminate()
        proc.wait(15)
    worker = subprocess.run(
        [*flask, "worker", "--burst"], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert worker.returncode == 0, worker.stderr[-2000:]

    text = out.read_text() + err.read_text() + worker.stdout + worker.stderr
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)  # every line is one JSON object
        assert FIELDS <= set(entry), line
        entries.append(entry)
    access = [e for e in entries if e["logger"] == "gunicorn.access"]
    assert any(e["request_id"] == "lb-7f3a" and "/healthz" in e["message"] for e in access)
    assert any(e["request_id"] == "lb-verify" and "/verify/[redacted]" in e["message"] for e in access)
    assert any(e["logger"] == "gunicorn.error" and "Listening" in e["message"] for e in entries)  # the master's too
    assert any(e["logger"] == "rq.worker" and "(mail-1)" in e["message"] for e in entries)  # the worker's too
    for secret in (token, verify, "ada@example.com"):
        assert secret not in text
    assert not re.search(r"[/=][A-Za-z0-9_-]{32,}", text)
