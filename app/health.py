"""Liveness (``/healthz``), readiness (``/readyz``: both databases and Redis answer, the export store
takes a package (an S3 HeadBucket of one short attempt, or a directory that takes a file), and no daily
job has gone stale) and ``/metrics`` (Prometheus text: ``METRICS_TOKEN`` bearer, or loopback only when
unset). A failed check is named by a code (``error: bucket_missing``), never by a path, bucket or key."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from app.extensions import csrf, db, limiter

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@limiter.exempt
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
@limiter.exempt
def readyz() -> ResponseReturnValue:
    checks: dict[str, str] = {}
    for name, bind in (("database", None), ("platform_database", "platform")):
        try:
            with db.engines[bind].connect() as conn:
                conn.execute(text("SELECT 1"))
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"
    try:
        from app.queue import get_redis

        get_redis().ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    try:
        from app.exports.store import current as export_store

        problem = export_store().check()
        checks["export_store"] = f"error: {problem}" if problem else "ok"
    except Exception as exc:
        checks["export_store"] = f"error: {type(exc).__name__}"
    jobs: dict[str, str] = {}
    if checks.get("database") == "ok":
        from app.schedule import DAILY, last_successes, stale

        seen, late = last_successes(), set(stale())
        for name in DAILY:
            jobs[name] = "stale" if name in late else seen[name].isoformat() if name in seen else "not run yet"
        checks["scheduled_jobs"] = "stale: " + ", ".join(sorted(late)) if late else "ok"
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks, "scheduled": jobs}
    return jsonify(body), (200 if ready else 503)


@bp.get("/metrics")
@limiter.exempt
def metrics() -> Response:
    import hmac

    from flask import abort, current_app, request
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from app.metrics import registry

    token = current_app.config.get("METRICS_TOKEN")
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), str(token).encode()):
            abort(401)
    elif request.remote_addr not in ("127.0.0.1", "::1"):
        abort(404)
    return current_app.response_class(
        generate_latest(registry()), mimetype=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
    )


csrf.exempt(bp)
