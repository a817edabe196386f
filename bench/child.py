"""One measured operation, run in its own process by the harness. Prints one JSON line.

python -m bench.child export REQUEST_ID        the product's export job
python -m bench.child export-baseline ACCOUNT  the driver dumping the rows to one deflated CSV member
python -m bench.child erase REQUEST_ID         the product's erasure job (longest transaction measured)
python -m bench.child erase-baseline ACCOUNT   one raw DELETE of the usage rows
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
import zipfile
from pathlib import Path


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


def export_baseline(account_id: int) -> dict:
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
        from sqlalchemy import event

        from app.extensions import db
        from workers.jobs import erase_subject

        longest = 0.0
        opened: dict[int, float] = {}

        def on_begin(conn):
            opened[id(conn)] = time.perf_counter()

        def on_end(conn):
            nonlocal longest
            began = opened.pop(id(conn), None)
            if began is not None:
                longest = max(longest, time.perf_counter() - began)

        for engine in db.engines.values():
            event.listen(engine, "begin", on_begin)
            event.listen(engine, "commit", on_end)
            event.listen(engine, "rollback", on_end)
        start = time.perf_counter()
        outcome = erase_subject(request_id)
        seconds = time.perf_counter() - start
        from app.dsr.models import DsrRequest

        status = db.session.get(DsrRequest, request_id).status
        return {"seconds": seconds, "longest_tx": longest, "outcome": str(outcome), "status": status}


def erase_baseline(account_id: int) -> dict:
    app = _app()
    with app.app_context():
        from sqlalchemy import text

        from app.extensions import db

        start = time.perf_counter()
        with db.engines["platform"].begin() as conn:
            deleted = conn.execute(text("DELETE FROM platform_usage WHERE account_id = :a"), {"a": account_id}).rowcount
        return {"seconds": time.perf_counter() - start, "rows": deleted}


COMMANDS = {"export": export, "export-baseline": export_baseline, "erase": erase, "erase-baseline": erase_baseline}

if __name__ == "__main__":
    print(json.dumps(COMMANDS[sys.argv[1]](int(sys.argv[2]))))
