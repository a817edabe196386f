"""``make run`` end to end: ``flask db upgrade``, ``flask seed-demo`` and ``flask dev`` in a fresh instance
directory start the portal with its embedded Redis, a worker, cron and localstripe; a request made on the
portal is answered by the worker; SIGTERM (Ctrl-C) stops every process it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def flask(*args: str, env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
        **kw,
    )


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - the local dev server
        return resp.status, resp.read().decode()


def test_flask_dev_serves_the_portal_and_stops_everything_it_started(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "MAIL_", "STRIPE_", "TEST_", "SECRET_KEY"))
    }
    env.update(APP_ENV="development", INSTANCE_PATH=str(tmp_path / "instance"))
    flask("db", "upgrade", env=env)
    seeded = flask("seed-demo", "--accounts", "3", env=env)
    assert "demo officer" in seeded.stdout or "login:" in seeded.stdout

    port = free_port()
    log = open(tmp_path / "dev.log", "w+")
    dev = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "dev", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status, _ = get(f"http://127.0.0.1:{port}/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            assert dev.poll() is None and time.monotonic() < deadline, (tmp_path / "dev.log").read_text()
            time.sleep(0.5)
        status, page = get(f"http://127.0.0.1:{port}/admin/login")
        assert status == 200 and "password" in page.lower()
        printed = (tmp_path / "dev.log").read_text()
        assert f"DSR portal:  http://127.0.0.1:{port}/" in printed and "Ctrl-C stops everything." in printed
        assert re.search(r"Staff login: .*/admin/login  \(\S+ / \S+\)", printed)
        assert (tmp_path / "instance" / "redis" / "port").exists()  # the embedded Redis is up
    finally:
        dev.send_signal(signal.SIGTERM)
        try:
            rc = dev.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            raise
    printed = (tmp_path / "dev.log").read_text()
    assert rc == 0 and printed.rstrip().endswith("stopped"), printed[-2000:]
    assert not (tmp_path / "instance" / "redis" / "port").exists()  # the embedded Redis was shut down
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/healthz")
    # Nothing it started is left running in its process group.
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-g", str(dev.pid)], capture_output=True, text=True).stdout.split()
    assert left == [], left
