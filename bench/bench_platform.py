"""Export, deletion and the retention sweep on the platform as it really is (``bench.platform_data``).

Each figure is printed beside a baseline measured in the same run on the same table:
- Retention sweep: the product's daily job against one raw ``DELETE ... WHERE created_at < cutoff`` on a
  copy of the table; a concurrent writer inserts usage rows throughout the product's sweep (its p99 beside
  idle). Targets: <= 1.5x, no transaction over ~1 s, no insert waiting over 1 s.
- Export: seconds from the approval commit to the link reaching the SMTP server, rows/s and the work
  horse's peak memory, against COPY (PostgreSQL) / a cursor into csv (SQLite) of the same rows into one
  deflated zip member. Targets: PostgreSQL <= 1.5x, SQLite <= 2x, < 150 MB and flat.
- Deletion of the same subject: against one raw DELETE of a twin's rows laid out the same way; intake
  p99 while it runs beside idle. Targets: <= 1.5x, no transaction over ~1 s, intake p99 within 2x.
Sizes: ``BENCH_TOTAL_ROWS`` (20M; quick 1M), ``BENCH_ACCOUNTS`` (20k; quick 2k), ``BENCH_HEAVY_ROWS``
(100k,1M,2M; quick 100k).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.bench_export import make_request
from bench.child import RECHECK
from bench.common import (
    ROOT,
    apply_env,
    bench_env,
    database_kind,
    gunicorn,
    percentile,
    ratio,
    record,
    reset_database,
    run_child,
)


class Inbox:
    """An aiosmtpd server that notes when each message arrived."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.arrivals: list[tuple[float, bytes]] = []

        inbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
                inbox.arrivals.append((time.time(), envelope.content))
                return "250 OK"

        from bench.common import free_port

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def wait_for(self, needle: bytes, after: float, timeout: float = 600) -> float:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for when, content in self.arrivals:
                if when >= after and needle in content:
                    return when
            time.sleep(0.02)
        raise RuntimeError(f"no mail containing {needle!r} within {timeout} s")

    def stop(self) -> None:
        self.controller.stop()


def _copy_table(app) -> None:
    """bench_usage_copy: platform_usage with the same rows and indexes, for the raw-DELETE baseline."""
    from app.extensions import db

    engine = db.engines["platform"]
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_usage_copy")
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("CREATE TABLE bench_usage_copy (LIKE platform_usage INCLUDING ALL)")
            conn.exec_driver_sql("INSERT INTO bench_usage_copy SELECT * FROM platform_usage ORDER BY id")
        else:
            ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'platform_usage'").scalar_one()
            conn.exec_driver_sql(ddl.replace("platform_usage", "bench_usage_copy", 1))
            conn.exec_driver_sql("INSERT INTO bench_usage_copy SELECT * FROM platform_usage ORDER BY id")
            for (sql,) in conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'platform_usage' AND sql IS NOT NULL"
            ).all():
                conn.exec_driver_sql(
                    sql.replace("ix_platform_usage", "ix_bench_copy").replace("platform_usage", "bench_usage_copy")
                )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE bench_usage_copy")


def _drop_copy() -> None:
    from app.extensions import db

    with db.engines["platform"].begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_usage_copy")


def _writer_during(env: dict[str, str], work) -> tuple[dict, object]:
    """Run ``work()`` while a writer process inserts usage rows; returns (writer figures, work's result)."""
    with tempfile.TemporaryDirectory() as tmp:
        stop = Path(tmp) / "stop"
        out = Path(tmp) / "writer.json"
        with out.open("w") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.child", "writer", str(stop)], env=env, cwd=ROOT, stdout=fh
            )
            time.sleep(2)  # the writer's app is up and inserting
            try:
                result = work()
            finally:
                stop.touch()
                proc.wait(60)
        import json

        return json.loads(out.read_text().strip().splitlines()[-1]), result


