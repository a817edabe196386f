"""Shared fixtures: a real database (SQLite file, or PostgreSQL via TEST_DATABASE_URL) migrated with
Alembic once per session, a real Redis (embedded, or TEST_REDIS_URL), an app per test, and a client
that sends CSRF tokens the way a browser would. Every test starts from empty tables and an empty Redis.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import text

from app import create_app
from app.extensions import db
from app.redis_server import ensure_embedded_redis, stop_embedded_redis
from tests.dbreset import drop_app_tables

# Browser fixtures (live_server, browser_page, ...) live in one module registered here, so the
# session-wide Playwright instance is shared by tests/browser and tests/security.
pytest_plugins = ["tests.browser_fixtures", "tests.s3_fixtures", "tests.imap_fixtures"]

TEST_SECRET = "test-secret-key-not-for-production"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    directory = tmp_path_factory.mktemp("redis")
    yield ensure_embedded_redis(Path(directory))
    stop_embedded_redis(Path(directory))


def make_config(database_url: str, redis_url: str, tmp_path: Path, **extra) -> dict:
    cfg = {
        "APP_ENV": "testing",
        "SECRET_KEY": TEST_SECRET,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_BINDS": {"platform": database_url},
        "REDIS_URL": redis_url,
        "RATELIMIT_STORAGE_URI": redis_url,
        "MAIL_SERVER": None,
        "STRIPE_API_KEY": None,
        "STRIPE_API_BASE": None,
        "EXPORT_DIR": str(tmp_path / "exports"),
        "PORTAL_BASE_URL": "http://portal.test",
        "SERVER_NAME": None,
    }
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="session")
def migrated(database_url, redis_url, tmp_path_factory) -> str:
    """Build the schema once with Alembic (never create_all)."""
    from flask_migrate import upgrade

    if database_url.startswith("postgresql"):
        drop_app_tables(database_url)
    app = create_app(make_config(database_url, redis_url, tmp_path_factory.mktemp("mig")))
    with app.app_context():
        upgrade()
        for engine in db.engines.values():
            engine.dispose()
    return database_url


def _empty_everything(app) -> None:
    with app.app_context():
        db.session.remove()
        for bind, engine in db.engines.items():
            tables = list(reversed(db.metadatas[bind].sorted_tables))
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    names = ", ".join(f'"{t.name}"' for t in tables)
                    conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
                else:
                    for t in tables:
                        conn.execute(t.delete())
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def app_config(migrated, redis_url, tmp_path) -> dict:
    """Override in a test module (or extend) to change the configuration."""
    return make_config(migrated, redis_url, tmp_path)


@pytest.fixture
def app(app_config, redis_url):
    application = create_app(app_config)
    redis_lib.Redis.from_url(redis_url).flushdb()
    ctx = application.app_context()
    ctx.push()
    try:
        yield application
    finally:
        db.session.remove()
        ctx.pop()
        _empty_everything(application)
        redis_lib.Redis.from_url(redis_url).flushdb()


@pytest.fixture
def redis_conn(app):
    from app.queue import get_redis

    return get_redis(app)


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


class CsrfClient:
    """Wraps Flask's test client: ``post_form(url, data)`` first GETs ``url`` (or ``page``) for a token."""

    def __init__(self, client):
        self.client = client

    def __getattr__(self, name):
        return getattr(self.client, name)

    def csrf_from(self, url: str) -> str:
        html = self.client.get(url).get_data(as_text=True)
        match = CSRF_RE.search(html)
        if not match:
            raise AssertionError(f"no csrf_token on {url}")
        return match.group(1) or match.group(2)

    def post_form(self, url: str, data: dict | None = None, page: str | None = None, **kwargs):
        payload = dict(data or {})
        payload.setdefault("csrf_token", self.csrf_from(page or url))
        return self.client.post(url, data=payload, **kwargs)


@pytest.fixture
def client(app):
    return CsrfClient(app.test_client())


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory):
    """A real localstripe server for the session; yields its base URL (the ``stripe`` SDK talks to it)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    binary = Path(sys.executable).parent / "localstripe"
    if not binary.exists():
        pytest.skip("localstripe is not installed in the venv")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("localstripe") / "localstripe.log", "wb")
    # --from-scratch: never load the shared /tmp/localstripe.pickle another run may have left (or broken).
    proc = subprocess.Popen([str(binary), "--port", str(port), "--from-scratch"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            req = urllib.request.Request(  # noqa: S310 - local test server
                base + "/v1/customers", headers={"Authorization": "Bearer sk_test_x"}
            )
            urllib.request.urlopen(req, timeout=2).read()  # noqa: S310 - local test server
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("localstripe did not start") from None
            time.sleep(0.2)
    yield base
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


# --- a real SMTP server (aiosmtpd) that keeps what it receives -------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpSink:
    """aiosmtpd on 127.0.0.1:``port``; ``messages`` holds (recipients, email.message.EmailMessage)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.messages: list = []
        self.controller = None

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes, policy

        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(([r.lower() for r in envelope.rcpt_tos], msg))
        return "250 OK"

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list:
        return [msg for rcpts, msg in self.messages if address.lower() in rcpts]

    @staticmethod
    def text_of(msg) -> str:
        return "\n".join(
            part.get_content() for part in msg.walk() if part.get_content_type() in ("text/plain", "text/html")
        )

    def links(self, address: str, needle: str) -> list[str]:
        found: list[str] = []
        for msg in self.to(address):
            for link in re.findall(r"https?://[^\s\"'<>]+", self.text_of(msg)):
                link = link.rstrip(").,;").replace("&amp;", "&")
                if needle in link and link not in found:
                    found.append(link)
        return found

    def config(self) -> dict:
        """Config overrides that point the app at this sink."""
        return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": self.port, "MAIL_USE_TLS": False, "MAIL_TIMEOUT": 5}


@pytest.fixture
def smtp_sink():
    """A running SMTP sink; combine with ``app_config`` overrides: ``{**app_config, **smtp_sink.config()}``."""
    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()
