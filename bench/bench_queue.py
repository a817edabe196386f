"""Queue latency: from the approval commit to the fulfilment job starting in a real worker process.

Each approval goes through ``services.transition`` (the job is enqueued after the commit); the job's
``started_at`` (set by rq when a worker picks it up) minus the commit time is the latency.
Target (issue 6): median under 1 second. Baseline: a no-op job enqueued directly, same worker.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

from bench.common import ROOT, apply_env, bench_env, percentile, record, reset_database


def noop() -> None:
    return None


def main(count: int) -> None:
    env = bench_env()
    apply_env(env)
    reset_database(env)

    from app import create_app
    from app.audit import Actor
    from app.dsr import services
    from app.dsr.models import DsrRequest
    from app.dsr.states import RequestStatus
    from app.extensions import db
    from app.models_base import utcnow
    from app.queue import fetch_job, get_queue, get_redis, redis_url

    app = create_app()
    with app.app_context():
        env["REDIS_URL"] = redis_url()
        conn = get_redis()
        conn.flushdb()
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            from rq import Worker

            while not Worker.all(connection=conn):  # wait until the worker is up
                time.sleep(0.5)
            time.sleep(1)
            base, prod = [], []
            for i in range(count):
                t0 = datetime.now(UTC)
                # Same queue and worker as fulfilment. Not on the job allow-list, so the worker starts it
                # (started_at is what is timed) and then refuses to run it: the latency is the same.
                job = get_queue("fulfilment", conn).enqueue("bench.bench_queue.noop")
                base.append((job.id, t0))
                dsr = DsrRequest(
                    request_type="access",
                    status="pending_review",
                    email=f"nobody{i}@bench.test",
                    full_name="Q",
                    jurisdiction="gdpr",
                    received_at=utcnow(),
                    due_at=utcnow(),
                )
                db.session.add(dsr)
                db.session.commit()
                services.transition(dsr, RequestStatus.APPROVED, Actor.system("bench"))
                db.session.commit()
                prod.append((f"fulfil-{dsr.id}", datetime.now(UTC)))
                time.sleep(0.5)
            deadline = time.time() + 120

            def started(pairs):
                out = []
                for job_id, t0 in pairs:
                    job = fetch_job(job_id, conn)
                    if job.started_at is None:
                        return None
                    out.append((job.started_at.replace(tzinfo=UTC) - t0).total_seconds())
                return out

            while time.time() < deadline:
                b, p = started(base), started(prod)
                if b is not None and p is not None:
                    break
                time.sleep(1)
            else:
                raise RuntimeError("jobs did not start within 120 s")
        finally:
            worker.terminate()
            worker.wait(20)
    rows = [
        ["no-op job (baseline)", count, f"{statistics.median(b) * 1000:.0f}", f"{percentile(b, 99) * 1000:.0f}"],
        ["approval -> fulfilment job", count, f"{statistics.median(p) * 1000:.0f}", f"{percentile(p, 99) * 1000:.0f}"],
    ]
    med = statistics.median(p)
    record(
        "Queue latency",
        env,
        ["what", "n", "median ms", "p99 ms"],
        rows,
        f"median approval-to-start {med * 1000:.0f} ms (target < 1000 ms) {'MET' if med < 1 else 'MISSED'}",
    )


def sizes(quick: bool) -> tuple[int]:
    return (20 if quick else 100,)


if __name__ == "__main__":
    main(*sizes("--quick" in sys.argv))
