"""The wheel runs on its own: built from the checkout, installed in a fresh venv outside it, it migrates
an empty database and answers /readyz (templates, static files and migrations travel inside it).

And the README's "Deploying" section (with docs/operator-guide.md) followed end to end with only what
it says: the wheel, production's environment on PostgreSQL, Redis, SMTP and S3 (moto), its commands
(``flask db upgrade``, ``flask staff create``, gunicorn, ``flask worker``, ``flask cron``), behind a
proxy that sets the forwarded headers. PostgreSQL only: it skips with the reason on SQLite and runs in
CI's PostgreSQL pass (``TEST_DATABASE_URL``)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """``pip wheel .`` of a copy of the checkout, installed in a fresh venv outside it (once a module)."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist, venv = tmp / "dist", tmp / "venv"
    pip = [sys.executable, "-m", "pip"]
    source = tmp / "source"  # a copy: setuptools builds in the tree it is given
    ignore = shutil.ignore_patterns(".venv", ".git", "instance", "build", "*.egg-info", "__pycache__", "test-artifacts")
    shutil.copytree(ROOT, source, ignore=ignore)
    subprocess.run([*pip, "wheel", "--no-deps", "-q", "-w", str(dist), str(source)], check=True, timeout=300)
    [wheel] = dist.glob("dsr_portal-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=900)
    return venv


@pytest.mark.slow
def test_the_wheel_migrates_and_serves_outside_the_checkout(wheel_venv, tmp_path, redis_url):
    venv, work = wheel_venv, tmp_path / "elsewhere"
    work.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "APP_ENV": "development",
        "SECRET_KEY": "wheel-test-" + "k" * 32,
        "DATABASE_URL": f"sqlite:///{work}/portal.db",
        "REDIS_URL": redis_url,
        "HOME": str(work),
    }
    flask = [str(venv / "bin" / "flask"), "--app", "wsgi"]
    upgraded = subprocess.run([*flask, "db", "upgrade"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    port = _free_port()
    web = subprocess.Popen(
        [str(venv / "bin" / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1", "wsgi:app"], cwd=work, env=env
    )
    try:
        body, home = None, None
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).read()
                home = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                css = urllib.request.urlopen(f"http://127.0.0.1:{port}/static/css/site.css", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        assert body is not None and b'"ready"' in body, body
        assert b"/requests/new" in home and b":root" in css
        assert (work / "instance").is_dir() and not (ROOT / "elsewhere").exists()
    finally:
        web.terminate()
        web.wait(10)


# --- the README's "Deploying", followed to the letter ------------------------------------------------

PUBLIC = "portal.example"  # the name the TLS proxy answers on (PORTAL_BASE_URL)
SUBJECT_IP, STAFF_IP, SPOOFED = "203.0.113.9", "198.51.100.4", "10.6.6.6"


class ThroughTheProxy(HTTPAdapter):
    """What the README's TLS proxy does (one hop, ``TRUSTED_PROXIES=1``): ``https://portal.example/...``
    to gunicorn's ``http://127.0.0.1:<port>/...``, appending the client's address to whatever
    ``X-Forwarded-For`` the client sent and setting ``X-Forwarded-Proto`` and ``X-Forwarded-Host``.
    The client sees only https, so its browser-like cookie jar sends the Secure ``__Host-`` cookies."""

    def __init__(self, upstream: str, client_ip: str) -> None:
        super().__init__()
        self.upstream, self.client_ip = upstream, client_ip

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        forwarded = request.copy()
        forwarded.url = self.upstream + parts.path + (f"?{parts.query}" if parts.query else "")
        prior = forwarded.headers.get("X-Forwarded-For")
        forwarded.headers["X-Forwarded-For"] = f"{prior}, {self.client_ip}" if prior else self.client_ip
        forwarded.headers["X-Forwarded-Proto"] = "https"
        forwarded.headers["X-Forwarded-Host"] = parts.netloc
        response = super().send(forwarded, **kwargs)
        response.url, response.request = request.url, request
        return response


def browser(upstream: str, client_ip: str) -> requests.Session:
    """A client through the proxy that, like a browser, sends the page it is on as ``Referer`` (over
    https Flask-WTF's CSRF check wants a same-origin one)."""
    session = requests.Session()
    session.mount(f"https://{PUBLIC}/", ThroughTheProxy(upstream, client_ip))

    def remember_page(response, *args, **kwargs):
        session.headers["Referer"] = response.url

    session.hooks["response"].append(remember_page)
    return session


@pytest.fixture
def deploy_database(database_url):
    """A new, empty PostgreSQL database beside the suite's (``flask db upgrade`` starts from nothing)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the deployment test needs TEST_DATABASE_URL=postgresql://... (production refuses SQLite)")
    server = sa.engine.make_url(database_url)
    name = f"{server.database}_deploy"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _platform_data(db_url: str, redis_url: str, tmp: Path) -> None:
    """The platform's own rows for the subject (in production they are already there)."""
    from app import create_app
    from app.extensions import db
    from tests.conftest import make_config
    from tests.functional._fulfil import make_subject_data

    app = create_app(make_config(db_url, redis_url, tmp))
    with app.app_context():
        make_subject_data(usage=30)
        db.session.commit()
        for engine in db.engines.values():
            engine.dispose()


def _wait(check, timeout: float, what: str, logs: dict[str, Path]):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    tails = "\n".join(f"--- {n}\n{p.read_text(errors='replace')[-2000:]}" for n, p in logs.items())
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


@pytest.mark.slow
def test_deploying_as_the_readme_says_serves_a_request_from_submission_to_download(
    deploy_database, request, tmp_path, redis_url, smtp_sink, s3_bucket, s3_endpoint
):
    import pyotp
    import redis as redis_lib

    from tests.chaos.harness import button_form, form_with, post_form
    from tests.s3_fixtures import S3_ENV, objects

    s3, bucket = s3_bucket
    # the wheel only now: on SQLite the test has skipped before building it (a module fixture would not)
    db_url, venv = deploy_database, request.getfixturevalue("wheel_venv")
    work = tmp_path / "host"  # the deployment's directory: outside the checkout, nothing of it on the path
    work.mkdir()
    redis_lib.Redis.from_url(redis_url).flushdb()
    port, metrics_token = _free_port(), secrets.token_urlsafe(24)
    secret_key, hash_key = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    # The README's production environment, and nothing else (PATH and HOME aside).
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(work),
        "APP_ENV": "production",
        "SECRET_KEY": secret_key,
        "EMAIL_HASH_KEY": hash_key,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "PORTAL_BASE_URL": f"https://{PUBLIC}",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_sink.port),
        "EXPORT_STORAGE_URL": f"s3://{bucket}/portal",
        "S3_ENDPOINT_URL": s3_endpoint,
        **S3_ENV,
        "TRUSTED_PROXIES": "1",
        "METRICS_TOKEN": metrics_token,
    }
    flask = [str(venv / "bin" / "flask"), "--app", "wsgi"]

    def run(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [*flask, *args], cwd=work, env=env, input=stdin, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, f"flask {' '.join(args)}: {done.stderr[-3000:]}"
        return done.stdout

    run("db", "upgrade")
    _platform_data(db_url, redis_url, tmp_path / "seed")
    admin_email, admin_password = "dpo@portal.example", "violet tractor umbrella 93 lagoon"
    created = run("staff", "create", admin_email, "--role", "admin", "--password-stdin", stdin=admin_password + "\n")
    (enrol_link,) = re.findall(rf"https://{re.escape(PUBLIC)}/admin/enrol/\S+", created)

    logs = {name: work / f"{name}.log" for name in ("web", "worker", "cron")}
    commands = {
        # the README's command; two workers rather than four on a test machine
        "web": [str(venv / "bin" / "gunicorn"), "-w", "2", "--worker-class", "gthread", "--threads", "16",
                "-b", f"127.0.0.1:{port}",
                "--logger-class", "app.gunicorn_logging.Logger", "--access-logfile", "-", "wsgi:app"],
        "worker": [*flask, "worker"],
        "cron": [*flask, "cron"],
    }  # fmt: skip
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, cmd in commands.items():
            with open(logs[name], "wb") as out:
                procs[name] = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
        upstream = f"http://127.0.0.1:{port}"

        def ready():
            try:
                r = requests.get(upstream + "/readyz", timeout=5)
            except requests.RequestException:
                return None
            return r if r.status_code == 200 else None

        body = _wait(ready, 60, "/readyz", logs).json()
        assert body["checks"] == {"database": "ok", "platform_database": "ok", "redis": "ok",
                                  "export_store": "ok", "scheduled_jobs": "ok"}, body  # fmt: skip
        assert requests.get(upstream + "/metrics", timeout=10).status_code == 401
        scraped = requests.get(upstream + "/metrics", headers={"Authorization": f"Bearer {metrics_token}"}, timeout=10)
        assert scraped.status_code == 200 and "dsr_requests" in scraped.text

        # The subject asks, through the proxy; their own X-Forwarded-For is a lie the proxy appends to.
        subject = browser(upstream, SUBJECT_IP)
        subject.headers["X-Forwarded-For"] = SPOOFED
        page = subject.get(f"https://{PUBLIC}/requests/new", timeout=30)
        assert page.status_code == 200 and page.headers["Strict-Transport-Security"].startswith("max-age=")
        fields = {"request_type": "access", "email": "ada@example.com", "full_name": "Ada Lovelace",
                  "jurisdiction": "gdpr", "details": ""}  # fmt: skip
        sent = post_form(subject, page, form_with(page.text, "email", "request_type"), fields)
        assert sent.status_code == 200, sent.text[-2000:]
        assert any(c.name == "__Host-session" and c.secure for c in subject.cookies)
        # the per-address intake limit counts the client the proxy saw, not the spoof, not the proxy
        limited = [k.decode() for k in redis_lib.Redis.from_url(redis_url).scan_iter("*LIMITER*")]
        assert any(SUBJECT_IP in k for k in limited), limited
        assert not any(SPOOFED in k or "127.0.0.1" in k for k in limited), limited
        (verify,) = _wait(lambda: smtp_sink.links("ada@example.com", "/verify/"), 60, "the verify mail", logs)
        assert verify.startswith(f"https://{PUBLIC}/verify/")  # PORTAL_BASE_URL, never the Host header
        page = subject.get(verify, timeout=30)
        confirm = next(f for f in _forms(page.text) if (f.get("method") or "").lower() == "post")
        done = post_form(subject, page, confirm, {})
        (reference,) = set(re.findall(r"\bDSR-[A-Z0-9]{3,}(?:-[A-Z0-9]{3,})*\b", done.text))

        # The admin the README has us create enrols a second factor from the printed link and approves.
        staff = browser(upstream, STAFF_IP)
        page = staff.get(enrol_link, timeout=30)
        (key,) = re.findall(r'<code class="secret">([A-Z2-7]+)</code>', page.text)
        enrolled = post_form(staff, page, form_with(page.text, "password", "totp"),
                             {"password": admin_password, "totp": pyotp.TOTP(key).now()})  # fmt: skip
        assert enrolled.status_code == 200 and "Two-step sign-in is on" in enrolled.text, enrolled.text[-2000:]
        page = staff.get(f"https://{PUBLIC}/admin/requests/{reference}", timeout=30)
        approved = post_form(staff, page, button_form(page.text, "action", "approve"), {"action": "approve"})
        assert approved.status_code < 400

        # The worker builds the package into the bucket; the link is mailed; the subject downloads it.
        (link,) = _wait(lambda: smtp_sink.links("ada@example.com", "/download/"), 90, "the package's mail", logs)
        assert link.startswith(f"https://{PUBLIC}/download/")
        got = subject.get(link, timeout=60)
        assert got.status_code == 200 and got.headers["Content-Type"] == "application/zip", got.text[-1000:]
        manifest = json.loads(zipfile.ZipFile(io.BytesIO(got.content)).read("manifest.json"))
        assert manifest["request_reference"] == reference
        engine = sa.create_engine(db_url)
        try:
            with engine.connect() as conn:
                filename, sha, count = conn.execute(
                    sa.text("select filename, sha256, download_count from export")
                ).one()
                ips = set(conn.execute(sa.text("select distinct ip from audit_event where ip is not null")).scalars())
        finally:
            engine.dispose()
        assert hashlib.sha256(got.content).hexdigest() == sha and count == 1
        assert objects(s3, bucket) == {f"portal/{filename}": len(got.content)}
        assert ips == {STAFF_IP}, ips  # the staff audit trail too (a subject's address is never kept)
        for name in ("worker", "cron"):
            assert procs[name].poll() is None, f"{name} exited:\n{logs[name].read_text()[-3000:]}"
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        redis_lib.Redis.from_url(redis_url).flushdb()
    written = "".join(p.read_text(errors="replace") for p in logs.values())
    for secret in (secret_key, hash_key, metrics_token, S3_ENV["AWS_SECRET_ACCESS_KEY"], admin_password):
        assert secret not in written  # the start-up lines say what is configured, never a secret
    lines = [line for line in logs["web"].read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # production's default: every line one JSON object
    assert any(e["message"].startswith("dsr-portal: env=production") for e in entries)
    assert any(e["logger"] == "gunicorn.access" and e["request_id"] for e in entries)


def _forms(html: str):
    from bs4 import BeautifulSoup

    return BeautifulSoup(html, "html.parser").find_all("form")
