"""More than one machine: two web processes and two workers, each with its own INSTANCE_PATH and
EXPORT_DIR (no shared disk), sharing only PostgreSQL, Redis and the S3 endpoint. A request submitted and
approved on web A is built by the worker of "another host" and downloaded through web B.

PostgreSQL only (SQLite is one file on one disk, the very thing this rules out): it skips with the
reason on SQLite and runs in CI's PostgreSQL pass (``TEST_DATABASE_URL``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa

from tests.chaos.harness import button_form, form_with, free_port, post_form, wait_http
from tests.factories import PASSWORD, make_staff
from tests.functional._fulfil import make_subject_data
from tests.s3_fixtures import objects

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
PREFIX = "hosts"


@pytest.fixture
def app_config(migrated, redis_url, tmp_path):
    if not migrated.startswith("postgresql"):
        pytest.skip("needs TEST_DATABASE_URL=postgresql://...: hosts without a shared disk share PostgreSQL")
    from tests.conftest import make_config

    return make_config(migrated, redis_url, tmp_path, TOTP_REQUIRED_ROLES=frozenset())


class Hosts:
    """Processes started as if on separate machines: each one's own directories, one shared env."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp = tmp_path
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        self.dirs: dict[str, Path] = {}

    def start(self, name: str, cmd: list[str]) -> None:
        home = self.tmp / name
        (home / "instance").mkdir(parents=True)
        self.dirs[name] = home
        env = {**self.env, "INSTANCE_PATH": str(home / "instance"), "EXPORT_DIR": str(home / "exports")}
        log = open(home / "log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            cmd, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def log(self, name: str) -> str:
        return (self.dirs[name] / "log").read_text(errors="replace")

    def files(self, pattern: str) -> list[Path]:
        return [p for home in self.dirs.values() for p in home.rglob(pattern) if p.is_file()]

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def query(url: str, sql: str, **params) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))
    finally:
        engine.dispose()


def wait_for(check, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def mail_link(db_url: str, to: str, template: str, needle: str) -> str:
    def body():
        rows = query(
            db_url,
            "select body_text from outgoing_mail where to_addr = :to and template = :t order by id desc",
            to=to,
            t=template,
        )
        return rows[0][0] if rows and rows[0][0] else None

    text = wait_for(body, 60, f"the {template} mail")
    (link,) = [u for u in re.findall(r"https?://[^\s\"'<>]+", text) if needle in u][:1]
    parts = urlsplit(link.replace("&amp;", "&"))
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_request_approved_on_one_web_is_built_on_another_host_and_downloaded_from_the_other_web(
    app, tmp_path, redis_url, s3_bucket, s3_endpoint
):
    client, bucket = s3_bucket
    db_url = app.config["SQLALCHEMY_DATABASE_URI"]
    make_subject_data(usage=300)
    officer = make_staff("officer", email="officer@hosts.test")
    officer_email = officer.email
    web_a, web_b = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "DATABASE", "MAIL_", "STRIPE", "EXPORT"))},
        "APP_ENV": "development",
        "SECRET_KEY": app.config["SECRET_KEY"] + "-hosts-0123456789abcdef",
        "EMAIL_HASH_KEY": app.config["EMAIL_HASH_KEY"],
        "DATABASE_URL": db_url,
        "PLATFORM_DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "EXPORT_STORAGE_URL": f"s3://{bucket}/{PREFIX}",
        "S3_ENDPOINT_URL": s3_endpoint,
        "PORTAL_BASE_URL": f"http://127.0.0.1:{web_a}",
        "RATELIMIT_ENABLED": "false",
        "TOTP_REQUIRED_ROLES": "",
        "PYTHONPATH": str(ROOT),
    }
    hosts = Hosts(tmp_path, env)
    flask = [str(BIN / "flask"), "--app", "wsgi"]
    try:
        for name, port in (("web-a", web_a), ("web-b", web_b)):
            hosts.start(name, [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1", "wsgi:app"])
        # host A's worker sends mail; host C's builds exports: neither shares a disk with a web process
        hosts.start("worker-a", [*flask, "worker", "--queues", "mail,maintenance"])
        hosts.start("worker-c", [*flask, "worker", "--queues", "fulfilment"])
        base_a, base_b = f"http://127.0.0.1:{web_a}", f"http://127.0.0.1:{web_b}"
        assert wait_http(base_a + "/healthz", 60) and wait_http(base_b + "/healthz", 60)

        # the subject asks on web A and confirms through web B
        subject = requests.Session()
        page = subject.get(base_a + "/requests/new", timeout=30)
        fields = {"request_type": "access", "email": "ada@example.com", "full_name": "Ada Lovelace",
                  "jurisdiction": "gdpr", "details": ""}  # fmt: skip
        assert post_form(subject, page, form_with(page.text, "email", "request_type"), fields).status_code < 400
        confirm = requests.Session()
        page = confirm.get(base_b + mail_link(db_url, "ada@example.com", "verify", "/verify/"), timeout=30)
        form = next(f for f in form_with_all(page.text) if (f.get("method") or "").lower() == "post")
        done = post_form(confirm, page, form, {})
        (reference,) = set(re.findall(r"\bDSR-[A-Z0-9]{3,}(?:-[A-Z0-9]{3,})*\b", done.text))

        # the officer approves on web A
        staff = requests.Session()
        page = staff.get(base_a + "/admin/login", timeout=30)
        r = post_form(staff, page, form_with(page.text, "email", "password"), {"email": officer_email,
                                                                               "password": PASSWORD})  # fmt: skip
        assert r.status_code < 400 and "/admin/login" not in r.url
        page = staff.get(f"{base_a}/admin/requests/{reference}", timeout=30)
        r = post_form(staff, page, button_form(page.text, "action", "approve"), {"action": "approve"})
        assert r.status_code < 400

        def completed():
            rows = query(db_url, "select status, last_error from dsr_request where reference = :r", r=reference)
            assert rows[0][0] not in ("failed",), rows
            return rows[0][0] == "completed"

        wait_for(completed, 180, f"{reference} to complete")
        ((export_id, filename, size, sha),) = query(
            db_url, "select id, filename, size_bytes, sha256 from export where status = 'ready'"
        )

        # built by host C's worker, stored in S3 only: no package on any host's disk
        assert "fulfil-" in hosts.log("worker-c") and "build_export" in hosts.log("worker-c")
        assert "build_export" not in hosts.log("worker-a")
        assert hosts.files("*.zip") == [] and hosts.files("*.part") == []
        assert objects(client, bucket) == {f"{PREFIX}/{filename}": size}
        assert client.head_object(Bucket=bucket, Key=f"{PREFIX}/{filename}")["ServerSideEncryption"] == "AES256"

        # the subject downloads through web B
        link = mail_link(db_url, "ada@example.com", "fulfil_export_ready", "/download/")
        got = requests.Session().get(base_b + link, timeout=60)
        assert got.status_code == 200 and got.url == base_b + "/download"
        assert hashlib.sha256(got.content).hexdigest() == sha and len(got.content) == size
        manifest = json.loads(zipfile.ZipFile(io.BytesIO(got.content)).read("manifest.json"))
        assert manifest["request_reference"] == reference
        rows = query(db_url, "select download_count from export where id = :i", i=export_id)
        assert rows[0][0] == 1
        audited = query(db_url, "select count(*) from audit_event where event = 'export.downloaded'")
        assert audited[0][0] == 1
    finally:
        hosts.stop()


def form_with_all(html: str):
    from bs4 import BeautifulSoup

    return BeautifulSoup(html, "html.parser").find_all("form")
