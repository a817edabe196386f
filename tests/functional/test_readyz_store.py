"""``/readyz`` checks the export store: an S3 bucket answers a HeadBucket within a short timeout, a
directory exists (or can be made) and takes a file. A failure is 503 with a code, never a secret."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from app import create_app
from app.extensions import db
from tests.conftest import make_config
from tests.s3_fixtures import S3_ENV


def readyz(cfg: dict, app=None):
    """``/readyz`` of an app made for one check (its database connections closed afterwards)."""
    app = app or create_app(cfg)
    try:
        return app.test_client().get("/readyz")
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


def assert_no_secret(response, *secrets: str) -> None:
    text = response.get_data(as_text=True)
    for secret in (S3_ENV["AWS_ACCESS_KEY_ID"], S3_ENV["AWS_SECRET_ACCESS_KEY"], *secrets):
        assert secret not in text, secret


def test_readyz_store_s3_bucket_there_is_ready(migrated, redis_url, tmp_path, s3_bucket, s3_endpoint):
    _client, bucket = s3_bucket
    cfg = make_config(
        migrated, redis_url, tmp_path, EXPORT_STORAGE_URL=f"s3://{bucket}/dsr", S3_ENDPOINT_URL=s3_endpoint
    )
    r = readyz(cfg)
    assert r.status_code == 200, r.json
    assert r.json["checks"]["export_store"] == "ok"


def test_readyz_store_s3_bucket_missing_is_503_with_a_code(migrated, redis_url, tmp_path, s3_endpoint):
    bucket = "no-such-bucket-for-readyz"
    cfg = make_config(
        migrated, redis_url, tmp_path, EXPORT_STORAGE_URL=f"s3://{bucket}/dsr", S3_ENDPOINT_URL=s3_endpoint
    )
    r = readyz(cfg)
    assert r.status_code == 503
    assert r.json["status"] == "not ready"
    assert r.json["checks"]["export_store"] == "error: bucket_missing"
    assert r.json["checks"]["database"] == "ok"
    assert_no_secret(r, bucket, s3_endpoint)


@pytest.fixture
def silent_endpoint():
    """An S3 endpoint that accepts connections and never answers (a hung store)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_readyz_store_s3_endpoint_hung_is_503_quickly(migrated, redis_url, tmp_path, s3_endpoint, silent_endpoint):
    cfg = make_config(
        migrated, redis_url, tmp_path, EXPORT_STORAGE_URL="s3://exports/dsr", S3_ENDPOINT_URL=silent_endpoint
    )
    app = create_app(cfg)
    started = time.monotonic()
    r = readyz(cfg, app)
    elapsed = time.monotonic() - started
    assert r.status_code == 503
    assert r.json["checks"]["export_store"] == "error: unreachable"
    assert elapsed < 6, elapsed  # one attempt with a 2 s read timeout, not the jobs' 60 s and retries
    assert_no_secret(r, silent_endpoint)


def test_readyz_store_s3_endpoint_down_is_503(migrated, redis_url, tmp_path, s3_endpoint):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    cfg = make_config(migrated, redis_url, tmp_path, EXPORT_STORAGE_URL="s3://exports/dsr", S3_ENDPOINT_URL=closed)
    started = time.monotonic()
    r = readyz(cfg)
    assert r.status_code == 503
    assert r.json["checks"]["export_store"] == "error: unreachable"
    assert time.monotonic() - started < 6


def test_readyz_store_directory_made_and_writable_is_ready(migrated, redis_url, tmp_path):
    directory = tmp_path / "fresh" / "exports"  # not there yet: made as the first export would
    r = readyz(make_config(migrated, redis_url, tmp_path, EXPORT_STORAGE_URL=str(directory)))
    assert r.status_code == 200, r.json
    assert r.json["checks"]["export_store"] == "ok"
    assert directory.is_dir() and not list(directory.iterdir())  # the probe file is gone


def test_readyz_store_directory_missing_is_503(migrated, redis_url, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    r = readyz(make_config(migrated, redis_url, tmp_path, EXPORT_STORAGE_URL=str(blocker / "exports")))
    assert r.status_code == 503
    assert r.json["checks"]["export_store"] == "error: missing"
    assert_no_secret(r, str(blocker))


def test_readyz_store_directory_read_only_is_503(migrated, redis_url, tmp_path):
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    if os.geteuid() == 0:
        # root writes through file modes; sysfs takes no new file from anyone
        directory = Path("/sys/kernel")
    try:
        r = readyz(make_config(migrated, redis_url, tmp_path, EXPORT_STORAGE_URL=str(directory)))
    finally:
        (tmp_path / "read-only").chmod(0o755)
    assert r.status_code == 503
    assert r.json["checks"]["export_store"] == "error: not_writable"
    assert_no_secret(r, str(directory))
