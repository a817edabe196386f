"""Intake under load: concurrent clients posting valid requests to gunicorn, loopback only.

Each client opens the form (cookie + CSRF token) and posts a valid access request, again and again,
for a fixed time; a trivial route (``/healthz``) is driven the same way on the same server as the
baseline. Afterwards every accepted request must be stored with its verification mail record.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
import time

import aiohttp

from bench.common import apply_env, bench_env, gunicorn, percentile, record, reset_database

TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


async def client(
    base: str, n: int, seconds: float, lat: list[float], errors: list[str], accepted: list[int], trivial: bool
) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=60)) as sess:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            i += 1
            try:
                if trivial:
                    start = time.perf_counter()
                    async with sess.get(base + "/healthz") as r:
                        await r.read()
                        ok = r.status == 200
                    lat.append(time.perf_counter() - start)
                else:
                    async with sess.get(base + "/requests/new") as r:
                        token = TOKEN.search(await r.text()).group(1)
                    data = {
                        "csrf_token": token,
                        "request_type": "access",
                        "email": f"load{n}-{i}@bench.test",
                        "full_name": f"Load {n}",
                        "jurisdiction": "gdpr",
                        "details": "load test",
                    }
                    start = time.perf_counter()
                    async with sess.post(base + "/requests/new", data=data) as r:
                        await r.read()
                        ok = r.status == 200
                    lat.append(time.perf_counter() - start)
                    if ok:
                        accepted.append(1)
                if not ok:
                    errors.append(str(r.status))
            except (TimeoutError, aiohttp.ClientError, AttributeError) as exc:
                errors.append(type(exc).__name__)


async def drive(base: str, clients: int, seconds: float, trivial: bool):
    lat: list[float] = []
    errors: list[str] = []
    accepted: list[int] = []
    await asyncio.gather(*(client(base, n, seconds, lat, errors, accepted, trivial) for n in range(clients)))
    return lat, errors, len(accepted)


def main(clients: int, seconds: float) -> None:
    env = bench_env()
    apply_env(env)
    reset_database(env)
    from sqlalchemy import func, select

    from app import create_app
    from app.dsr.models import DsrRequest
    from app.extensions import db
    from app.mail.models import OutgoingMail
    from app.queue import redis_url

    app = create_app()
    with app.app_context():
        env["REDIS_URL"] = redis_url()
    with gunicorn(env, workers=4) as base:
        t_lat, t_err, _ = asyncio.run(drive(base, clients, seconds, trivial=True))
        lat, err, accepted = asyncio.run(drive(base, clients, seconds, trivial=False))
    with app.app_context():
        stored = db.session.execute(select(func.count()).select_from(DsrRequest)).scalar_one()
        mails = db.session.execute(
            select(func.count(func.distinct(OutgoingMail.request_id))).where(OutgoingMail.template.like("%verif%"))
        ).scalar_one()
    rows = [
        [
            "GET /healthz (baseline)",
            len(t_lat),
            len(t_err),
            f"{statistics.median(t_lat) * 1000:.1f}",
            f"{percentile(t_lat, 99) * 1000:.1f}",
            f"{len(t_lat) / seconds:.0f}",
        ],
        [
            "POST /requests/new",
            len(lat),
            len(err),
            f"{statistics.median(lat) * 1000:.1f}",
            f"{percentile(lat, 99) * 1000:.1f}",
            f"{len(lat) / seconds:.0f}",
        ],
    ]
    ok = not err and stored == accepted and mails == accepted
    record(
        "Intake under load",
        env,
        ["route", "requests", "errors", "p50 ms", "p99 ms", "per s"],
        rows,
        f"{clients} clients x {seconds:.0f}s: accepted {accepted}, stored {stored}, with verification mail "
        f"{mails}; {'MET' if ok else 'MISSED'} (no errors, every accepted request stored with its mail)",
    )


def sizes(quick: bool) -> tuple[int, float]:
    return (20, 8.0) if quick else (50, 30.0)


if __name__ == "__main__":
    main(*sizes("--quick" in sys.argv))
