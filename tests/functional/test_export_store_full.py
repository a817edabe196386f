"""The export store full (issue 15's faults): a disk that fills while a package is written.

A real full file system: a small tmpfs mounted as the export directory (root only; without the right to
mount, the tests skip and say so). The job must keep the request for a retry (space comes back when
expired packages are purged or an operator grows the volume), remove its half-written file at once so it
holds no space and no personal data, tell nobody the package is ready, and complete exactly once when
space is back.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from app.dsr.models import DsrRequest, Export, Token
from app.extensions import db
from app.mail.models import OutgoingMail
from tests.conftest import make_config
from tests.factories import make_request
from tests.functional._fulfil import make_subject_data, run_jobs
from tests.functional.admin_support import act, fresh_g, staff_client  # noqa: F401 - fresh_g: a fixture


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "exports"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k,mode=0700", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or done.returncode}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def grow(mount: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)


@pytest.fixture
def app_config(migrated, redis_url, tmp_path, small_disk):
    return make_config(migrated, redis_url, tmp_path, EXPORT_DIR=str(small_disk))


@pytest.fixture
def officer(app):
    client, _ = staff_client(app, "officer")
    return client


def test_a_full_export_store_retries_removes_its_partial_file_and_reports_nothing(app, officer, redis_conn, small_disk):
    from app.queue import get_queue
    from workers.jobs import build_export

    make_subject_data(usage=6000)  # a package well over the 96 KB the disk holds
    dsr = make_request("pending_review", "access", email="ada@example.com")
    act(officer, dsr, "approve")
    dsr_id = dsr.id
    run_jobs(redis_conn)

    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == "in_progress", (dsr.status, dsr.last_error)
    assert "full" in (dsr.last_error or "") and "will retry" in (dsr.last_error or "")
    assert list(small_disk.iterdir()) == [], "a half-written package was left on the full disk"
    assert not db.session.execute(select(Export).where(Export.status == "ready")).first()
    assert not db.session.execute(select(Token).where(Token.purpose == "download")).first()
    assert not db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_export_ready")).first()
    assert get_queue("fulfilment").scheduled_job_registry.get_job_ids() == [f"fulfil-{dsr_id}"]

    grow(small_disk)  # space is back; the retry runs (here, directly)
    assert build_export(dsr_id).startswith("export ")
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == "completed"
    (export,) = db.session.execute(select(Export).where(Export.request_id == dsr_id)).scalars()
    assert [p.name for p in small_disk.iterdir()] == [export.filename]
    assert (
        len(
            db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_export_ready"))
            .scalars()
            .all()
        )
        == 1
    )
