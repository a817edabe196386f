"""Dashboard at scale: the queue page and the dashboard counts with few and with many requests.

The large database is the small one (four months of work in every state) plus years of closed history:
what a busy platform accumulates. The pages must not slow down with that history (indexes, no full
scans); the recent workload itself is the same in both.

Served by gunicorn (2 workers) and timed over HTTP (median of repeated GETs after a warm-up), and the
SQL statements per page counted in-process, so an N+1 or a full scan shows as a count or a slope.
Target (issue 6): the large figures within 1.5x of the small ones.
"""

from __future__ import annotations

import random
import re
import statistics
import sys
import time
from datetime import timedelta

import requests

from bench.common import apply_env, bench_env, gunicorn, record, reset_database

PAGES = [
    "/admin/",
    "/admin/requests",
    "/admin/requests?status=pending_review&page=3",
    "/admin/requests?overdue=1",
    "/admin/requests?q=user17%40bench.test",
]
PASSWORD = "bench-password-123"  # noqa: S105 - local benchmark login


def seed_requests(n: int, rng: random.Random, days: tuple[float, float]) -> None:
    """``n`` requests received between ``days[0]`` and ``days[1]`` days ago."""
    from sqlalchemy import insert

    from app.dsr import deadlines
    from app.dsr.models import DsrRequest, new_reference
    from app.extensions import db
    from app.models_base import utcnow

    # Like a real register: requests older than two months are closed; recent ones in every state.
    closed_statuses = ["completed"] * 16 + ["denied", "denied", "cancelled", "expired"]
    recent_statuses = ["pending_review"] * 3 + ["completed"] * 3
    recent_statuses += ["approved", "in_progress", "on_hold", "denied", "cancelled", "expired", "failed", "unverified"]
    now = utcnow()
    batch = []
    refs: set[str] = set()
    for i in range(n):
        received = now - timedelta(days=rng.uniform(*days))
        status = rng.choice(closed_statuses if now - received > timedelta(days=60) else recent_statuses)
        jur = rng.choice(["gdpr", "gdpr", "ccpa", "other"])
        ref = new_reference()
        while ref in refs:
            ref = new_reference()
        refs.add(ref)
        due = deadlines.due_date(jur, received)
        closed = status in ("completed", "denied", "cancelled", "expired")
        batch.append(
            {
                "reference": ref,
                "request_type": rng.choice(["access", "correction", "deletion"]),
                "status": status,
                "email": f"user{i}@bench.test",
                "full_name": f"User {i}",
                "jurisdiction": jur,
                "details": "",
                "received_at": received,
                "verified_at": received,
                "due_at": due,
                "original_due_at": due,
                "closed_at": received + timedelta(days=rng.uniform(1, 40)) if closed else None,
                "decided_at": received + timedelta(days=1) if status not in ("pending_review", "unverified") else None,
                "updated_at": now,
                "paused_seconds": 0,
                "progress_percent": 0,
                "progress_rows": 0,
                "attempts": 0,
                "hold_pauses_clock": False,
            }
        )
        if len(batch) >= 10000:
            db.session.execute(insert(DsrRequest), batch)
            db.session.commit()
            batch.clear()
    if batch:
        db.session.execute(insert(DsrRequest), batch)
        db.session.commit()


def count_statements(path: str) -> int:
    """SQL statements one page issues (a fresh app, no outer app context, logged in as the bench admin)."""
    from sqlalchemy import event

    from app import create_app
    from app.extensions import db

    app = create_app({"RATELIMIT_ENABLED": False})
    with app.app_context():
        engines = list(db.engines.values())
    client = app.test_client()
    resp = client.get("/admin/login")
    page = resp.get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    if match is None:
        raise RuntimeError(f"no login form: {resp.status_code} {resp.headers.get('Location')} {page[:200]}")
    token = match.group(1)
    client.post("/admin/login", data={"email": "bench@bench.test", "password": PASSWORD, "csrf_token": token})
    seen = []

    def count(*_args):
        seen.append(1)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        client.get(path)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def time_pages(env: dict[str, str], reps: int) -> dict[str, float]:
    with gunicorn(env, workers=2) as base:
        sess = requests.Session()
        page = sess.get(base + "/admin/login", timeout=10).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        sess.post(
            base + "/admin/login",
            data={"email": "bench@bench.test", "password": PASSWORD, "csrf_token": token},
            timeout=30,
        )
        out = {}
        for path in PAGES:
            for _ in range(3):
                sess.get(base + path, timeout=60)
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                r = sess.get(base + path, timeout=60)
                times.append(time.perf_counter() - start)
                assert r.status_code == 200, (path, r.status_code)
            out[path] = statistics.median(times)
        return out


def main(small: int, large: int, reps: int) -> None:
    env = bench_env()
    apply_env(env)
    reset_database(env)
    from app import create_app
    from app.extensions import db
    from app.security import hash_password
    from app.staff.models import StaffUser

    app = create_app({"RATELIMIT_ENABLED": False})
    rng = random.Random(7)
    results = {}
    with app.app_context():
        db.session.add(StaffUser(email="bench@bench.test", role="admin", password_hash=hash_password(PASSWORD)))
        db.session.commit()
        seed_requests(small, rng, (0, 120))  # this year's workload
        results[small] = (time_pages(env, reps), {p: count_statements(p) for p in PAGES})
        seed_requests(large - small, rng, (180, 1800))  # years of closed history beside it
        results[large] = (time_pages(env, reps), {p: count_statements(p) for p in PAGES})
    rows = []
    worst = 0.0
    for path in PAGES:
        t_small, t_large = results[small][0][path], results[large][0][path]
        worst = max(worst, t_large / t_small)
        rows.append(
            [
                path,
                f"{t_small * 1000:.1f}",
                f"{t_large * 1000:.1f}",
                f"{t_large / t_small:.2f}x",
                results[small][1][path],
                results[large][1][path],
            ]
        )
    record(
        "Dashboard",
        env,
        ["page", f"{small:,} req ms", f"{large:,} req ms", "ratio", "SQL (small)", "SQL (large)"],
        rows,
        f"worst ratio {worst:.2f}x (target <= 1.5x) {'MET' if worst <= 1.5 else 'MISSED'}",
    )


def sizes(quick: bool) -> tuple[int, int, int]:
    return (1000, 20000, 10) if quick else (1000, 200000, 30)


if __name__ == "__main__":
    main(*sizes("--quick" in sys.argv))
