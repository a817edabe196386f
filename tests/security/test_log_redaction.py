"""No link token in any log line: a real gunicorn's access and error logs, and the app's own logger."""

from __future__ import annotations

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

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_log_lines_carry_no_token_or_address(app, caplog):
    raw = secrets.token_urlsafe(32)
    with caplog.at_level(logging.INFO):
        app.logger.warning("GET /verify/%s from ada@example.com", raw)
        logging.getLogger("werkzeug").info('"GET /requests/DSR-AAAA-BBBB?token=%s HTTP/1.1" 303 -', raw)
    text = caplog.text
    assert raw not in text and "ada@example.com" not in text
    assert "/verify/[redacted]" in text and "token=[redacted]" in text and "DSR-AAAA-BBBB" in text


@pytest.mark.slow
def test_gunicorn_access_log_holds_no_token(tmp_path, redis_url):
    if not (BIN / "gunicorn").exists():
        pytest.skip("gunicorn is not installed in the venv")
    db_url = f"sqlite:///{tmp_path}/portal.db"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "DATABASE", "MAIL_", "STRIPE"))},
        "APP_ENV": "development",
        "SECRET_KEY": "log-redaction-" + secrets.token_hex(16),
        "EMAIL_HASH_KEY": secrets.token_hex(32),
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "EXPORT_DIR": str(tmp_path / "exports"),
        "RATELIMIT_ENABLED": "false",
    }
    flask = [str(BIN / "flask"), "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    port = _free_port()
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1", "--access-logfile", str(access),
         "--error-logfile", str(errors), "--log-level", "debug", "wsgi:app"],
        env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        sess = requests.Session()
        page = sess.get(base + "/requests/new", timeout=10)
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
        form = {"csrf_token": csrf, "request_type": "access", "email": "ada@example.com", "full_name": "Ada",
                "jurisdiction": "gdpr", "details": ""}  # fmt: skip
        assert sess.post(base + "/requests/new", data=form, timeout=10).status_code == 200
        engine = sa.create_engine(db_url)
        with engine.connect() as conn:
            body = conn.execute(sa.text("select body_text from outgoing_mail where template = 'verify'")).scalar()
        verify = re.search(r"(/verify/[A-Za-z0-9_-]+)", body).group(1)
        confirm = sess.get(base + verify, timeout=10)  # the token is traded for a cookie here
        assert confirm.url == base + "/verify"
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', confirm.text).group(1)
        done = sess.post(base + "/verify", data={"csrf_token": csrf}, timeout=10)
        status = re.search(r'href="(/requests/DSR-[^"]+)"', done.text).group(1).replace("&amp;", "&")
        page = requests.get(base + status, timeout=10)  # a fresh browser, as from the mail
        assert page.status_code == 200 and page.url.endswith(status.split("?")[0])
        requests.get(base + "/download/" + secrets.token_urlsafe(32), timeout=10)
    finally:
        proc.terminate()
        proc.wait(10)
    tokens = [verify.rsplit("/", 1)[1], status.split("token=")[1]]
    logged = access.read_text() + errors.read_text()
    assert "/verify/[redacted]" in logged and "token=[redacted]" in logged  # the lines are there, redacted
    for token in tokens:
        assert token not in logged
    assert not re.search(r"[/=][A-Za-z0-9_-]{32,}", logged)


def test_addresses_in_query_strings_are_redacted_too(app, caplog):
    with caplog.at_level(logging.INFO):
        logging.getLogger("werkzeug").info('"GET /admin/requests?q=zebulon.quax%40example.org&page=2 HTTP/1.1" 200')
    assert "zebulon" not in caplog.text and "q=[address]&page=2" in caplog.text
