"""Exports on object storage (EXPORT_STORAGE_URL=s3://bucket/prefix) against a real S3 API (moto's
server): the package is uploaded encrypted and appears only complete, nothing stays on the worker's
disk, downloads stream through the app (counted and audited), and expiry, purge and erasure remove the
object. The store failing mid-upload is retried and nothing is reported done that was not."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.dsr.models import DsrRequest, Export, Token
from app.exports import store as export_store
from app.extensions import db
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from app.sources.inventory import retention_days
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
        migrated,
        redis_url,
        tmp_path,
        EXPORT_STORAGE_URL=f"s3://{bucket}/{PREFIX}",
        S3_ENDPOINT_URL=s3_endpoint,
    )


@pytest.fixture
def officer(app):
    client, _ = staff_client(app, "officer")
    return client


def ready_mail(email: str = "ada@example.com") -> OutgoingMail:
    return db.session.execute(
        select(OutgoingMail).where(OutgoingMail.to_addr == email, OutgoingMail.template == "fulfil_export_ready")
    ).scalar_one()


def download_link(mail: OutgoingMail) -> str:
    import re

    (link,) = [u for u in re.findall(r"https?://[^\s\"'<>]+", mail.body_text) if "/download/" in u][:1]
    return link.split("portal.test", 1)[1]


def build_access(officer, redis_conn, usage: int = 40) -> DsrRequest:
    make_subject_data(usage=usage)
    dsr = make_request("pending_review", "access", email="ada@example.com")
    act(officer, dsr, "approve")
    dsr_id = dsr.id
    run_jobs(redis_conn)
    return db.session.get(DsrRequest, dsr_id)


def test_export_is_uploaded_encrypted_and_nothing_stays_on_the_workers_disk(app, officer, redis_conn, s3_bucket):
    client, bucket = s3_bucket
    dsr = build_access(officer, redis_conn)
    assert dsr.status == "completed", dsr.last_error
    export = db.session.execute(select(Export).where(Export.request_id == dsr.id)).scalar_one()
    key = f"{PREFIX}/{export.filename}"
    assert objects(client, bucket) == {key: export.size_bytes}
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["sha256"] == export.sha256
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == export.sha256
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(body)).read("manifest.json"))
    assert manifest["request_reference"] == dsr.reference
    # EXPORT_DIR is only scratch space: no package, no part file left behind
    scratch = Path(app.config["EXPORT_DIR"])
    assert not [p for p in scratch.rglob("*") if p.is_file()] if scratch.exists() else True


def test_download_streams_from_s3_counts_and_audits(app, officer, redis_conn, s3_bucket):
    client, bucket = s3_bucket
    dsr = build_access(officer, redis_conn)
    export = db.session.execute(select(Export).where(Export.request_id == dsr.id)).scalar_one()
    assert objects(client, bucket) == {f"{PREFIX}/{export.filename}": export.size_bytes}
    assert not list(Path(app.config["EXPORT_DIR"]).glob("*.zip"))  # served from S3, not from a disk
    link = download_link(ready_mail())
    browser = app.test_client()
    hop = browser.get(link)
    assert hop.status_code == 303
    head = browser.head("/download")
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == export.size_bytes
    peek = browser.get("/download", headers={"Range": "bytes=0-10"})
    assert peek.status_code == 416 and peek.headers["Content-Range"] == f"bytes */{export.size_bytes}"
    got = browser.get("/download")
    assert got.status_code == 200 and got.mimetype == "application/zip"
    assert got.headers["Content-Disposition"].startswith("attachment")
    assert f"{dsr.reference}-data.zip" in got.headers["Content-Disposition"]
    assert int(got.headers["Content-Length"]) == export.size_bytes
    assert hashlib.sha256(got.data).hexdigest() == export.sha256
    db.session.refresh(export)
    assert export.download_count == 1  # HEAD and the refused Range peek counted nothing
    uses = [e.data["use"] for e in db.session.execute(select(AuditEvent).where(AuditEvent.event == "export.downloaded"))
            .scalars()]  # fmt: skip
    assert uses == [1]


@pytest.mark.parametrize("mode", ["x-accel-redirect", "x-sendfile"])
def test_download_from_s3_streams_whatever_download_accel_says(app, officer, redis_conn, s3_bucket, mode):
    """The front server cannot reach an S3 object: the app streams it, counted and audited once."""
    app.config["DOWNLOAD_ACCEL"] = mode
    dsr = build_access(officer, redis_conn)
    export = db.session.execute(select(Export).where(Export.request_id == dsr.id)).scalar_one()
    got = app.test_client().get(download_link(ready_mail()), follow_redirects=True)
    assert got.status_code == 200 and hashlib.sha256(got.data).hexdigest() == export.sha256
    assert "X-Accel-Redirect" not in got.headers and "X-Sendfile" not in got.headers
    db.session.refresh(export)
    assert export.download_count == 1
    assert len(db.session.execute(select(AuditEvent).where(AuditEvent.event == "export.downloaded")).all()) == 1


def test_download_when_the_store_is_unreachable_is_503_and_counts_nothing(app, officer, redis_conn):
    dsr = build_access(officer, redis_conn)
    browser = app.test_client()
    assert browser.get(download_link(ready_mail())).status_code == 303
    app.config["S3_ENDPOINT_URL"] = "http://127.0.0.1:9"  # nothing listens there
    refused = browser.get("/download")
    assert refused.status_code == 503
    assert "try again" in refused.get_data(as_text=True)
    assert db.session.execute(select(Token.use_count).where(Token.purpose == "download")).scalar_one() == 0
    assert not db.session.execute(select(AuditEvent).where(AuditEvent.event == "export.downloaded")).first()
    del dsr


def test_download_of_a_missing_object_is_410(app, officer, redis_conn, s3_bucket):
    client, bucket = s3_bucket
    dsr = build_access(officer, redis_conn)
    export = db.session.execute(select(Export).where(Export.request_id == dsr.id)).scalar_one()
    client.delete_object(Bucket=bucket, Key=f"{PREFIX}/{export.filename}")
    assert app.test_client().get(download_link(ready_mail())).status_code == 410


def test_expiry_purge_removes_the_object(app, officer, redis_conn, s3_bucket):
    from workers import maintenance

    client, bucket = s3_bucket
    dsr = build_access(officer, redis_conn)
    export = db.session.execute(select(Export).where(Export.request_id == dsr.id)).scalar_one()
    export.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert len(objects(client, bucket)) == 1
    assert maintenance.purge_exports() == 1
    assert objects(client, bucket) == {}
    assert db.session.get(Export, export.id).status == "purged"


def test_erasure_removes_the_subjects_export_object(app, officer, redis_conn, s3_bucket):
    client, bucket = s3_bucket
    access = build_access(officer, redis_conn)
    assert access.status == "completed" and len(objects(client, bucket)) == 1
    deletion = make_request("pending_review", "deletion", email="ada@example.com")
    deletion_id, reference = deletion.id, deletion.reference
    act(officer, deletion, "approve", confirm_reference=reference)
    run_jobs(redis_conn)
    assert db.session.get(DsrRequest, deletion_id).status == "completed"
    assert objects(client, bucket) == {}


def test_record_purge_removes_the_object(app, officer, redis_conn, s3_bucket):
    from workers import maintenance

    client, bucket = s3_bucket
    dsr = build_access(officer, redis_conn)
    dsr.closed_at = utcnow() - timedelta(days=retention_days("requests", "RECORD_RETENTION_DAYS") + 1)
    db.session.commit()
    assert len(objects(client, bucket)) == 1
    assert maintenance.purge_records() >= 1
    assert objects(client, bucket) == {}


# --- the store itself ------------------------------------------------------------------------------


def s3_store(app, transfer=None) -> export_store.S3Store:
    store = export_store.current()
    assert isinstance(store, export_store.S3Store)
    if transfer is not None:
        store.transfer = transfer
    return store


def test_large_package_is_uploaded_in_parts_and_appears_only_complete(app, s3_bucket, tmp_path):
    client, bucket = s3_bucket
    store = s3_store(app, TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20, max_concurrency=2))
    staged = store.staging_dir() / ".big.zip.part"
    staged.write_bytes(os.urandom(12 << 20))
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()
    assert store.size("big.zip") is None
    assert store.publish(staged, "big.zip", digest) == 12 << 20
    head = client.head_object(Bucket=bucket, Key=f"{PREFIX}/big.zip")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: a multipart upload
    assert head["ServerSideEncryption"] == "AES256"
    assert not staged.exists()
    package = store.open("big.zip")
    assert package.size == 12 << 20
    streamed = hashlib.sha256()
    while chunk := package.file.read(1 << 16):
        streamed.update(chunk)
    package.close()
    assert streamed.hexdigest() == digest
    assert store.delete("big.zip") is True and store.delete("big.zip") is False
    assert objects(client, bucket) == {}


def test_an_unfinished_multipart_upload_is_invisible_and_discarded(app, s3_bucket):
    client, bucket = s3_bucket
    store = s3_store(app)
    key = f"{PREFIX}/DSR-KILLED-1.zip"
    upload = client.create_multipart_upload(Bucket=bucket, Key=key, ServerSideEncryption="AES256")
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * (5 << 20))
    # a worker killed here: nothing can be downloaded, but the parts are stored
    assert store.size("DSR-KILLED-1.zip") is None and store.open("DSR-KILLED-1.zip") is None
    assert store.list_uploads() == [key]
    store.discard_partial("DSR-KILLED-1.zip")  # what the re-run does first
    assert store.list_uploads() == []


def test_names_that_are_not_packages_are_refused(app):
    store = s3_store(app)
    for name in (None, "", "../other.zip", ".hidden.zip.part", "a/b.zip"):
        assert store.size(name) is None and store.open(name) is None and store.delete(name) is False


UPLOAD_MEMORY = """
import os, sys, tracemalloc
from pathlib import Path
from boto3.s3.transfer import TransferConfig
from app.exports.store import S3Store, s3_client
endpoint, bucket, path = sys.argv[1:4]
store = S3Store(bucket, "mem", client=s3_client(endpoint), staging=Path(path).parent,
                transfer=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20, max_concurrency=2))