def main(total_rows: int, accounts: int, heavy_sizes: list[int]) -> None:
    env = bench_env()
    apply_env(env)
    reset_database(env)
    from app import create_app
    from app.queue import get_redis, redis_url
    from bench.platform_data import build

    app = create_app()
    kind = database_kind(env)
    with app.app_context():
        env["REDIS_URL"] = redis_url()
        get_redis().flushdb()
        plat = build(total_rows, accounts, heavy_sizes)
        print(
            f"platform: {total_rows:,} usage rows, {accounts:,} accounts, heavy {heavy_sizes} (+ twins), "
            f"{plat.old_rows:,} past retention; loaded in {plat.load_seconds:.0f}s",
            flush=True,
        )

        # 1. Retention sweep, beside one raw DELETE on an identical copy.
        _copy_table(app)
        base = run_child(env, "sweep-baseline", "bench_usage_copy")
        _drop_copy()
        idle, _ = _writer_during(env, lambda: time.sleep(5))
        during, prod = _writer_during(env, lambda: run_child(env, "sweep"))
        assert prod["usage_rows_deleted"] == base["rows"] == plat.old_rows, (prod, base, plat.old_rows)
        print(
            f"sweep: longest transaction {prod['longest_tx']:.2f}s, its slowest statements "
            f"{prod['longest_tx_statements']}, its longest idle gap {prod['longest_tx_idle']}; seconds in "
            f"statements by kind {prod['statement_seconds']}"
        )
        rows = [
            [
                f"{total_rows:,}",
                f"{base['rows']:,}",
                f"{base['seconds']:.2f}",
                f"{prod['seconds']:.2f}",
                ratio(prod["seconds"], base["seconds"]),
                f"{prod['longest_tx']:.2f}",
                f"{idle['p99_ms']:.1f}",
                f"{during['p99_ms']:.1f}",
                f"{during['max_ms']:.0f}",
            ]
        ]
        r = prod["seconds"] / base["seconds"]
        verdict = (
            f"sweep: {r:.2f}x one raw DELETE (target <= 1.5x) {'MET' if r <= 1.5 else 'MISSED'}; longest "
            f"transaction {prod['longest_tx']:.2f}s (target ~1s) {'MET' if prod['longest_tx'] <= 1.2 else 'MISSED'}; "
            f"writer's longest insert {during['max_ms']:.0f} ms (target < 1000) "
            f"{'MET' if during['max_ms'] < 1000 else 'MISSED'}"
        )
        record(
            "Platform retention sweep",
            env,
            [
                "table rows",
                "rows past 12 months",
                "raw DELETE s",
                "sweep s",
                "ratio",
                "longest tx s",
                "insert p99 idle ms",
                "insert p99 sweep ms",
                "insert max ms",
            ],
            rows,
            verdict,
        )

        # 2. Export, approval to the link in the inbox, beside COPY of the same rows.
        inbox = Inbox()
        env_mail = dict(env, MAIL_SERVER="127.0.0.1", MAIL_PORT=str(inbox.port), MAIL_USE_TLS="false")
        export_rows, peaks = [], []
        target = 1.5 if kind == "postgresql" else 2.0
        try:
            for n in heavy_sizes:
                email = f"heavy{n}@platform.test"
                baseline = run_child(env, "export-baseline", str(plat.heavy[n]))
                assert baseline["rows"] == n, baseline
                request_id = make_request(email, "access", status="pending_review")
                prod = run_child(env_mail, "export-e2e", str(request_id))
                assert prod["status"] == "completed", prod
                arrived = inbox.wait_for(b"/download/", prod["committed"])
                seconds = arrived - prod["committed"]
                peaks.append(prod["horse_peak_mb"])
                export_rows.append(
                    [
                        f"{n:,}",
                        f"{baseline['seconds']:.2f}",
                        f"{seconds:.2f}",
                        ratio(seconds, baseline["seconds"]),
                        f"{n / seconds:,.0f}",
                        baseline["peak_mb"],
                        prod["horse_peak_mb"],
                    ]
                )
        finally:
            inbox.stop()
        worst = max(float(r[3].rstrip("x")) for r in export_rows)
        flat = max(peaks) < 150 and max(peaks) - min(peaks) < 30
        record(
            "Platform export (approval to link in the inbox)",
            env,
            ["subject rows", "COPY/csv s", "approval->mail s", "ratio", "rows/s", "baseline MB", "work horse MB"],
            export_rows,
            f"export: worst {worst:.2f}x (target <= {target}x) {'MET' if worst <= target else 'MISSED'}; "
            f"peak {min(peaks)}-{max(peaks)} MB (target < 150, flat) {'MET' if flat else 'MISSED'}",
        )

    # 3. Deletion of the same subjects, beside one raw DELETE of their twins; intake p99 beside idle.
    from bench.bench_intake import drive
    from bench.contention import Contention

    erase_rows, profiles, breakdown = [], [], []
    with gunicorn(env, workers=2) as base_url:
        with Contention(base_url, env["DATABASE_URL"], env.get("PLATFORM_DATABASE_URL")) as probe:
            idle_lat, idle_err, _ = asyncio.run(drive(base_url, 4, 10, trivial=False))
        profiles.append(["intake alone", *probe.figures().values()])
        with app.app_context():
            for n in heavy_sizes:
                # The twin's rows are read once, untimed, before its raw DELETE, as the subject's are by
                # the approval's plan (make_request) before the erasure: both start from a warm read.
                before = run_child(env, "settle", str(plat.twins[n]))
                dbase = run_child(env, "erase-baseline", str(plat.twins[n]))
                assert dbase["rows"] == n, dbase
                settled = run_child(env, "settle", str(plat.twins[n]))  # its cleanup is not the erasure's
                request_id = make_request(f"heavy{n}@platform.test", "deletion", status="approved")
                box: dict = {}

                def work(request_id=request_id):
                    return run_child(env, "erase", str(request_id))

                done = threading.Event()

                def load(box=box, done=done):
                    async def until_done():
                        from bench.bench_intake import client

                        lat: list[float] = []
                        err: list[str] = []
                        acc: list[int] = []
                        tasks = [
                            asyncio.create_task(client(base_url, 100 + k, 3600, lat, err, acc, False)) for k in range(4)
                        ]
                        while not done.is_set():
                            await asyncio.sleep(0.1)
                        for t in tasks:
                            t.cancel()
                        await asyncio.gather(*tasks, return_exceptions=True)
                        box["lat"], box["err"] = lat, err

                    asyncio.run(until_done())

                thread = threading.Thread(target=load)
                thread.start()
                time.sleep(1)
                try:
                    with Contention(base_url, env["DATABASE_URL"], env.get("PLATFORM_DATABASE_URL")) as probe:
                        dprod = work()
                finally:
                    done.set()
                    thread.join(60)
                profiles.append([f"intake + erasure of {n:,}", *probe.figures().values()])
                assert dprod["status"] == "completed", dprod
                after = run_child(env, "settle", str(plat.heavy[n]))  # nor the next raw DELETE's
                kinds = dprod["statement_seconds"]
                first_kind = "WITH gone" if kind == "postgresql" else "DELETE FROM"  # a batch's statement
                breakdown.append(
                    [
                        f"{n:,}",
                        f"{kinds.get('SELECT count(*)', 0):.2f}",
                        f"{kinds.get(first_kind, 0):.2f}",
                        f"{kinds.get(first_kind + RECHECK, 0):.2f}",
                        f"{kinds.get('COMMIT', 0):.2f}",
                        f"{before['seconds']:.2f} / {settled['seconds']:.2f} / {after['seconds']:.2f}",
                    ]
                )
                print(
                    f"erase {n:,}: longest transaction {dprod['longest_tx']:.2f}s, its slowest statements "
                    f"{dprod['longest_tx_statements']}, its longest idle gap {dprod['longest_tx_idle']}; "
                    f"seconds in statements by kind {dprod['statement_seconds']}"
                )
                lat = box.get("lat") or [0.0]
                erase_rows.append(
                    [
                        f"{n:,}",
                        f"{dbase['seconds']:.2f}",
                        f"{dprod['seconds']:.2f}",
                        ratio(dprod["seconds"], dbase["seconds"]),
                        f"{dprod['longest_tx']:.2f}",
                        f"{percentile(idle_lat, 99) * 1000:.0f}",
                        f"{percentile(lat, 99) * 1000:.0f}",
                        len(box.get("err") or []),
                    ]
                )
    dworst = max(float(r[3].rstrip("x")) for r in erase_rows)
    longest = max(float(r[4]) for r in erase_rows)
    intake = max(float(r[6]) / max(float(r[5]), 1) for r in erase_rows)
    record(
        "Platform deletion",
        env,
        [
            "subject rows",
            "raw DELETE s",
            "erase s",
            "ratio",
            "longest tx s",
            "intake p99 idle ms",
            "intake p99 during ms",
            "intake errors",
        ],
        erase_rows,
        f"deletion: worst {dworst:.2f}x (target <= 1.5x) {'MET' if dworst <= 1.5 else 'MISSED'}; longest transaction "
        f"{longest:.2f}s (target ~1s) {'MET' if longest <= 1.2 else 'MISSED'}; intake p99 {intake:.2f}x idle "
        f"(target <= 2x) {'MET' if intake <= 2 else 'MISSED'}",
    )
    record(
        "Platform deletion: the erasure's seconds by statement kind, and the untimed page reads",
        env,
        [
            "subject rows",
            "count s",
            "first-pass deletes s",
            "re-check s",
            "commits s",
            "untimed read before raw / after raw / after erasure s",
        ],
        breakdown,
        "beside the raw DELETE above; the untimed reads are bench.child settle (PostgreSQL only)",
    )
    record(
        "Platform deletion: where the intake's time goes (bench.contention)",
        env,
        [
            "load",
            "cpu busy",
            "run queue",
            "healthz p50/p99 ms",
            "commit p50/p99 ms",
            "other backends wait",
            "job backends wait",
        ],
        profiles,
        "healthz is the web tier without the database, commit the database without the web tier",
    )


def sizes(quick: bool) -> tuple[int, int, list[int]]:
    """Table rows, accounts and the heavy subjects' rows; ``BENCH_HEAVY_ROWS`` (comma-separated) for a probe."""
    heavy = [int(n) for n in os.environ["BENCH_HEAVY_ROWS"].split(",")] if os.environ.get("BENCH_HEAVY_ROWS") else None
    if quick:
        return (
            int(os.environ.get("BENCH_TOTAL_ROWS", 1_000_000)),
            int(os.environ.get("BENCH_ACCOUNTS", 2_000)),
            heavy or [100_000],
        )
    return (
        int(os.environ.get("BENCH_TOTAL_ROWS", 20_000_000)),
        int(os.environ.get("BENCH_ACCOUNTS", 20_000)),
        heavy or [100_000, 1_000_000, 2_000_000],
    )


if __name__ == "__main__":
    main(*sizes("--quick" in sys.argv))
