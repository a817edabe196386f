"""The access package, built by the real job on a burst worker: contents, hashes, README, CSV safety."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tracemalloc
import zipfile
from pathlib import Path

from sqlalchemy import select

from app.audit import Actor
from app.dsr import services
from app.dsr.models import DsrRequest, Export, Token
from app.dsr.states import RequestStatus
from app.exports import build_package
from app.extensions import db
from app.mail.models import OutgoingMail
from app.platform.models import SupportMessage, UsageRecord
from app.sources import INVENTORY, find_subject
from tests.factories import make_request, make_staff
from tests.functional._fulfil import make_subject_data, run_jobs


def approve(dsr: DsrRequest) -> None:
    staff = make_staff("officer")
    services.transition(dsr, RequestStatus.APPROVED, Actor.staff(staff))
    db.session.commit()


def open_zip(app, export: Export) -> zipfile.ZipFile:
    return zipfile.ZipFile(Path(app.config["EXPORT_DIR"]) / export.filename)


def test_build_export_job_produces_package_matching_database(app, redis_conn):
    acct = make_subject_data(usage=3210)
    db.session.add(
        SupportMessage(
            email=acct.email,
            account_id=acct.id,
            direction="inbound",
            subject='=HYPERLINK("http://evil.example","click")',
            body="+cmd|' /C calc'!A0",
        )
    )
    db.session.commit()
    dsr = make_request(RequestStatus.PENDING_REVIEW, "access", email="Ada@Example.com")
    approve(dsr)
    dsr_id, account_id = dsr.id, acct.id
    run_jobs(redis_conn)

    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == RequestStatus.COMPLETED.value, dsr.last_error
    assert dsr.progress_percent == 100
    (export,) = db.session.execute(select(Export).where(Export.request_id == dsr.id)).scalars()
    assert export.status == "ready" and export.expires_at > export.completed_at
    path = Path(app.config["EXPORT_DIR"]) / export.filename
    assert export.size_bytes == path.stat().st_size
    assert export.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not list(Path(app.config["EXPORT_DIR"]).glob(".*.part"))

    z = open_zip(app, export)
    names = set(z.namelist())
    manifest = json.loads(z.read("manifest.json"))
    assert manifest["schema_version"] == 1 and manifest["request_reference"] == dsr.reference
    assert manifest["generated_at"]
    for f in manifest["files"]:
        assert hashlib.sha256(z.read(f["name"])).hexdigest() == f["sha256"], f["name"]
    assert {f["name"] for f in manifest["files"]} | {"manifest.json"} == names
    for cat in ("account", "api_keys", "usage_logs", "support_messages", "billing"):
        assert f"{cat}.json" in names and f"{cat}.csv" in names

    # usage rows equal the database, in JSON and in CSV
    db_usage = db.session.execute(
        select(UsageRecord.request_id, UsageRecord.prompt_tokens)
        .where(UsageRecord.account_id == account_id)
        .order_by(UsageRecord.id)
    ).all()
    usage_json = json.loads(z.read("usage_logs.json"))
    assert [(u["request_id"], u["prompt_tokens"]) for u in usage_json] == [tuple(r) for r in db_usage]
    usage_csv = list(csv.DictReader(io.StringIO(z.read("usage_logs.csv").decode())))
    assert len(usage_csv) == 3210
    assert next(f for f in manifest["files"] if f["name"] == "usage_logs.csv")["rows"] == 3210

    # API key hashes never leave
    assert b"HASH-SECRET" not in b"".join(z.read(n) for n in names)
    # CSV injection neutralised, JSON keeps the original text
    support_csv = list(csv.DictReader(io.StringIO(z.read("support_messages.csv").decode())))
    evil = next(r for r in support_csv if "HYPERLINK" in r["subject"])
    assert evil["subject"].startswith("'=") and evil["body"].startswith("'+")
    support_json = json.loads(z.read("support_messages.json"))
    assert any(m["subject"].startswith("=HYPERLINK") for m in support_json)

    # README lists every category of the inventory, and explains analytics with the opt-out link
    readme = z.read("README.html").decode()
    for cat in INVENTORY:
        assert cat.title in readme
        if cat.exported:
            assert f"{cat.name}.csv" in readme
    assert "tools.google.com/dlpage/gaoptout" in readme
    assert "supervisory authority" in readme and "Art" in readme
    # billing: Stripe not configured here, and the package says so
    assert "not configured" in readme
    assert manifest["notes"]["billing"]

    # the download link is emailed; its token is bound to this export with the limits
    mail = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_export_ready")).scalar_one()
    assert mail.to_addr == dsr.email
    assert "http://portal.test/download/" in mail.body_text
    token = db.session.execute(select(Token).where(Token.purpose == "download")).scalar_one()
    assert token.export_id == export.id and token.max_uses == app.config["DOWNLOAD_MAX"]


def test_build_export_runs_once_when_enqueued_twice(app, redis_conn):
    make_subject_data(usage=10)
    dsr = make_request(RequestStatus.PENDING_REVIEW, "access", email="ada@example.com")
    approve(dsr)
    dsr_id = dsr.id
    from workers.jobs import build_export

    run_jobs(redis_conn)
    assert build_export(dsr_id).startswith("nothing to do")
    assert db.session.execute(select(Export)).scalars().all().__len__() == 1
    assert (
        len(db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_export_ready")).all()) == 1
    )


def test_access_for_someone_we_hold_nothing_about_is_its_own_outcome(app, redis_conn):
    """No empty package and no "your data is ready": the subject is told we hold nothing."""
    from app.mail.models import OutgoingMail

    dsr = make_request(RequestStatus.PENDING_REVIEW, "access", email="stranger@example.com")
    dsr_id = dsr.id
    approve(dsr)
    run_jobs(redis_conn)
    assert db.session.execute(select(Export)).scalars().all() == []
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == "completed" and dsr.outcome == "no_data"
    templates = [m.template for m in db.session.execute(select(OutgoingMail)).scalars()]
    assert "fulfil_export_ready" not in templates and "fulfil_no_data" in templates
    [mail] = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_no_data")).scalars()
    assert "We hold no personal data linked to this address" in mail.body_text
    assert "record of your requests to us" in mail.body_text  # the one thing kept, said truthfully


def test_export_memory_does_not_grow_with_rows(app, tmp_path):
    # Both sizes are past the write batch, the read page and the read-ahead (PostgreSQL: two pages
    # queued beside the one being encoded and the one being fetched), so only growth with rows would show.
    small = make_subject_data(usage=12000)
    big = make_subject_data(email="big@example.com", name="Big User", usage=48000)

    def peak(email: str, name: str) -> int:
        tracemalloc.start()
        try:
            build_package(reference="DSR-TEST", subject=find_subject(email), export_dir=tmp_path, filename=name)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    p_small = peak(small.email, "small.zip")
    p_big = peak(big.email, "big.zip")
    # 4x the rows must not mean more memory (reads, batches and the zip buffer are bounded). On
    # PostgreSQL the read-ahead may hold two more pages (~2 MB) in the big export than the small one
    # ever queued (whether the fetching thread gets ahead depends on timing): a bounded allowance, where
    # rows kept would add ~14 MB here.
    assert p_big < p_small * 1.2 + 2_500_000, (p_small, p_big)
