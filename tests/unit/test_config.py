import os
import subprocess
import sys

import pytest

from app.config import ConfigError, load_config

PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "kT3v9QmZ2rW8yL5nB7xC4pF6hJ1sD0gA",
    "EMAIL_HASH_KEY": "e" * 8 + "kT3v9QmZ2rW8yL5nB7xC4pF6hJ1sD0gA",
    "DATABASE_URL": "postgresql://dsr@db.internal/dsr",
    "REDIS_URL": "redis://:secret@redis.internal:6379/0",
    "PORTAL_BASE_URL": "https://privacy.example.com",
    "MAIL_SERVER": "smtp.internal",
}


@pytest.fixture
def production(monkeypatch):
    for key, value in PRODUCTION.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ALLOW_SQLITE_IN_PRODUCTION", raising=False)
    return monkeypatch


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


@pytest.mark.parametrize("weak", ["a", "short-but-not-empty", "x" * 40, "ab" * 32, "0123456" * 6])
def test_production_refuses_a_secret_key_under_32_random_characters(tmp_path, monkeypatch, weak):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", weak)
    with pytest.raises(ConfigError, match="at least 32") as err:
        load_config(tmp_path)
    assert len(weak) < 4 or weak not in str(err.value)  # the error explains; it does not echo the key


def test_production_accepts_a_generated_secret_key(tmp_path, production):
    import secrets

    monkeypatch = production
    for key in (secrets.token_hex(32), secrets.token_urlsafe(32), secrets.token_urlsafe(24)):
        monkeypatch.setenv("SECRET_KEY", key)
        assert load_config(tmp_path)["SECRET_KEY"] == key


def test_production_boot_with_a_one_letter_secret_key_fails_as_a_process(tmp_path):
    env = {
        "APP_ENV": "production",
        "SECRET_KEY": "a",
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    proc = subprocess.run(
        [sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode != 0
    assert "SECRET_KEY must be at least 32 random characters" in proc.stderr


def test_production_cookies_are_secure(tmp_path, production):
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
    monkeypatch.setenv("PLATFORM_DATABASE_URL", "sqlite:////tmp/two.db")
    assert load_config(tmp_path, {"SECRET_KEY": "k"})["SQLALCHEMY_BINDS"]["platform"] == "sqlite:////tmp/two.db"


def test_production_without_email_hash_key_refuses_to_start(tmp_path, production):
    production.delenv("EMAIL_HASH_KEY", raising=False)
    with pytest.raises(ConfigError, match="EMAIL_HASH_KEY"):
        load_config(tmp_path)


def test_development_generates_a_private_email_hash_key(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.delenv("EMAIL_HASH_KEY", raising=False)
    first = load_config(tmp_path)["EMAIL_HASH_KEY"]
    assert first == load_config(tmp_path)["EMAIL_HASH_KEY"] and len(first) >= 64
    assert (tmp_path / "email_hash_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL", "PORTAL_BASE_URL", "MAIL_SERVER"])
def test_production_fails_closed_without_each_external_part(tmp_path, production, missing):
    production.delenv(missing)
    with pytest.raises(ConfigError, match=missing):
        load_config(tmp_path)


def test_production_needs_https_and_refuses_sqlite_unless_allowed(tmp_path, production):
    production.setenv("PORTAL_BASE_URL", "http://privacy.example.com")
    with pytest.raises(ConfigError, match="https"):
        load_config(tmp_path)
    production.setenv("PORTAL_BASE_URL", "https://privacy.example.com")
    production.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(ConfigError, match="SQLite"):
        load_config(tmp_path)
    production.setenv("ALLOW_SQLITE_IN_PRODUCTION", "1")
    assert load_config(tmp_path)["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")


def test_production_boot_refusal_is_one_clear_line_and_starts_no_redis(tmp_path):
    env = {**{k: v for k, v in PRODUCTION.items() if k != "REDIS_URL"}, "PATH": os.environ["PATH"]}
    proc = subprocess.run(
        [sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["dsr-portal: configuration error: APP_ENV=production needs REDIS_URL set (no embedded or "
                     "default fallback)"]  # fmt: skip
    assert not (tmp_path / "redis").exists()
