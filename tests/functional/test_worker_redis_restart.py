"""``flask worker`` rides out a Redis restart (the chaos run's): rq's worker quits at the first Redis
error it meets while a job runs (and its teardown raises again while Redis is still down), so a Redis
crash took every busy worker with it; and its scheduler process dies at its next heartbeat, which an
idle worker only notices at its ten-minute maintenance, so retries waited for the reconciler. A real
redis-server on a free port is SIGKILLed and started again empty.
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
from datetime import timedelta
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


class Rig:
    """A redis-server of our own, a silent SMTP server and one ``flask worker`` pointed at them."""

    def __init__(self, tmp_path: Path, database_url: str, *, redis_first: bool = True, mail_timeout: int = 3) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.server: subprocess.Popen | None = start_redis(self.port, tmp_path) if redis_first else None
        self.conn = redis.Redis(port=self.port, socket_timeout=2)
        self.smtp = SilentSmtp()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "REDIS", "DATABASE", "MAIL_"))}
        env.update(
            APP_ENV="development",
            FLASK_DEBUG="0",
            SECRET_KEY="worker-restart-test",
            DATABASE_URL=database_url,
            PLATFORM_DATABASE_URL=database_url,
            REDIS_URL=f"redis://127.0.0.1:{self.port}/0",
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=str(self.smtp.port),
            MAIL_USE_TLS="false",
            MAIL_TIMEOUT=str(mail_timeout),
            STRIPE_API_KEY="",
        )
        self.log = tmp_path / "worker.log"
        with open(self.log, "wb") as out:
            self.worker = subprocess.Popen(
                [str(BIN / "flask"), "--app", "wsgi", "worker"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if redis_first:
            self.wait_registered()

    def wait_registered(self) -> None:
        end = time.monotonic() + 60
        while not workers_registered(self.conn) and self.worker.poll() is None and time.monotonic() < end:
            time.sleep(0.2)
        assert self.worker.poll() is None, f"flask worker exited ({self.worker.returncode}):\n{self.tail()}"
        assert workers_registered(self.conn), f"the worker never registered:\n{self.tail()}"

    def start_busy_job(self, job_timeout: int) -> None:
        """A mail job whose work horse then waits at the silent SMTP server (for up to MAIL_TIMEOUT)."""
        from app.extensions import db
        from app.mail import queue_mail

        mail = queue_mail(
            "staff@example.test", "admin_staff_invite", "Your account", inviter="An admin", role="officer",
            enrol_url=None, login_url="http://portal.test/admin/login",
        )  # fmt: skip
        db.session.commit()
        get_queue("mail", self.conn).enqueue("workers.mail.send_mail", mail.id, job_timeout=job_timeout)
        assert self.smtp.connected.wait(30), f"the mail job never reached the SMTP server:\n{self.tail()}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def restart_redis(self, down: float) -> None:
        assert self.server is not None
        os.killpg(self.server.pid, signal.SIGKILL)
        self.server.wait(10)
        time.sleep(down)
        self.server = start_redis(self.port, self.tmp_path)  # empty: nothing was saved

    def run(self, job, timeout: float = 45) -> None:
        end = time.monotonic() + timeout
        while job.get_status(refresh=True) != "finished" and time.monotonic() < end:
            time.sleep(0.2)
        assert job.get_status(refresh=True) == "finished", f"job {job.get_status()}:\n{self.tail()}"
        assert job.return_value() == "gone"  # an id with no row

    def stop(self) -> None:
        for proc in (self.worker, self.server):
            if proc is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        self.smtp.close()


@pytest.fixture
def rig_factory(app, tmp_path, migrated):
    if redis_binary() is None:
        pytest.skip("no redis-server binary")
    made: list[Rig] = []

    def make(**kw) -> Rig:
        made.append(Rig(tmp_path, migrated, **kw))
        return made[-1]

    yield make
    for one in made:
        one.stop()


@pytest.fixture
def rig(rig_factory):
    return rig_factory()


def test_a_worker_started_while_redis_is_down_waits_for_it_then_works(rig_factory):
    """A worker (re)started during a Redis outage (a host reboot, a service manager's restart, the
    chaos run's kill landing beside its Redis restart) must wait, not exit: rq's worker asks Redis its
    client address as it is made, before its own loop can catch anything."""
    rig = rig_factory(redis_first=False)
    end = time.monotonic() + 60
    while rig.worker.poll() is None and "once it answers" not in rig.tail() and time.monotonic() < end:
        time.sleep(0.2)
    assert rig.worker.poll() is None, f"flask worker exited ({rig.worker.returncode}) with Redis down:\n{rig.tail()}"
    assert "once it answers" in rig.tail(), rig.tail()
    rig.server = start_redis(rig.port, rig.tmp_path)
    rig.wait_registered()
    rig.run(get_queue("mail", rig.conn).enqueue("workers.mail.send_mail", 10**9, job_timeout=30))


def test_worker_redis_killed_mid_job_keeps_working_after_restart(rig):
    rig.start_busy_job(job_timeout=30)
    # Mid-job: the work horse waits for the greeting, gives up after MAIL_TIMEOUT while Redis is
    # still down, and cannot record that; its worker then cannot read the job's status.
    rig.restart_redis(down=6)

    end = time.monotonic() + 45
    while not workers_registered(rig.conn) and rig.worker.poll() is None and time.monotonic() < end:
        time.sleep(0.2)
    assert rig.worker.poll() is None, (
        f"flask worker exited ({rig.worker.returncode}) when Redis restarted:\n{rig.tail()}"
    )
    assert workers_registered(rig.conn), f"the worker did not register again with the restarted Redis:\n{rig.tail()}"
    # And it works: a job enqueued after the restart runs.
    rig.run(get_queue("mail", rig.conn).enqueue("workers.mail.send_mail", 10**9, job_timeout=30))


def test_worker_redis_restarted_while_idle_scheduled_retries_still_run(rig):
    queue = get_queue("mail", rig.conn)
    rig.run(queue.enqueue("workers.mail.send_mail", 10**9, job_timeout=30))
    time.sleep(1)
    # Idle: rq's dequeue loop waits for Redis and carries on; its scheduler process dies meanwhile.
    rig.restart_redis(down=4)
    rig.run(queue.enqueue("workers.mail.send_mail", 10**9, job_timeout=30))
    # A retry's way back: scheduled, then moved to its queue by the scheduler, within seconds.
    rig.run(queue.enqueue_in(timedelta(seconds=1), "workers.mail.send_mail", 10**9, job_timeout=30), timeout=30)


def test_an_idle_worker_told_to_stop_stops_and_is_not_replaced(rig):
    """SIGTERM to an idle worker is a stop, not an error to recover from: the process exits with its
    scheduler, and no new worker registers (``flask dev`` and service managers rely on it)."""
    time.sleep(1)  # idle, waiting for work
    os.kill(rig.worker.pid, signal.SIGTERM)
    assert rig.worker.wait(20) == 0, rig.tail()
    time.sleep(2)
    left = subprocess.run(["pgrep", "-g", str(rig.worker.pid)], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes left: {left}\n{rig.tail()}"
    assert workers_registered(rig.conn) == 0, rig.tail()
    assert "a new worker takes over" not in rig.tail()


def _running_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if _alive(int(p))]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_a_worker_that_lost_redis_mid_job_leaves_no_work_horse_and_stops_on_sigterm(rig_factory):
    """While Redis stays away after a worker quit mid-job: its work horse (its own process group) must
    not run on unowned, and a SIGTERM must stop the process cleanly (the quit worker's rq handlers
    wrote to Redis and raised, exit 1), as a service manager expects."""
    rig = rig_factory(mail_timeout=50)  # the horse waits up to 50 s for the silent server's greeting
    rig.start_busy_job(job_timeout=120)
    assert rig.server is not None
    os.killpg(rig.server.pid, signal.SIGKILL)  # Redis goes away and stays away
    rig.server.wait(10)
    rig.server = None
    end = time.monotonic() + 60
    while "lost Redis" not in rig.tail() and "quitting" not in rig.tail() and time.monotonic() < end:
        time.sleep(0.5)
    time.sleep(3)
    assert _running_children(rig.worker.pid) == [], f"the quit worker's work horse still runs:\n{rig.tail()}"
    os.kill(rig.worker.pid, signal.SIGTERM)
    assert rig.worker.wait(20) == 0, rig.tail()
