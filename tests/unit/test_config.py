import subprocess
import sys

import pytest

from app import create_app
from app.config import ConfigError, load_config


def test_production_without_secret_key_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config(tmp_path)


def test_production_boot_fails_as_a_process(tmp_path):
    env = {
        "APP_ENV": "production",
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    proc = subprocess.run(
        [sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode != 0
    assert "SECRET_KEY must be set" in proc.stderr


def test_development_generates_and_reuses_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("APP_ENV", "development")
    first = load_config(tmp_path)["SECRET_KEY"]
    assert len(first) >= 64
    assert load_config(tmp_path)["SECRET_KEY"] == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_cookies_are_secure(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    monkeypatch.setenv("EMAIL_HASH_KEY", "k" * 40)
    cfg = load_config(tmp_path)
    assert cfg["SESSION_COOKIE_SECURE"] and cfg["SESSION_COOKIE_HTTPONLY"]
    assert cfg["SESSION_COOKIE_SAMESITE"] in ("Lax", "Strict")


def test_unknown_app_env_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_ENV", "staging")
    with pytest.raises(ConfigError):
        load_config(tmp_path)


def test_platform_database_defaults_to_portal_database(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/one.db")
    monkeypatch.delenv("PLATFORM_DATABASE_URL", raising=False)
    cfg = load_config(tmp_path, {"SECRET_KEY": "k"})
    assert cfg["SQLALCHEMY_BINDS"]["platform"] == "sqlite:////tmp/one.db"
    assert create_app  # the factory is importable without side effects


def test_production_without_email_hash_key_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    monkeypatch.delenv("EMAIL_HASH_KEY", raising=False)
    with pytest.raises(ConfigError, match="EMAIL_HASH_KEY"):
        load_config(tmp_path)


def test_development_generates_a_private_email_hash_key(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.delenv("EMAIL_HASH_KEY", raising=False)
    first = load_config(tmp_path)["EMAIL_HASH_KEY"]
    assert first == load_config(tmp_path)["EMAIL_HASH_KEY"] and len(first) >= 64
    assert (tmp_path / "email_hash_key").stat().st_mode & 0o077 == 0
