"""EXPORT_STORAGE_URL chooses the export store: a directory (EXPORT_DIR by default) or S3; anything else
refuses to boot. The start-up line names the store without credentials."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, load_config, parse_storage_url
from app.exports import store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("EXPORT_STORAGE_URL", "EXPORT_DIR", "S3_ENDPOINT_URL", "FULFIL_RETRY_INTERVALS", "APP_ENV"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def cfg(tmp_path, **overrides) -> dict:
    return load_config(tmp_path, {"APP_ENV": "testing", "SECRET_KEY": "x" * 40, **overrides})


def test_default_is_the_export_dir(tmp_path):
    chosen = store.from_config(cfg(tmp_path))
    assert isinstance(chosen, store.DirectoryStore) and chosen.directory == tmp_path / "exports"
    chosen = store.from_config(cfg(tmp_path, EXPORT_DIR=str(tmp_path / "elsewhere")))
    assert chosen.directory == tmp_path / "elsewhere"


def test_a_directory_url_is_a_directory_store(tmp_path, clean_env):
    clean_env.setenv("EXPORT_STORAGE_URL", str(tmp_path / "pkgs"))
    assert store.from_config(cfg(tmp_path)).directory == tmp_path / "pkgs"
    clean_env.setenv("EXPORT_STORAGE_URL", f"file://{tmp_path}/pkgs2")
    assert store.from_config(cfg(tmp_path)).directory == tmp_path / "pkgs2"


def test_an_s3_url_is_an_s3_store_staging_in_export_dir(tmp_path, clean_env):
    clean_env.setenv("EXPORT_STORAGE_URL", "s3://dsr-exports/prod/packages/")
    clean_env.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9")
    chosen = store.from_config(cfg(tmp_path, EXPORT_DIR=str(tmp_path / "scratch")))
    assert isinstance(chosen, store.S3Store)
    assert (chosen.bucket, chosen.prefix, chosen.key("a.zip")) == (
        "dsr-exports",
        "prod/packages",
        "prod/packages/a.zip",
    )
    assert chosen.staging_dir() == tmp_path / "scratch"
    assert store.S3Store("b", "", client=None, staging=tmp_path).key("a.zip") == "a.zip"


@pytest.mark.parametrize("url", ["gs://bucket/x", "s3:///no-bucket", "https://bucket.s3.amazonaws.com/x"])
def test_other_urls_refuse_to_boot(tmp_path, clean_env, url):
    clean_env.setenv("EXPORT_STORAGE_URL", url)
    with pytest.raises(ConfigError, match="EXPORT_STORAGE_URL"):
        cfg(tmp_path)


def test_parse_storage_url():
    assert parse_storage_url("/srv/exports") == ("dir", "/srv/exports", "")
    assert parse_storage_url("s3://b") == ("s3", "b", "")


def test_fulfil_retry_intervals(tmp_path, clean_env):
    assert cfg(tmp_path)["FULFIL_RETRY_INTERVALS"] is None
    clean_env.setenv("FULFIL_RETRY_INTERVALS", "2, 3,5")
    assert cfg(tmp_path)["FULFIL_RETRY_INTERVALS"] == [2, 3, 5]
    clean_env.setenv("FULFIL_RETRY_INTERVALS", "soon")
    with pytest.raises(ConfigError, match="FULFIL_RETRY_INTERVALS"):
        cfg(tmp_path)


def test_startup_line_names_the_store_without_credentials(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "APP_ENV": "development",
        "SECRET_KEY": "startup-line-" + "k" * 32,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "EXPORT_STORAGE_URL": "s3://dsr-exports/prod",
        "S3_ENDPOINT_URL": "https://key:topsecret@minio.internal:9000",
    }
    proc = subprocess.run(
        [sys.executable, "-c", "import wsgi"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "exports=s3://dsr-exports/prod at https://minio.internal:9000" in proc.stderr
    assert "topsecret" not in proc.stderr and "key:" not in proc.stderr


def test_download_accel_modes_and_prefix(tmp_path, clean_env):
    assert cfg(tmp_path)["DOWNLOAD_ACCEL"] == "none"
    chosen = cfg(tmp_path, DOWNLOAD_ACCEL="X-Accel-Redirect", DOWNLOAD_ACCEL_PREFIX="/internal/exports")
    assert chosen["DOWNLOAD_ACCEL"] == "x-accel-redirect" and chosen["DOWNLOAD_ACCEL_PREFIX"] == "/internal/exports/"
    clean_env.setenv("DOWNLOAD_ACCEL", "x-sendfile")
    assert cfg(tmp_path)["DOWNLOAD_ACCEL"] == "x-sendfile"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DOWNLOAD_ACCEL", "sendfile"),
        ("DOWNLOAD_ACCEL_PREFIX", "exports/"),
        ("DOWNLOAD_ACCEL_PREFIX", "/a/../b/"),
        ("DOWNLOAD_ACCEL_PREFIX", "/a b/"),
        ("DOWNLOAD_ACCEL_PREFIX", "/x\r\nSet-Cookie: a=b/"),
        ("DOWNLOAD_ACCEL_PREFIX", "//evil/"),
    ],
)
def test_download_accel_bad_values_refuse_to_boot(tmp_path, clean_env, name, value):
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        cfg(tmp_path)
