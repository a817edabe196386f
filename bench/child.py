"""One measured operation, run in its own process by the harness. Prints one JSON line.

python -m bench.child export REQUEST_ID        the product's export job
python -m bench.child export-baseline ACCOUNT  the driver dumping the rows to one deflated CSV member
python -m bench.child erase REQUEST_ID         the product's erasure job (longest transaction measured)
python -m bench.child erase-baseline ACCOUNT   one raw DELETE of the usage rows
python -m bench.child export-e2e REQUEST_ID    approve, then a worker builds and mails the link (SMTP)
python -m bench.child settle ACCOUNT           untimed: read the pages of ACCOUNT's usage rows (live or deleted)
python -m bench.child sweep                    the retention sweep job (longest transaction measured)
python -m bench.child sweep-baseline TABLE     one raw DELETE ... WHERE created_at < cutoff on TABLE
python -m bench.child writer STOPFILE          one usage row per transaction until STOPFILE exists
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path

# The suffix of a statement kind bounded above: a deletion's re-check of a range it walked.
RECHECK = " (bounded above: a re-check)"


def _app():
    from app import create_app

    return create_app()


def _as_work_horse(app) -> None:
    """What ``flask worker`` does before it forks a work horse for a job: import the job modules
    and prepare the process (``mark_parent_process``: pools and the frozen gc generation)."""
    with app.app_context():
        import workers.jobs
        import workers.mail  # noqa: F401
        from workers.context import mark_parent_process

        mark_parent_process()


def export(request_id: int) -> dict:
    app = _app()
    _as_work_horse(app)
    with app.app_context():
        from workers.jobs import build_export

        start = time.perf_counter()
        outcome = build_export(request_id)
        seconds = time.perf_counter() - start
        from app.dsr.models import DsrRequest, Export
        from app.extensions import db

        dsr = db.session.get(DsrRequest, request_id)
        export = db.session.query(Export).filter_by(request_id=request_id, status="ready").one()
        return {"seconds": seconds, "outcome": str(outcome), "status": dsr.status, "size": export.size_bytes}


def _forked(work) -> dict:
    """Run ``work()`` in a forked child, as rq runs a job in a work horse; its result plus the child's
    own peak (``peak_mb``: ``ru_maxrss`` of RUSAGE_CHILDREN, which starts from this process's resident
    size at the fork, not from the harness's peak that ``execve`` carried into this process)."""
    import os
    import resource

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: do the work, send its result, leave without the parent's atexit handlers
        os.close(read)
        code = 0
        try:
            os.write(write, json.dumps(work()).encode())
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    _pid, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("forked bench work failed")
    return {**json.loads(data), "peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def export_baseline(account_id: int) -> dict:
    return _forked(lambda: _export_baseline(account_id))


def _export_baseline(account_id: int) -> dict:
    app = _app()
    out = Path(app.config["EXPORT_DIR"]) / f"baseline-{account_id}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    with app.app_context():
        from app.extensions import db

        engine = db.engines["platform"]
        cols = "id, created_at, model, key_prefix, request_id, prompt_tokens, completion_tokens"
        start = time.perf_counter()
        rows = 0
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("usage.csv", "w") as member:
            raw = engine.raw_connection()
            try:
                if engine.dialect.name == "postgresql":
                    with (
                        raw.cursor() as cur,
                        cur.copy(
                            f"COPY (SELECT {cols} FROM platform_usage WHERE account_id = {int(account_id)} "
                            "ORDER BY created_at) TO STDOUT WITH CSV HEADER"
                        ) as copy,
                    ):
                        for block in copy:
                            member.write(block)
                            rows += bytes(block).count(b"\n")
                    rows -= 1
                else:
                    cur = raw.cursor()
                    cur.execute(
                        f"SELECT {cols} FROM platform_usage WHERE account_id = ? ORDER BY created_at",
                        (account_id,),
                    )
                    text = io.TextIOWrapper(member, encoding="utf-8", newline="")
                    writer = csv.writer(text)
                    writer.writerow(cols.split(", "))
                    while batch := cur.fetchmany(5000):
                        writer.writerows(batch)
                        rows += len(batch)
                    text.flush()
                    text.detach()
            finally:
                raw.close()
        return {"seconds": time.perf_counter() - start, "rows": rows}


def erase(request_id: int) -> dict:
    app = _app()
    _as_work_horse(app)
    with app.app_context():
        from app.extensions import db
        from workers.jobs import erase_subject

        seen = _longest_transactions(db.engines.values())
        start = time.perf_counter()
        outcome = _profiled(erase_subject, request_id)
        seconds = time.perf_counter() - start
        from app.dsr.models import DsrRequest

        status = db.session.get(DsrRequest, request_id).status
        return {
            "seconds": seconds,
            **_transaction_figures(seen),
            "outcome": str(outcome),
            "status": status,
        }


def erase_baseline(account_id: int) -> dict:
    app = _app()
    with app.app_context():
        from sqlalchemy import text

        from app.extensions import db

        start = time.perf_counter()
        with db.engines["platform"].begin() as conn:
            deleted = conn.execute(text("DELETE FROM platform_usage WHERE account_id = :a"), {"a": account_id}).rowcount
        return {"seconds": time.perf_counter() - start, "rows": deleted}


def settle(account_id: int) -> dict:
    """Untimed, around the timed deletions: read the pages of ``account_id``'s rows (before a raw DELETE,
    as the approval's plan reads the subject's before the erasure; after a deletion, what it left).

    PostgreSQL leaves a DELETE's page cleanup (pruning the dead rows, setting their hint bits) to the
    next reader of each page. The heavy subjects and their twins share pages, so without this the
    erasure timed next would pay for the raw DELETE just before it, and the next raw DELETE for the
    erasure before it (a probe, 2026-12-04: a 1M-row subject's count took 1.52 s, dirtying 93k pages,
    straight after a raw DELETE of other rows on its pages; 0.35 s with one read between). On a live
    platform the platform's own reads do it in between.
    """
    app = _app()
    with app.app_context():
        from sqlalchemy import text

        from app.extensions import db

        engine = db.engines["platform"]
        start = time.perf_counter()
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(text("SELECT count(*) FROM platform_usage WHERE account_id = :a"), {"a": account_id})
        return {"seconds": time.perf_counter() - start}


def _profiled(work, *args):
    """``work(*args)``, under cProfile when ``BENCH_PROFILE`` names a file (its top 40 by cumulative time)."""
    path = os.environ.get("BENCH_PROFILE")
    if not path:
        return work(*args)
    import cProfile
    import pstats

    profile = cProfile.Profile()
    try:
        return profile.runcall(work, *args)
    finally:
        with open(path, "a") as fh:
            pstats.Stats(profile, stream=fh).sort_stats("cumulative").print_stats(40)


def _transaction_figures(seen: dict) -> dict:
    """What ``_longest_transactions`` recorded, as the result's fields."""
    return {
        "longest_tx": seen["longest"],
        "longest_tx_statements": seen["statements"],
        "longest_tx_idle": seen["idle"],
        "statement_seconds": seen["by_kind"],
    }


def _longest_transactions(engines) -> dict:
    """Record the longest transaction on these engines (begin to the end of its COMMIT or ROLLBACK, so
    a slow commit counts: a WAL flush, an SQLite checkpoint) in the result dict, with its profile: its
    three slowest statements (the commit among them) and its longest idle gap (between two statements,
    with the statements either side), each as [seconds, SQL]; and the seconds spent in each kind of
    statement over the whole run."""
    from sqlalchemy import event

    seen: dict = {"longest": 0.0, "statements": [], "idle": [], "by_kind": {}}
    opened: dict[int, tuple[float, list[tuple[float, float, str]]]] = {}
    running: dict[int, float] = {}

    def key(conn) -> int:
        return id(conn.connection)  # the pool's proxy, which the dialect's do_commit/do_rollback receive

    def on_begin(conn):
        opened[key(conn)] = (time.perf_counter(), [])

    def before(conn, _cursor, _statement, _params, _context, _many):
        running[key(conn)] = time.perf_counter()

    def note(began: float, now: float, statement: str, tx) -> None:
        if tx is not None:
            tx[1].append((began, now, statement))
        kind = " ".join(statement.split()[:2]) + (RECHECK if "<=" in statement else "")
        seen["by_kind"][kind] = round(seen["by_kind"].get(kind, 0.0) + now - began, 3)

    def after(conn, _cursor, statement, _params, _context, _many):
        began = running.pop(key(conn), None)
        if began is not None:
            note(began, time.perf_counter(), statement, opened.get(key(conn)))

    def short(sql: str) -> str:
        return " ".join(sql.split())[:300]

    def finish(dbapi_key: int, began_end: float, word: str) -> None:
        ended = time.perf_counter()
        tx = opened.pop(dbapi_key, None)
        note(began_end, ended, word, tx)
        if tx is None or ended - tx[0] <= seen["longest"]:
            return
        began, statements = tx
        seen["longest"] = ended - began
        slowest = sorted(statements, key=lambda st: st[1] - st[0], reverse=True)[:3]
        seen["statements"] = [[round(b - a, 3), short(sql)] for a, b, sql in slowest]
        marks = [(began, "BEGIN"), *[(b, sql) for _a, b, sql in statements[:-1]]]
        starts = [a for a, _b, _sql in statements]
        nexts = [sql for _a, _b, sql in statements]
        gaps = [(start - mark, prev, nxt) for (mark, prev), start, nxt in zip(marks, starts, nexts, strict=True)]
        gap, prev, nxt = max(gaps, key=lambda g: g[0])
        seen["idle"] = [round(gap, 3), f"after: {short(prev)}", f"before: {short(nxt)}"]

    def timed(original, word: str):
        def wrapper(dbapi_connection):
            began = time.perf_counter()
            try:
                return original(dbapi_connection)
            finally:
                finish(id(dbapi_connection), began, word)

        return wrapper

    for engine in engines:
        event.listen(engine, "begin", on_begin)
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        engine.dialect.do_commit = timed(engine.dialect.do_commit, "COMMIT")
        engine.dialect.do_rollback = timed(engine.dialect.do_rollback, "ROLLBACK")
    return seen


def export_e2e(request_id: int) -> dict:
    """Approval commit to the link leaving for the SMTP server: a forking rq worker (what ``flask worker``
    runs) takes the export job and then the mail job, each in its own work horse.

    ``horse_peak_mb`` is the work horses' own peak (``ru_maxrss`` of RUSAGE_CHILDREN: the largest of the
    children this process waited for, i.e. the horses). This process's own ``ru_maxrss`` (what
    ``run_child`` reads through ``wait4``) is useless for it: it starts at the harness's peak, which
    ``execve`` carries over from the forked parent (282.9 MB for the baseline and the product alike after
    a 20M-row load), whereas a horse forked here starts from this process's resident size at the fork.
    """
    import resource

    app = _app()
    _as_work_horse(app)
    with app.app_context():
        from app.audit import Actor
        from app.dsr import services
        from app.dsr.models import DsrRequest
        from app.dsr.states import RequestStatus
        from app.extensions import db
        from app.queue import get_redis, new_worker

        dsr = db.session.get(DsrRequest, request_id)
        services.transition(dsr, RequestStatus.APPROVED, Actor.system("bench"))
        db.session.commit()
        committed = time.time()
        parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        new_worker(["fulfilment", "mail"], get_redis()).work(burst=True)
        horse_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        db.session.remove()
        status = db.session.get(DsrRequest, request_id).status
        return {
            "committed": committed,
            "worked": time.time() - committed,
            "status": status,
            "horse_peak_mb": round(horse_mb, 1),
            "worker_mb": round(parent_mb, 1),
        }


def sweep() -> dict:
    app = _app()
    _as_work_horse(app)
    with app.app_context():
        from app.extensions import db
        from workers.maintenance import retention_sweep

        seen = _longest_transactions(db.engines.values())
        start = time.perf_counter()
        result = retention_sweep()
        seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            **_transaction_figures(seen),
            **result,
        }


def sweep_baseline(table: str) -> dict:
    if table not in ("bench_usage_copy",):
        raise ValueError(table)
    app = _app()
    with app.app_context():
        from datetime import UTC, datetime, timedelta

        from sqlalchemy import text

        from app.extensions import db
        from app.sources.inventory import retention_days

        cutoff = datetime.now(UTC) - timedelta(days=retention_days("usage_logs", "USAGE_RETENTION_DAYS"))
        if db.engines["platform"].dialect.name == "sqlite":
            cutoff_value: object = cutoff.strftime("%Y-%m-%d %H:%M:%S.%f")
        else:
            cutoff_value = cutoff
        start = time.perf_counter()
        with db.engines["platform"].begin() as conn:
            deleted = conn.execute(text(f"DELETE FROM {table} WHERE created_at < :c"), {"c": cutoff_value}).rowcount  # noqa: S608 - allow-listed name
        return {"seconds": time.perf_counter() - start, "rows": deleted}


def writer(stopfile: str) -> dict:
    """The platform logging API calls while the sweep runs: one insert per transaction, latency of each."""
    app = _app()
    with app.app_context():
        from app.extensions import db
        from app.models_base import utcnow
        from app.platform.models import UsageRecord

        engine = db.engines["platform"]
        table = UsageRecord.__table__
        lat: list[float] = []
        stop = Path(stopfile)
        i = 0
        while not stop.exists():
            i += 1
            row = {
                "account_id": 1,
                "key_prefix": "sk-writer",
                "model": "gpt-4o",
                "request_id": f"writer_{i}",
                "prompt_tokens": 1,
                "completion_tokens": 1,
                "created_at": utcnow(),
            }
            start = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(table.insert(), row)
            lat.append(time.perf_counter() - start)
            time.sleep(0.005)
        lat.sort()
        return {
            "inserts": len(lat),
            "p50_ms": lat[len(lat) // 2] * 1000 if lat else 0,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0,
            "max_ms": lat[-1] * 1000 if lat else 0,
        }


COMMANDS = {
    "export": export,
    "export-baseline": export_baseline,
    "erase": erase,
    "erase-baseline": erase_baseline,
    "export-e2e": export_e2e,
    "settle": settle,
    "sweep": sweep,
    "sweep-baseline": sweep_baseline,
    "writer": writer,
}

if __name__ == "__main__":
    args = [int(a) if a.isdigit() else a for a in sys.argv[2:]]
    print(json.dumps(COMMANDS[sys.argv[1]](*args)))
