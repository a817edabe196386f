"""The portal while large downloads stream (issue 17): slow readers must not starve everyone else.

N clients each download a large package (hard links to one file) reading at a throttled rate, while M
clients use the portal (``GET /`` and their status page, one request a second each). Portal p50/p99 are
measured idle and under that load, with the requests that failed or timed out (refused), for:
- ``sync``: ``gunicorn -w 4`` with sync workers, the app streaming the file;
- ``gthread``: the README's deployment, the same 4 workers as ``--worker-class gthread --threads 16``;
- ``accel``: sync workers with ``DOWNLOAD_ACCEL=x-accel-redirect`` behind ``bench.front``, a one-process
  asyncio front server standing in for nginx (not installed here) that sends the file itself.
Afterwards the exports' download counts must equal their ``export.downloaded`` events, at least the
200s the clients saw and at most the downloads they asked for (the count comes before the first byte:
a client that gave up waiting for a worker is still counted once a worker answers it). Target: portal
p99 within 2x of idle, nothing refused, every download whole. ``make bench-quick`` runs gthread only.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from bench.common import ROOT, apply_env, bench_env, free_port, gunicorn, percentile, record, reset_database

PREFIX = "/_exports/"
THINK_SECONDS = 1.0  # between one portal client's requests
WARM_SECONDS = 2.0  # of portal traffic before the idle figures (first requests import and compile)
WORKERS = 4  # the README's gunicorn -w 4
SERVERS: dict[str, tuple[str, ...]] = {
    "sync": (),
    "gthread": ("--worker-class", "gthread", "--threads", "16"),
    "accel": (),
}


def seed(downloads: int, size_mb: int, portal_clients: int) -> tuple[list[str], list[str], list[int]]:
    """A ``size_mb`` package per downloader (one file, hard-linked) with its download link; a status
    link per portal client. Returns (download paths, status paths, export ids)."""
    from datetime import timedelta

    from app.dsr import services
    from app.dsr.models import DsrRequest, Export
    from app.extensions import db
    from app.models_base import utcnow
    from bench.bench_export import make_request

    export_dir = Path(os.environ["EXPORT_DIR"])
    export_dir.mkdir(parents=True, exist_ok=True)
    for old in export_dir.glob("bench-dl-*.zip"):
        old.unlink()
    big = export_dir / "bench-dl-source.zip"
    block = os.urandom(1 << 20)
    with open(big, "wb") as fh:
        for _ in range(size_mb):
            fh.write(block)
    links, ids = [], []
    for i in range(downloads):
        dsr = db.session.get(DsrRequest, make_request(f"dl{i}@bench.test", "access", status="completed"))
        name = f"bench-dl-{i}.zip"
        os.link(big, export_dir / name)
        expires = utcnow() + timedelta(days=7)
        export = Export(request_id=dsr.id, status="ready", filename=name, size_bytes=size_mb << 20, expires_at=expires)
        db.session.add(export)
        db.session.flush()
        raw = services.issue_token(dsr, "download", lifetime=timedelta(days=7), max_uses=5, export_id=export.id)
        links.append(f"/download/{raw}")
        ids.append(export.id)
    status = []
    for i in range(portal_clients):
        dsr = db.session.get(DsrRequest, make_request(f"portal{i}@bench.test", "access", status="pending_review"))
        raw = services.issue_token(dsr, "status")
        status.append(f"/requests/{dsr.reference}?token={raw}")
    db.session.commit()
    big.unlink()
    return links, status, ids


async def portal_client(base: str, link: str, until, lat: list[float], failed: list[str]) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)) as sess:
        page = link.split("?")[0]
        first = [link]  # the mailed link, traded for its cookie (then the page): a request like the others
        while not until():
            for path in (*first, "/", page):
                start = time.perf_counter()
                try:
                    async with sess.get(base + path) as r:
                        await r.read()
                        if r.status != 200:
                            failed.append(str(r.status))
                            continue
                    lat.append(time.perf_counter() - start)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    failed.append(type(exc).__name__)
            first = []
            await asyncio.sleep(THINK_SECONDS)


async def downloader(base: str, link: str, rate: float, expect: int, out: list[dict]) -> None:
    """Reads at ``rate`` bytes/s at most (sleeping ahead of the bytes); records what arrived."""
    jar = aiohttp.CookieJar(unsafe=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
    got, status, error = 0, 0, ""
    start = time.monotonic()
    try:
        async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as sess, sess.get(base + link) as r:
            status = r.status
            async for chunk in r.content.iter_chunked(1 << 16):
                got += len(chunk)
                ahead = got / rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    except (TimeoutError, aiohttp.ClientError) as exc:
        error = type(exc).__name__
    out.append({"status": status, "bytes": got, "whole": status == 200 and got == expect, "error": error})


async def measure(base: str, portal: list[str], seconds: float, links: list[str] | None, rate: float, size: int):
    """Portal latencies for ``seconds`` (idle), or while the downloads of ``links`` run."""
    lat: list[float] = []
    failed: list[str] = []
    done: list[dict] = []
    end = time.monotonic() + seconds
    if links is None:
        await asyncio.gather(*(portal_client(base, p, lambda: time.monotonic() > end, lat, failed) for p in portal))
        return lat, failed, done, seconds
    start = time.monotonic()
    finished = asyncio.Event()
    dl = asyncio.gather(*(downloader(base, link, rate, size, done) for link in links))
    users = asyncio.gather(*(portal_client(base, p, finished.is_set, lat, failed) for p in portal))
    await dl
    elapsed = time.monotonic() - start
    finished.set()
    await users
    return lat, failed, done, elapsed


def counted(ids: list[int]) -> tuple[int, int]:
    """(sum of the exports' download counts, export.downloaded events) as stored now."""
    from sqlalchemy import func, select

    from app.audit.models import AuditEvent
    from app.dsr.models import Export
    from app.extensions import db

    db.session.rollback()
    total = db.session.execute(select(func.sum(Export.download_count)).where(Export.id.in_(ids))).scalar_one()
    events = db.session.execute(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.event == "export.downloaded")
    ).scalar_one()
    return int(total or 0), int(events)


