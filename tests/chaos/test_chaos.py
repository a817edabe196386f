"""Fault injection with real processes: requests keep their promises while the machinery breaks.

Submits, verifies (through the real emails) and approves a mix of access, deletion and correction
requests, then, while they run: SIGKILLs worker trees at random moments and restarts them, FLUSHALLs
Redis once while approved requests are queued, then restarts PostgreSQL (when the run has it: every
connection cut and new ones refused for a while) and SIGKILLs Redis and starts it again empty, stops the
SMTP sink for a while, cuts the export store's connections mid-upload (S3: moto's server behind a proxy)
until a package has failed all of its attempts, makes Stripe unreachable from a deletion's first erasing
call (its answer lost), and runs ``flask reconcile`` every few seconds as cron would. At the end every request
completed exactly once, every email went out exactly once (or, where a worker died between the SMTP
server's acceptance and our record of it, which no client can make atomic, a second time under the
same Message-ID with the interruption on the row), every export is a valid zip whose manifest matches
and is stored encrypted (and nothing else is stored), no deletion ran twice, and nothing a deletion
reports deleted at Stripe is still there. Sizes: ``CHAOS_REQUESTS``, ``CHAOS_KILLS``, ``CHAOS_SMTP_DOWN``,
``CHAOS_PG_DOWN``, ``CHAOS_REDIS_DOWN``, ``CHAOS_STRIPE_DOWN`` (seconds), ``CHAOS_STORE_CUTS``;
``make chaos`` runs the full size, the normal suite a reduced one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import secrets
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis
import requests

from tests.chaos.harness import Stack, button_form, form_with, missing_binaries, post_form

REQUESTS = int(os.environ.get("CHAOS_REQUESTS") or 8)
KILLS = int(os.environ.get("CHAOS_KILLS") or 3)
SMTP_DOWN = float(os.environ.get("CHAOS_SMTP_DOWN") or 8)
# The whole run stops by itself: the chaos window, then at most this long to converge.
SETTLE = float(os.environ.get("CHAOS_SETTLE") or (60 if REQUESTS > 10 else 40))
RECONCILE_EVERY = 2.0
# One heavy demo account, so an export or a deletion is still running when a kill lands.
USAGE_ROWS = int(os.environ.get("CHAOS_USAGE_ROWS") or (60_000 if REQUESTS > 10 else 20_000))
REF = re.compile(r"\bDSR-[A-Z0-9]{3,}(?:-[A-Z0-9]{3,})*\b")
KINDS = ("access", "deletion", "correction")
STORE_CUTS = int(os.environ.get("CHAOS_STORE_CUTS") or 4)
# PostgreSQL (when the run has one) cut and refusing for this long, as clients see a restart.
PG_DOWN = float(os.environ.get("CHAOS_PG_DOWN") or (8 if REQUESTS > 10 else 4))
# Redis SIGKILLed and started again (empty) after this long.
REDIS_DOWN = float(os.environ.get("CHAOS_REDIS_DOWN") or 2)
# Stripe unreachable for this long from the first erasing call a deletion makes (whose answer is lost).
STRIPE_DOWN = float(os.environ.get("CHAOS_STRIPE_DOWN") or (12 if REQUESTS > 10 else 6))
STRIPE_ERASE = re.compile(
    rb"^(?:DELETE /v1/(?:subscriptions|customers)/\S+|POST /v1/payment_methods/\S+/detach)[? ]", re.MULTILINE
)


class Scenario:
    def __init__(self, stack: Stack, rng: random.Random) -> None:
        self.s = stack
        self.rng = rng
        self.requests: list[dict] = []
        self.stop = threading.Event()
        self.approved_all = threading.Event()
        self.events: Counter = Counter()
        self.errors: list[str] = []  # reconcile runs that failed outside an outage
        self.broken: list[str] = []  # promises the faults themselves found broken
        # (what, start, end) on the monotonic clock: a cron run that fails inside one is expected.
        self.outages: list[tuple[str, float, float]] = []
        self.expected_failures = 0
        self.stripe_customers: dict[str, str] = {}

    # --- the subject ---------------------------------------------------------------------------------
    def submit(self, kind: str, email: str) -> dict:
        sess = requests.Session()
        page = sess.get(self.s.base + "/requests/new", timeout=30)
        form = form_with(page.text, "email", "request_type")
        fields = {
            "request_type": kind,
            "email": email,
            "full_name": "Chaos Subject",
            "jurisdiction": "gdpr",
            "details": "Fault-injection run.",
        }
        new_name = None
        if kind == "correction":
            new_name = f"Corrected {secrets.token_hex(3)}"
            fields.update({"correction-0-field": "name", "correction-0-value": new_name})
        r = post_form(sess, page, form, fields)
        assert r.status_code < 400, f"intake refused {kind} for {email}: {r.status_code}"
        return {"kind": kind, "email": email, "session": sess, "new_name": new_name}

    def verify(self, req: dict) -> None:
        link = self.s.sink.wait_link(req["email"], "/verify/", timeout=90)
        assert link, f"no verification email reached SMTP for {req['email']}"
        url = urlparse(link)
        sess = req["session"]
        page = sess.get(self.s.base + url.path + (f"?{url.query}" if url.query else ""), timeout=30)
        form = next((f for f in form_with_all(page.text) if (f.get("method") or "").lower() == "post"), None)
        if form is not None:
            page = post_form(sess, page, form, {})
        refs = REF.findall(page.text)
        assert refs, f"confirming {req['email']} showed no reference (status {page.status_code})"
        req["ref"] = refs[0]

    # --- the officer ---------------------------------------------------------------------------------
    def officer(self) -> requests.Session:
        email, password = f"chaos-officer-{secrets.token_hex(3)}@example.test", "Chaos-" + secrets.token_urlsafe(16)
        result = self.s.flask("staff", "create", email, "--role", "officer", "--password-stdin", stdin=password + "\n")
        assert result.returncode == 0, result.stderr[-2000:]
        sess = requests.Session()
        page = sess.get(self.s.base + "/admin/login", timeout=30)
        r = post_form(sess, page, form_with(page.text, "email", "password"), {"email": email, "password": password})
        assert r.status_code < 400 and "/admin/login" not in r.url, "officer could not log in"
        return sess

    def approve(self, officer: requests.Session, req: dict) -> None:
        url = f"{self.s.base}/admin/requests/{req['ref']}"
        page = officer.get(url, timeout=30)
        assert page.status_code == 200, f"{req['ref']}: detail page {page.status_code}"
        if req["kind"] == "correction":
            form = button_form(page.text, "decision", "approved")
            assert form is not None, f"{req['ref']}: no accept button for the proposed change"
            r = post_form(officer, page, form, {"action": "decide_item", "decision": "approved"})
            assert r.status_code < 400
            page = officer.get(url, timeout=30)
        form = button_form(page.text, "action", "approve")
        assert form is not None, f"{req['ref']}: no approve form on the detail page"
        extra = {"confirm_reference": req["ref"]} if req["kind"] == "deletion" else {}
        r = post_form(officer, page, form, {"action": "approve", **extra})
        assert r.status_code < 400, f"{req['ref']}: approve answered {r.status_code}"
        status = self.status(req["ref"])
        assert status in ("approved", "in_progress", "completed"), f"{req['ref']} is {status} after approve"

    def status(self, ref: str) -> str | None:
        rows = self.s.query(self.s.portal(), "select status from dsr_request where reference = :r", r=ref)
        return rows[0][0] if rows else None

    # --- the chaos -----------------------------------------------------------------------------------
    def chaos(self, window: float) -> None:
        """Kill, flush, cut SMTP and reconcile on a schedule inside ``window`` seconds."""
        start = time.monotonic()
        kill_at = sorted(self.rng.uniform(0.5, window) for _ in range(KILLS))
        smtp_back_at = start + SMTP_DOWN
        self.s.sink.stop()
        self.s.log(f"SMTP sink stopped for {SMTP_DOWN:.0f}s")
        # The export store fails mid-upload: the next STORE_CUTS connections that carry an upload die
        # part-way through its body (more than one upload's three attempts: a job fails and is retried).
        self.s.store.cuts_left = STORE_CUTS
        self.s.store.cut_after = 2048
        self.s.log(f"export store: the next {STORE_CUTS} uploads are cut mid-body")
        # Stripe goes away at the first call that erases something there; its answer is lost.
        self.s.stripe.trip_on = STRIPE_ERASE
        self.s.stripe.trip_seconds = STRIPE_DOWN
        flushed = False
        pg_at = redis_at = None
        # Cron runs reconcile on its own clock, whatever else is happening (a run can take seconds).
        cron = threading.Thread(target=self.cron, daemon=True)
        cron.start()
        while not self.stop.is_set():
            now = time.monotonic()
            if not self.s.sink.up and now >= smtp_back_at:
                self.s.sink.start()
                self.s.log("SMTP sink back")
            if not flushed and self.approved_all.is_set():
                self.s.redis.flushall()
                flushed = True
                self.events["flushall"] += 1
                self.s.log("Redis FLUSHALL with approved requests queued")
                # Then, while the jobs run, PostgreSQL restarts and Redis crashes and comes back empty.
                pg_at = now + self.rng.uniform(0.5, 2.5) if self.s.pg is not None else None
                redis_at = now + self.rng.uniform(4.0, 7.0)
            if pg_at is not None and now >= pg_at:
                pg_at = None
                self.restart_postgres()
            if redis_at is not None and now >= redis_at:
                redis_at = None
                self.restart_redis()
            if self.s.stripe.trips and not self.events["stripe_down"]:
                self.events["stripe_down"] += 1
                self.outages.append(("stripe", now, now + STRIPE_DOWN))
                self.s.log(f"Stripe unreachable for {STRIPE_DOWN:.0f}s from {self.s.stripe.trips[0]!r} (answer lost)")
            if kill_at and now - start >= kill_at[0] and self.s.workers:
                kill_at.pop(0)
                self.kill_one()
            time.sleep(0.1)
        cron.join(120)
        if not self.s.sink.up:
            self.s.sink.start()

    def cron(self) -> None:
        while not self.stop.wait(RECONCILE_EVERY):
            self.reconcile()

    def reconcile(self) -> None:
        """``flask reconcile`` as cron runs it; a run that fails while PostgreSQL or Redis is down is
        expected (the next run catches up), any other failure is a defect."""
        began = time.monotonic()
        ok, summary = self.s.reconcile()
        self.events["reconcile"] += 1
        if not ok:
            ended = time.monotonic()
            if any(what != "stripe" and a <= ended and began <= b + 1 for what, a, b in self.outages):
                self.expected_failures += 1
            else:
                self.errors.append(f"flask reconcile failed: {summary}")
        elif not summary.startswith("requests: 0, abandoned: 0, mail: 0"):
            self.s.log(f"reconcile: {summary}")

    def restart_postgres(self) -> None:
        """Every connection to PostgreSQL cut and new ones refused for PG_DOWN seconds (in the background)."""
        pg = self.s.pg
        assert pg is not None
        self.wait_for_work()
        now = time.monotonic()
        self.outages.append(("postgresql", now, now + PG_DOWN))
        threading.Thread(target=pg.down, args=(PG_DOWN,), daemon=True).start()
        self.events["pg_restart"] += 1
        running = self.s.query(self.s.portal(), "select count(*) from dsr_request where status = 'in_progress'")[0][0]
        self.s.log(f"PostgreSQL restarting: connections cut, refused for {PG_DOWN:.0f}s ({running} in progress)")

    def restart_redis(self) -> None:
        self.wait_for_work()
        now = time.monotonic()
        # Recorded before the kill: a cron run failing meanwhile is judged against it.
        self.outages.append(("redis", now, float("inf")))
        gone = self.s.restart_redis(REDIS_DOWN, meanwhile=self.start_worker_while_redis_is_down)
        self.outages[-1] = ("redis", now, now + gone)
        self.events["redis_restart"] += 1
        self.s.log(f"Redis SIGKILLed and started again empty on its port ({gone:.1f}s gone)")

    WAITING = "the worker starts once it answers"

    def start_worker_while_redis_is_down(self) -> None:
        """One more worker starts inside the outage (a host rebooted, a service manager's restart): it
        must wait for Redis, not exit. Redis stays down until it has tried (at most 30 s)."""
        log_file = self.s.work / "worker.log"
        before = log_file.read_text(errors="replace").count(self.WAITING)
        proc = self.s.start_worker()
        end = time.monotonic() + 30
        while time.monotonic() < end and proc.poll() is None:
            if log_file.read_text(errors="replace").count(self.WAITING) > before:
                self.events["worker_started_redis_down"] += 1
                self.s.log("a worker started while Redis was down; it waits for Redis")
                return
            time.sleep(0.1)
        self.broken.append(
            f"a worker started while Redis was down {'exited' if proc.poll() is not None else 'never tried Redis'}"
        )

    def wait_for_work(self, timeout: float = 2) -> None:
        """Prefer a moment when some job is running, so the fault lands mid-work."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with contextlib.suppress(redis.RedisError):
                if self.s.redis.keys("rq:wip:*"):
                    return
            time.sleep(0.05)

    def faults_pending(self) -> bool:
        return (
            self.events["kills"] < KILLS
            or not self.events["redis_restart"]
            or (self.s.pg is not None and not self.events["pg_restart"])
        )

    def kill_one(self) -> None:
        self.wait_for_work()
        victim = self.rng.choice(self.s.workers)
        running = self.s.query(self.s.portal(), "select count(*) from dsr_request where status = 'in_progress'")[0][0]
        killed = self.s.kill_worker(victim)
        self.events["kills"] += 1
        self.s.log(f"SIGKILL worker tree ({killed} processes; {running} requests in progress)")
        time.sleep(self.rng.uniform(0.2, 1.5))
        self.s.start_worker()

    def open_requests(self) -> list[str]:
        refs = [r["ref"] for r in self.requests]
        rows = self.s.query(self.s.portal(), "select reference, status from dsr_request")
        return [ref for ref, status in rows if ref in refs and status != "completed"]

    def unsent_mail(self) -> int:
        return self.s.query(self.s.portal(), "select count(*) from outgoing_mail where status != 'sent'")[0][0]

    def mail_mismatch(self) -> bool:
        ids = {r[0] for r in self.s.query(self.s.portal(), "select message_id from outgoing_mail")}
        seen = self.s.sink.message_ids()
        return set(seen) != ids


def form_with_all(html: str):
    from bs4 import BeautifulSoup

    return BeautifulSoup(html, "html.parser").find_all("form")


def plan(rng: random.Random, accounts: list[str], n: int) -> list[tuple[str, str]]:
    """``n`` (kind, email) pairs: every kind, demo accounts first, then unknown emails; no email twice."""
    emails = list(accounts)
    rng.shuffle(emails)
    unknown = max(2, n // 4)
    known = emails[: max(0, n - unknown)]
    emails = known + [f"unknown-{secrets.token_hex(4)}@example.test" for _ in range(n - len(known))]
    return [(KINDS[i % len(KINDS)], email) for i, email in enumerate(emails)]


def check_export(stack: Stack, req: dict, problems: list[str]) -> None:
    links = stack.sink.links(req["email"], "/download/")
    if len(links) != 1:
        problems.append(f"{req['ref']}: {len(links)} download links emailed, expected 1")
        return
    url = urlparse(links[0])
    r = requests.get(stack.base + url.path + (f"?{url.query}" if url.query else ""), timeout=120)
    if r.status_code != 200 or r.content[:2] != b"PK":
        problems.append(f"{req['ref']}: download answered {r.status_code}, not a zip")
        return
    try:
        z = zipfile.ZipFile(io.BytesIO(r.content))
        bad = z.testzip()
        manifest = json.loads(z.read("manifest.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        problems.append(f"{req['ref']}: invalid export zip ({exc})")
        return
    if bad:
        problems.append(f"{req['ref']}: corrupt member {bad}")
    files = manifest.get("files") or []
    if not files or manifest.get("request_reference") != req["ref"]:
        problems.append(f"{req['ref']}: manifest lists no files or the wrong reference")
    names = set(z.namelist())
    for entry in files:
        if entry["name"] not in names:
            problems.append(f"{req['ref']}: manifest names {entry['name']}, missing from the zip")
        elif hashlib.sha256(z.read(entry["name"])).hexdigest() != entry.get("sha256"):
            problems.append(f"{req['ref']}: sha256 of {entry['name']} does not match the manifest")


def job_state(stack: Stack, job_id: str) -> str:
    """What rq says about a job, for the failure report."""
    from rq import Worker
    from rq.exceptions import NoSuchJobError

    from app.queue import SERIALIZER, fetch_job

    try:
        job = fetch_job(job_id, stack.redis)
    except NoSuchJobError:
        return f"{job_id}: no job in Redis"
    worker = None
    if job.worker_name:
        worker = Worker.find_by_key(
            Worker.redis_worker_namespace_prefix + job.worker_name, connection=stack.redis, serializer=SERIALIZER
        )
    alive = worker is not None and worker.pid and Path(f"/proc/{worker.pid}").exists()
    return (
        f"{job_id}: {job.get_status()}, worker {job.worker_name or '-'} "
        f"({'registered' if worker else 'unregistered'}, pid {getattr(worker, 'pid', None)} "
        f"{'alive' if alive else 'dead'}), started {job.started_at}, heartbeat {job.last_heartbeat}"
    )


def workers_state(stack: Stack) -> str:
    """The worker processes as the harness sees them, rq's worker registry, and the end of their log."""
    from rq import Worker

    from app.queue import SERIALIZER

    procs = ", ".join(f"{p.pid} {'alive' if p.poll() is None else f'exited {p.returncode}'}" for p in stack.workers)
    try:
        registered = [f"{w.name} pid {w.pid} {w.get_state()}" for w in Worker.all(stack.redis, serializer=SERIALIZER)]
    except redis.RedisError as exc:
        registered = [f"Redis: {exc}"]
    log_file = stack.work / "worker.log"
    tail = log_file.read_text(errors="replace").splitlines()[-60:] if log_file.exists() else []
    return f"worker processes: {procs or 'none'}; rq workers: {registered or 'none'}; worker.log ends:\n" + "\n".join(
        "      " + line for line in tail
    )


def judge(scenario: Scenario) -> list[str]:
    s = scenario.s
    problems: list[str] = []
    by_ref = {r["ref"]: r for r in scenario.requests}
    rows = s.query(s.portal(), "select id, reference, status, last_error from dsr_request")
    status = {ref: (st, err) for _id, ref, st, err in rows if ref in by_ref}
    # A deletion may end failed, with staff alerted, when Stripe stayed away past its last retry: that
    # is a true outcome (nothing is reported deleted), not a lost request. Anything else must complete.
    gave_up = {
        ref
        for ref, (st, err) in status.items()
        if by_ref[ref]["kind"] == "deletion"
        and st == "failed"
        and (err or "").startswith("BillingTransient")
        and "will retry" not in err
    }
    for ref in sorted(gave_up):
        s.log(f"{ref}: failed after its last retry with Stripe unreachable ({status[ref][1][:120]})")
        alerts = s.query(
            s.portal(),
            "select count(*) from outgoing_mail m join dsr_request d on d.id = m.request_id "
            "where d.reference = :r and m.template = 'fulfil_staff_alert'",
            r=ref,
        )[0][0]
        if not alerts:
            problems.append(f"{ref}: failed with Stripe unreachable, and no staff member was alerted")
    for ref, req in by_ref.items():
        st, err = status.get(ref, (None, None))
        if st != "completed" and ref not in gave_up:
            ids = [i for i, r, *_ in rows if r == ref]
            problems.append(
                f"{ref} ({req['kind']}, {req['email']}): {st}, not completed; last error: {err}; "
                + (job_state(s, f"fulfil-{ids[0]}") if ids else "no row")
            )
    events = s.query(
        s.portal(), "select request_reference, data from audit_event where event = 'request.status_changed'"
    )
    completions: Counter = Counter()
    for ref, data in events:
        data = json.loads(data) if isinstance(data, str) else (data or {})
        if ref in by_ref and data.get("to") == "completed":
            completions[ref] += 1
    for ref in by_ref:
        expected = 0 if ref in gave_up else 1
        if completions[ref] != expected:
            problems.append(f"{ref}: {completions[ref]} audit events changing it to completed, expected {expected}")

    mail = s.query(
        s.portal(),
        "select id, message_id, status, to_addr, template, last_error, interrupted_sends from outgoing_mail",
    )
    seen = s.sink.message_ids()
    resent = 0
    for mail_id, mid, st, to, template, err, interrupted in mail:
        if st != "sent":
            problems.append(f"mail {template} to {to}: {st} ({err}); {job_state(s, f'mail-{mail_id}')}")
        # Exactly once, except where a worker was killed between the server's acceptance and our
        # record of it: no SMTP client can know whether that attempt landed, so the message is sent
        # again under the same Message-ID, and the row says it was interrupted. A copy without that
        # record is a real double send.
        if seen[mid] == 0 or seen[mid] > 1 + interrupted:
            problems.append(
                f"mail {template} to {to}: delivered {seen[mid]} times, expected once"
                + (f" ({interrupted} interrupted attempts)" if interrupted else "")
            )
        elif seen[mid] > 1:
            resent += 1
    if resent:
        s.log(f"{resent} messages reached the sink twice after a kill between SMTP acceptance and its record")
    if resent > scenario.events["kills"]:
        problems.append(
            f"{resent} messages resent after interrupted sends, more than the {scenario.events['kills']} kills"
        )
    unknown = set(seen) - {m[1] for m in mail}
    if unknown:
        problems.append(f"the sink got {len(unknown)} messages no OutgoingMail row accounts for")

    problems.extend(judge_store(scenario))
    problems.extend(judge_stripe(scenario, status))
    for req in scenario.requests:
        if req["kind"] == "access" and status.get(req["ref"], (None,))[0] == "completed":
            outcome = s.query(s.portal(), "select outcome from dsr_request where reference = :r", r=req["ref"])[0][0]
            if outcome == "no_data":  # nothing held about the address: told so, and no empty package
                if s.sink.links(req["email"], "/download/"):
                    problems.append(f"{req['ref']}: a download link for a person we hold nothing about")
            else:
                check_export(s, req, problems)
        if req["kind"] == "deletion":
            left = s.platform_mentions(req["email"])
            if left and req["ref"] not in gave_up:
                problems.append(f"{req['ref']}: {req['email']} still in platform tables {left}")
            reports = s.query(
                s.portal(),
                "select count(*) from outgoing_mail m join dsr_request d on d.id = m.request_id "
                "where d.reference = :r and m.template = 'fulfil_deletion_report'",
                r=req["ref"],
            )[0][0]
            expected = 0 if req["ref"] in gave_up else 1
            if reports != expected:
                problems.append(f"{req['ref']}: {reports} deletion reports, expected {expected}")
        if req["kind"] == "correction" and not req["email"].startswith("unknown-"):
            names = s.query(s.platform(), "select name from platform_account where email = :e", e=req["email"])
            if names and names[0][0] != req["new_name"]:
                problems.append(f"{req['ref']}: account name is {names[0][0]!r}, not {req['new_name']!r}")
    return problems


def judge_store(scenario: Scenario) -> list[str]:
    """Exactly the ready packages are stored, each complete and encrypted, with no upload left open;
    and the store really failed mid-upload when there was a package to upload."""
    s = scenario.s
    problems: list[str] = []
    client = s.s3()
    stored = {o["Key"]: o["Size"] for o in client.list_objects_v2(Bucket=s.bucket).get("Contents", [])}
    ready = {f"chaos/{name}": size for name, size in s.query(
        s.portal(), "select filename, size_bytes from export where status = 'ready'")}  # fmt: skip
    if stored != ready:
        problems.append(f"the store holds {sorted(stored)}, the ready exports are {sorted(ready)}")
    for key in stored:
        if client.head_object(Bucket=s.bucket, Key=key).get("ServerSideEncryption") != "AES256":
            problems.append(f"{key} is stored without server-side encryption")
    uploads = client.list_multipart_uploads(Bucket=s.bucket).get("Uploads", [])
    if uploads:
        problems.append(f"{len(uploads)} multipart uploads left open")
    s.log(f"export store: {s.store.cuts} uploads cut mid-body, {len(stored)} packages stored")
    if ready and s.store.cuts < min(STORE_CUTS, 3):
        problems.append(f"only {s.store.cuts} uploads were cut (wanted {STORE_CUTS}): the store fault never landed")
    return problems


def judge_stripe(scenario: Scenario, status: dict[str, tuple[str, str]]) -> list[str]:
    """Nothing is reported deleted at Stripe that localstripe (read directly) still holds, a completed
    deletion of a subject with a customer reports that customer deleted, and Stripe really went away
    during a deletion when one had a customer to delete."""
    s = scenario.s
    problems: list[str] = []
    with_customer = 0
    for req in scenario.requests:
        if req["kind"] != "deletion":
            continue
        ref, cid = req["ref"], scenario.stripe_customers.get(req["email"])
        with_customer += bool(cid)
        report = s.query(s.portal(), "select report from dsr_request where reference = :r", r=ref)[0][0]
        report = json.loads(report) if isinstance(report, str) else (report or {})
        billing = [i for i in report.get("items", []) if i.get("category") == "billing"]
        targets = (report.get("state") or {}).get("stripe_targets") or {}
        if any(i["action"] == "deleted" for i in billing):
            for oid in targets.get("customers", []):
                cust = s.stripe_get(f"customers/{oid}")
                if cust is not None and not cust.get("deleted"):
                    problems.append(f"{ref}: reports Stripe customer {oid} deleted; Stripe still holds it")
            for oid in targets.get("subscriptions", []):
                sub = s.stripe_get(f"subscriptions/{oid}")
                if sub is not None and sub.get("status") not in ("canceled", "incomplete_expired"):
                    problems.append(f"{ref}: reports subscription {oid} cancelled; Stripe says {sub.get('status')}")
            for oid in targets.get("payment_methods", []):
                pm = s.stripe_get(f"payment_methods/{oid}")
                if pm is not None and pm.get("customer"):
                    problems.append(f"{ref}: reports payment method {oid} removed; still attached at Stripe")
        if cid and status.get(ref, (None,))[0] == "completed":
            cust = s.stripe_get(f"customers/{cid}")
            if cid not in targets.get("customers", []) or not any(i["action"] == "deleted" for i in billing):
                problems.append(f"{ref}: completed, but its report does not say Stripe customer {cid} was deleted")
            if cust is not None and not cust.get("deleted"):
                problems.append(f"{ref}: completed, but Stripe still holds customer {cid}")
    s.log(f"Stripe: {len(s.stripe.trips)} outages ({s.stripe.trips}), {with_customer} deletions had a customer")
    if with_customer and not s.stripe.trips:
        problems.append("no deletion's Stripe call was cut: the Stripe fault never landed")
    return problems


@pytest.mark.chaos
def test_requests_survive_kills_restarts_and_outages():
    missing = missing_binaries()
    if missing:
        print(f"chaos run skipped: missing {', '.join(missing)}")
        pytest.skip(f"missing {', '.join(missing)}")
    seed = int(os.environ.get("CHAOS_SEED") or secrets.randbits(32))
    rng = random.Random(seed)
    started = time.monotonic()
    stack = Stack()
    stack.log(f"seed {seed}: {REQUESTS} requests, {KILLS} kills, SMTP down {SMTP_DOWN:.0f}s; files in {stack.work}")
    scenario = Scenario(stack, rng)
    chaos_thread = None
    try:
        stack.start(usage_rows=USAGE_ROWS)
        accounts = [row[0] for row in stack.query(stack.platform(), "select email from platform_account order by id")]
        # Subjects of seeded demo requests already have one open: a new one of the same kind joins it (and
        # gets its status link, not a confirmation link), which is not what this run measures.
        seeded = {row[0] for row in stack.query(stack.portal(), "select email from dsr_request where demo")}
        accounts = [a for a in accounts if a not in seeded]
        scenario.stripe_customers = {
            email: cid
            for email, cid in stack.query(stack.platform(), "select email, stripe_customer_id from platform_account")
            if cid
        }
        officer = scenario.officer()
        for kind, email in plan(rng, accounts, REQUESTS):
            scenario.requests.append(scenario.submit(kind, email))
        for req in scenario.requests:
            scenario.verify(req)
        stack.log(f"{len(scenario.requests)} requests submitted and verified ({time.monotonic() - started:.0f}s)")
        window = max(SMTP_DOWN, 4.0 * KILLS) + 2
        chaos_thread = threading.Thread(target=scenario.chaos, args=(window,), daemon=True)
        chaos_thread.start()
        for req in scenario.requests:
            scenario.approve(officer, req)
        scenario.approved_all.set()
        stack.log(f"all approved ({time.monotonic() - started:.0f}s)")
        chaos_end = time.monotonic() + window
        deadline = chaos_end + SETTLE
        while time.monotonic() < deadline:
            if (
                time.monotonic() >= chaos_end
                and not scenario.faults_pending()
                and not scenario.open_requests()
                and not scenario.unsent_mail()
                and not scenario.mail_mismatch()
            ):
                break
            time.sleep(0.5)
        scenario.stop.set()
        chaos_thread.join(60)
        time.sleep(1)  # a last message in flight reaches the sink
        problems = judge(scenario)
        if scenario.errors:
            problems.append(f"{len(scenario.errors)} reconcile runs failed; last: {scenario.errors[-1]}")
        problems.extend(scenario.broken)
        if scenario.events["kills"] < KILLS:
            problems.append(f"only {scenario.events['kills']} of {KILLS} kills happened")
        if scenario.events["flushall"] != 1:
            problems.append("Redis was not flushed")
        if scenario.events["redis_restart"] != 1:
            problems.append("Redis was not restarted")
        if scenario.events["worker_started_redis_down"] != 1:
            problems.append("no worker was started while Redis was down")
        if stack.pg is not None and scenario.events["pg_restart"] != 1:
            problems.append("PostgreSQL was not restarted")
        elapsed = time.monotonic() - started
        stack.log(
            f"done in {elapsed:.0f}s: {scenario.events['kills']} kills, {scenario.events['flushall']} flush, "
            f"{scenario.events['redis_restart']} Redis restart, {scenario.events['pg_restart']} PostgreSQL restart, "
            f"{len(stack.stripe.trips)} Stripe outage, {scenario.events['reconcile']} reconcile runs "
            f"({scenario.expected_failures} failed during an outage), {len(stack.sink.snapshot())} messages delivered"
        )
        if problems:
            problems.append(workers_state(stack))
            report = "\n".join(f"  - {p}" for p in problems)
            pytest.fail(f"chaos run (seed {seed}) broke a promise:\n{report}", pytrace=False)
    finally:
        scenario.stop.set()
        if chaos_thread is not None:
            chaos_thread.join(60)
        stack.stop()