tracemalloc.start()
store.publish(Path(path), Path(path).name.strip(".").removesuffix(".part"), "0" * 64)
print(tracemalloc.get_traced_memory()[1])
"""


@pytest.mark.slow
def test_upload_memory_stays_flat_whatever_the_size(s3_bucket, s3_endpoint, tmp_path):
    """Peak Python memory of one upload, in a process of its own (the S3 server keeps its copy in this
    one): a 60 MiB package costs no more than a 10 MiB one, about two parts in flight at most."""
    _client, bucket = s3_bucket
    peaks = {}
    for mib in (10, 60):
        staged = tmp_path / f".pkg{mib}.zip.part"
        with open(staged, "wb") as fh:
            for _ in range(mib):
                fh.write(os.urandom(1 << 20))
        out = subprocess.run(
            [sys.executable, "-c", UPLOAD_MEMORY, s3_endpoint, bucket, str(staged)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
            cwd=Path(__file__).resolve().parents[2],
        )
        peaks[mib] = int(out.stdout.strip().splitlines()[-1])
    print(f"upload peak traced memory: 10 MiB -> {peaks[10] >> 20} MiB, 60 MiB -> {peaks[60] >> 20} MiB")
    assert peaks[60] < 24 << 20
    assert peaks[60] < peaks[10] + (8 << 20)


# --- the store failing mid-upload ------------------------------------------------------------------


def test_store_failing_mid_upload_retries_and_reports_nothing_done(app, officer, redis_conn, s3_bucket, cutting_proxy):
    """The connection to the store dies part-way through the package's body: the job is kept for a retry
    (transient), the request is not completed, no object exists, no link is issued and no mail tells the
    subject anything; once the store is back the same request completes exactly once."""
    from app.queue import get_queue
    from workers.jobs import build_export

    client, bucket = s3_bucket
    app.config["S3_ENDPOINT_URL"] = cutting_proxy.url
    cutting_proxy.cut_after = 2048  # headers and the start of the zip, then the connection drops
    make_subject_data(usage=400)
    dsr = make_request("pending_review", "access", email="ada@example.com")
    act(officer, dsr, "approve")
    dsr_id = dsr.id
    run_jobs(redis_conn)

    assert cutting_proxy.cuts >= 1
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == "in_progress", (dsr.status, dsr.last_error)
    assert "will retry" in (dsr.last_error or "")
    assert objects(client, bucket) == {}
    assert not db.session.execute(select(Export).where(Export.status == "ready")).first()
    assert not db.session.execute(select(Token).where(Token.purpose == "download")).first()
    assert not db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_export_ready")).first()
    assert not db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_staff_alert")).first()
    scheduled = get_queue("fulfilment").scheduled_job_registry.get_job_ids()
    assert scheduled == [f"fulfil-{dsr_id}"]  # rq holds it for its retry

    cutting_proxy.cut_after = None  # the store is back; the retry runs (here, directly)
    assert build_export(dsr_id).startswith("export ")
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == "completed"
    (export,) = db.session.execute(select(Export).where(Export.request_id == dsr_id)).scalars()
    assert objects(client, bucket) == {f"{PREFIX}/{export.filename}": export.size_bytes}
    assert len(db.session.execute(select(Token).where(Token.purpose == "download")).scalars().all()) == 1
    ready_mail()  # exactly one
    done = db.session.execute(
        select(AuditEvent).where(AuditEvent.event == "request.status_changed", AuditEvent.request_id == dsr_id)
    ).scalars()
    assert [e.data.get("to") for e in done].count("completed") == 1
    got = app.test_client().get(download_link(ready_mail()), follow_redirects=True)
    assert hashlib.sha256(got.data).hexdigest() == export.sha256


def test_a_held_package_on_s3_is_previewed_and_a_vanished_one_is_built_again(app, officer, redis_conn, s3_bucket):
    """The README preview reads the zip through the store's (unseekable) stream; a held package whose
    object is gone is rebuilt on release instead of mailing a link to nothing."""
    client, bucket = s3_bucket
    app.config["ACCESS_REVIEW_BEFORE_RELEASE"] = True
    dsr = build_access(officer, redis_conn)
    assert dsr.status == "awaiting_release", dsr.last_error
    preview = officer.get(f"/admin/requests/{dsr.reference}/package/readme")
    assert preview.status_code == 200 and b"<html" in preview.data.lower()
    export = db.session.execute(select(Export).where(Export.request_id == dsr.id)).scalar_one()
    client.delete_object(Bucket=bucket, Key=f"{PREFIX}/{export.filename}")
    assert officer.get(f"/admin/requests/{dsr.reference}/package/readme").status_code == 404
    act(officer, dsr, "release_package")
    db.session.expire_all()
    assert db.session.get(DsrRequest, dsr.id).status == "approved"  # built again, no link sent
    assert not db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_export_ready")).first()
