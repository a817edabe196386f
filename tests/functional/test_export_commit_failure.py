"""A package uploaded to S3 whose database commit then fails is deleted again: no object is left that no
row records as delivered (which no purge would ever look for). Against moto's S3 server, the commit made
to fail by a listener on the session (the database refusing or going away at that moment)."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import event, inspect, select
from sqlalchemy.exc import IntegrityError, OperationalError

from app.dsr.models import DsrRequest, Export
from app.extensions import db
from tests.conftest import make_config
from tests.factories import make_request
from tests.functional._fulfil import make_subject_data, run_jobs
from tests.functional.admin_support import act, fresh_g, staff_client  # noqa: F401 - fresh_g: a fixture
from tests.s3_fixtures import objects

PREFIX = "dsr/exports"


@pytest.fixture
def app_config(migrated, redis_url, tmp_path, s3_bucket, s3_endpoint):
    _client, bucket = s3_bucket
    return make_config(
        migrated, redis_url, tmp_path, EXPORT_STORAGE_URL=f"s3://{bucket}/{PREFIX}", S3_ENDPOINT_URL=s3_endpoint
    )


@contextlib.contextmanager
def commit_fails(error: Exception, statuses=("ready", "review")):
    """Every commit that would record a finished package (an export row ``ready`` or ``review``) fails."""
    seen: list[int] = []

    def before_commit(session) -> None:
        for obj in list(session.identity_map.values()):
            if isinstance(obj, Export) and inspect(obj).dict.get("status") in statuses:
                seen.append(obj.id)
                raise error

    event.listen(db.session, "before_commit", before_commit)
    try:
        yield seen
    finally:
        event.remove(db.session, "before_commit", before_commit)


def approve_access(app) -> int:
    make_subject_data(usage=20)
    dsr = make_request("pending_review", "access", email="ada@example.com")
    officer, _ = staff_client(app, "officer")
    act(officer, dsr, "approve")
    return dsr.id


def test_export_commit_fails_transiently_object_deleted_and_retry_delivers(app, redis_conn, s3_bucket):
    from workers.jobs import build_export

    client, bucket = s3_bucket
    dsr_id = approve_access(app)
    gone = OperationalError("COMMIT", None, ConnectionError("server closed the connection unexpectedly"))
    with commit_fails(gone) as seen:
        run_jobs(redis_conn)  # uploads, then the commit fails: rq keeps the job for a retry
    assert seen, "the fault never fired"
    db.session.remove()
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == "in_progress" and "will retry" in (dsr.last_error or "")
    export = db.session.execute(select(Export).where(Export.request_id == dsr_id)).scalar_one()
    assert export.status == "building"
    assert objects(client, bucket) == {}  # the uploaded package was removed again
    # the retry builds it again and this time it is recorded, and kept
    assert build_export(dsr_id).startswith(f"export {export.id}")
    db.session.remove()
    export = db.session.get(Export, export.id)
    assert export.status == "ready" and db.session.get(DsrRequest, dsr_id).status == "completed"
    assert objects(client, bucket) == {f"{PREFIX}/{export.filename}": export.size_bytes}


def test_export_held_for_review_commit_fails_for_good_object_deleted(app, redis_conn, s3_bucket):
    client, bucket = s3_bucket
    app.config["ACCESS_REVIEW_BEFORE_RELEASE"] = True
    dsr_id = approve_access(app)
    refused = IntegrityError("COMMIT", None, ValueError("violates a constraint"))
    with commit_fails(refused, statuses=("review",)) as seen:
        run_jobs(redis_conn)  # not transient: the request fails and staff are told
    assert seen
    db.session.remove()
    assert db.session.get(DsrRequest, dsr_id).status == "failed"
    assert db.session.execute(select(Export.status).where(Export.request_id == dsr_id)).scalar_one() == "building"
    assert objects(client, bucket) == {}