def front(env: dict[str, str], upstream: str):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.front", str(port), upstream, PREFIX, env["EXPORT_DIR"]],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    import requests

    for _ in range(100):
        try:
            requests.get(base + "/healthz", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.1)
    return proc, base


def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:.0f}" if values else "n/a"


def main(
    downloads: int, size_mb: int, rate_mb: float, portal_clients: int, idle_seconds: float, servers: tuple[str, ...]
) -> None:
    env = bench_env()
    apply_env(env)
    reset_database(env)
    from app import create_app
    from app.queue import redis_url

    app = create_app()
    with app.app_context():
        env["REDIS_URL"] = redis_url()
        links, portal, ids = seed(downloads, size_mb, portal_clients)
    size, rate = size_mb << 20, rate_mb * (1 << 20)
    rows, verdicts, answered, asked = [], [], 0, 0
    for name in servers:
        args = SERVERS[name]
        began = time.monotonic()
        run_env = dict(env)
        if name == "accel":
            run_env.update(DOWNLOAD_ACCEL="x-accel-redirect", DOWNLOAD_ACCEL_PREFIX=PREFIX)
        with gunicorn(run_env, WORKERS, args) as upstream:
            proc, base = front(run_env, upstream) if name == "accel" else (None, upstream)
            try:
                asyncio.run(measure(base, portal, WARM_SECONDS, None, rate, size))  # every worker warm
                idle, idle_failed, _, _ = asyncio.run(measure(base, portal, idle_seconds, None, rate, size))
                lat, failed, done, elapsed = asyncio.run(measure(base, portal, 0, links, rate, size))
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)
        answered += sum(1 for d in done if d["status"] == 200)
        asked += len(done)
        with app.app_context():
            total, events = counted(ids)
        whole = sum(1 for d in done if d["whole"])
        refused = len(idle_failed) + len(failed)
        p99_ratio = percentile(lat, 99) / percentile(idle, 99) if lat and idle else float("inf")
        # Counted before the first byte: a download the app answered counts even when the client had given
        # up waiting for a worker (it never sees the 200), so the count lies between the two.
        exact = total == events and answered <= total <= asked
        rows.append(
            [
                name,
                ms(idle, 50),
                ms(idle, 99),
                ms(lat, 50),
                ms(lat, 99),
                f"{p99_ratio:.2f}x",
                len(idle) + len(lat),
                refused,
                f"{whole}/{downloads}",
                f"{elapsed:.0f}",
                f"{total}/{events}/{answered}/{asked}",
            ]
        )
        met = p99_ratio <= 2 and refused == 0 and whole == downloads and exact
        verdicts.append(f"{name} {'MET' if met else 'MISSED'}")
        cut = [d["error"] for d in done if d["error"]][:3]
        print(
            f"{name} ({time.monotonic() - began:.0f}s): {rows[-1]} portal errors {sorted(set(failed))[:5]}, cut {cut}"
        )
    record(
        "Downloads under load",
        env,
        [
            "server",
            "portal p50 idle ms",
            "p99 idle ms",
            "p50 load ms",
            "p99 load ms",
            "p99 ratio",
            "portal requests",
            "refused",
            "downloads whole",
            "load s",
            "counted/audited/200s seen/asked",
        ],
        rows,
        f"{downloads} downloads x {size_mb} MB at {rate_mb:g} MB/s, {portal_clients} portal clients "
        f"(GET / and the status page, {THINK_SECONDS:g} s apart); target portal p99 <= 2x idle, nothing "
        f"refused, every download whole, counts and audit exact: {'; '.join(verdicts)}",
    )


def sizes(quick: bool) -> tuple[int, int, float, int, float, tuple[str, ...]]:
    """Quick: the README's deployment (gthread) only, to keep ``make bench-quick`` short; the full run
    compares all three."""
    return (6, 16, 1.0, 10, 3.0, ("gthread",)) if quick else (20, 100, 1.0, 50, 15.0, tuple(SERVERS))


if __name__ == "__main__":
    main(*sizes("--quick" in sys.argv))
