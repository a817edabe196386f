"""``flask worker`` rides out a Redis restart: rq's worker quits at the first Redis error it meets
while a job runs (and its teardown raises again while Redis is still down), so a Redis crash used to
take every busy worker with it and nothing ran until someone restarted them (the chaos run's Redis
restart). A real redis-server on a free port is SIGKILLed mid-job and started again empty.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from app.queue import get_queue
from tests.chaos.harness import free_port, redis_binary

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def start_redis(port: int, workdir: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            redis_binary() or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    conn = redis.Redis(port=port, socket_timeout=2)
    end = time.monotonic() + 20
    while True:
        try:
            conn.ping()
            return proc
        except redis.ConnectionError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


class SilentSmtp:
    """Accepts connections and never greets: a send attempt waits there for MAIL_TIMEOUT (a busy job)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connected = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.held.append(conn)
                self.connected.set()

    def close(self) -> None:
        for s in [*self.held, self.sock]:
            with contextlib.suppress(OSError):
                s.close()


def workers_registered(conn: redis.Redis) -> int:
    with contextlib.suppress(redis.RedisError):
        return conn.scard("rq:workers")
    return 0


def test_worker_redis_killed_mid_job_keeps_working_after_restart(app, tmp_path, migrated):
    if redis_binary() is None:
        pytest.skip("no redis-server binary")
    from app.extensions import db
    from app.mail import queue_mail

    port = free_port()
    server = start_redis(port, tmp_path)
    smtp = SilentSmtp()
    mail = queue_mail(
        "staff@example.test", "admin_staff_invite", "Your account", inviter="An admin", role="officer",
        enrol_url=None, login_url="http://portal.test/admin/login",
    )  # fmt: skip
    db.session.commit()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "REDIS", "DATABASE", "MAIL_"))}
    env.update(
        APP_ENV="development",
        FLASK_DEBUG="0",
        SECRET_KEY="worker-restart-test",
        DATABASE_URL=migrated,
        PLATFORM_DATABASE_URL=migrated,
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(smtp.port),
        MAIL_USE_TLS="false",
        MAIL_TIMEOUT="3",
        STRIPE_API_KEY="",
    )
    conn = redis.Redis(port=port, socket_timeout=2)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [str(BIN / "flask"), "--app", "wsgi", "worker"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        end = time.monotonic() + 60
        while not workers_registered(conn) and time.monotonic() < end:
            time.sleep(0.2)
        assert workers_registered(conn), "the worker never registered"
        get_queue("mail", conn).enqueue("workers.mail.send_mail", mail.id, job_timeout=30)
        assert smtp.connected.wait(30), "the mail job never reached the SMTP server"

        # Mid-job: the work horse waits for the greeting, gives up after MAIL_TIMEOUT while Redis is
        # still down, and cannot record that; its worker then cannot read the job's status.
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        time.sleep(6)
        server = start_redis(port, tmp_path)  # empty: nothing was saved

        end = time.monotonic() + 45
        while not workers_registered(conn) and worker.poll() is None and time.monotonic() < end:
            time.sleep(0.2)
        tail = log.read_text(errors="replace")[-3000:]
        assert worker.poll() is None, f"flask worker exited ({worker.returncode}) when Redis restarted:\n{tail}"
        assert workers_registered(conn), f"the worker did not register again with the restarted Redis:\n{tail}"
        # And it works: a job enqueued after the restart runs (an id with no row: the job says "gone").
        job = get_queue("mail", conn).enqueue("workers.mail.send_mail", 10**9, job_timeout=30)
        end = time.monotonic() + 45
        while job.get_status(refresh=True) != "finished" and time.monotonic() < end:
            time.sleep(0.2)
        assert job.get_status(refresh=True) == "finished"
        assert job.return_value() == "gone"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        worker.wait(10)
        server.wait(10)
        smtp.close()
