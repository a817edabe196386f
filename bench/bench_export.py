"""Export and deletion of one heavy subject, each beside its baseline on the same rows.

Export baseline: the driver dumps the same rows straight into one deflated CSV member of a zip (SQLite:
a plain cursor and the csv module; PostgreSQL: COPY ... TO STDOUT). Deletion baseline: one raw DELETE.
Targets (issue 6): export time <= 2x baseline, peak memory < 150 MB and flat across sizes; deletion
time <= 1.5x baseline with no transaction longer than about a second.
"""

from __future__ import annotations

import random
import sys

from bench.common import apply_env, bench_env, ratio, record, reset_database, run_child


def seed_subject(app, email: str, rows: int, seed: int) -> tuple[int, int]:
    """An account with ``rows`` usage rows and an approved access/deletion-ready request; returns ids."""
    from datetime import UTC, datetime

    from app.demo import insert_usage, usage_rows
    from app.extensions import db
    from app.platform.models import Account, ApiKey

    acct = Account(email=email, name="Heavy Customer", company="Bench Ltd")
    db.session.add(acct)
    db.session.flush()
    account_id = acct.id
    db.session.add(ApiKey(account_id=account_id, prefix=f"sk-b{seed:06d}", key_hash="x" * 64))
    db.session.commit()  # and not read again: idle across the load, a transaction would hold VACUUM's horizon back
    rng = random.Random(seed)
    insert_usage(usage_rows(account_id, [f"sk-b{seed:06d}"], rows, rng, datetime.now(UTC)))
    if db.engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk load on a real server (it is off on the bench machine's
        # PostgreSQL): statistics for the planner and a visibility map, for the baseline and product alike.
        with db.engines["platform"].connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE platform_usage")
    return account_id


def make_request(email: str, kind: str, status: str = "approved") -> int:
    from app.dsr.models import DsrRequest
    from app.extensions import db
    from app.models_base import utcnow

    dsr = DsrRequest(
        request_type=kind,
        status=status,
        email=email,
        full_name="Heavy Customer",
        jurisdiction="gdpr",
        received_at=utcnow(),
        verified_at=utcnow(),
        due_at=utcnow(),
    )
    if kind == "deletion":
        # Approval stores the dry-run plan staff saw (services.approve): counting for it is not the job's work.
        from app.sources import erasure_plan

        dsr.plan = {"items": erasure_plan(email)}
    db.session.add(dsr)
    db.session.commit()
    return dsr.id


def main(sizes: list[int]) -> None:
    env = bench_env()
    apply_env(env)
    reset_database(env)
    from app import create_app

    app = create_app()
    export_rows, erase_rows = [], []
    peaks = []
    with app.app_context():
        for i, n in enumerate(sizes):
            email = f"heavy{i}@bench.test"
            acct = seed_subject(app, email, n, seed=i)
            base = run_child(env, "export-baseline", str(acct))
            prod = run_child(env, "export", str(make_request(email, "access")))
            assert prod["status"] == "completed", prod
            peaks.append(prod["peak_mb"])
            export_rows.append(
                [
                    f"{n:,}",
                    f"{base['seconds']:.2f}",
                    f"{prod['seconds']:.2f}",
                    ratio(prod["seconds"], base["seconds"]),
                    f"{n / prod['seconds']:,.0f}",
                    base["peak_mb"],
                    prod["peak_mb"],
                ]
            )
            # Deletion: baseline on one copy of the rows, the product on another.
            twin = seed_subject(app, f"twin{i}@bench.test", n, seed=100 + i)
            dbase = run_child(env, "erase-baseline", str(twin))
            dprod = run_child(env, "erase", str(make_request(email, "deletion")))
            assert dprod["status"] == "completed", dprod
            erase_rows.append(
                [
                    f"{n:,}",
                    f"{dbase['seconds']:.2f}",
                    f"{dprod['seconds']:.2f}",
                    ratio(dprod["seconds"], dbase["seconds"]),
                    f"{dprod['longest_tx']:.2f}",
                ]
            )
    worst = max(float(r[3].rstrip("x")) for r in export_rows)
    verdict = (
        f"export: worst ratio {worst:.2f}x (target <= 2x) {'MET' if worst <= 2 else 'MISSED'}; "
        f"peak memory {min(peaks)}-{max(peaks)} MB (target < 150 MB, flat) "
        f"{'MET' if max(peaks) < 150 and max(peaks) - min(peaks) < 30 else 'MISSED'}"
    )
    record(
        "Export",
        env,
        ["usage rows", "baseline s", "export s", "ratio", "rows/s", "baseline MB", "export MB"],
        export_rows,
        verdict,
    )
    dworst = max(float(r[3].rstrip("x")) for r in erase_rows)
    longest = max(float(r[4]) for r in erase_rows)
    dverdict = (
        f"deletion: worst ratio {dworst:.2f}x (target <= 1.5x) {'MET' if dworst <= 1.5 else 'MISSED'}; "
        f"longest transaction {longest:.2f}s (target ~1s) {'MET' if longest <= 1.2 else 'MISSED'}"
    )
    record("Deletion", env, ["usage rows", "raw DELETE s", "erase s", "ratio", "longest tx s"], erase_rows, dverdict)


def sizes(quick: bool) -> tuple[list[int]]:
    return ([20_000, 100_000] if quick else [100_000, 1_000_000, 2_000_000],)


if __name__ == "__main__":
    main(*sizes("--quick" in sys.argv))
