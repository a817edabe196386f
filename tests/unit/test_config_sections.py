"""``load_config`` per concern: each section reads its own variables, with the defaults the operator
guide gives (the production fail-closed rules are in test_config.py)."""

import pytest

from app.config import PRIVACY_ADDRESS, ConfigError, load_config


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean environment: only what a test sets is read."""
    import os

    for name in list(os.environ):
        if name != "PATH":
            monkeypatch.delenv(name)
    monkeypatch.setenv("APP_ENV", "testing")
    return monkeypatch


def _load(tmp_path):
    return load_config(tmp_path, {"SECRET_KEY": "k" * 40})


def test_config_database_defaults_to_sqlite_in_the_instance_and_pings(tmp_path, env):
    cfg = _load(tmp_path)
    assert cfg["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'portal.db'}"
    assert cfg["SQLALCHEMY_BINDS"] == {"platform": cfg["SQLALCHEMY_DATABASE_URI"]}
    assert cfg["SQLALCHEMY_ENGINE_OPTIONS"] == {"pool_pre_ping": True, "hide_parameters": True}
    assert cfg["ALLOW_SQLITE_IN_PRODUCTION"] is False


def test_config_redis_unset_is_none_and_set_is_read(tmp_path, env):
    assert _load(tmp_path)["REDIS_URL"] is None
    env.setenv("REDIS_URL", "redis://r.internal:6379/3")
    assert _load(tmp_path)["REDIS_URL"] == "redis://r.internal:6379/3"


def test_config_mail_defaults_and_values(tmp_path, env):
    cfg = _load(tmp_path)
    assert (cfg["MAIL_SERVER"], cfg["MAIL_PORT"], cfg["MAIL_USE_TLS"], cfg["MAIL_TIMEOUT"]) == (None, 25, False, 10.0)
    assert cfg["MAIL_DEFAULT_SENDER"] == cfg["PRIVACY_CONTACT"] == PRIVACY_ADDRESS
    assert (cfg["MAIL_SEND_LEASE_SECONDS"], cfg["MAIL_JOB_TIMEOUT_SECONDS"], cfg["MAIL_RETRY_INTERVALS"]) == (
        120.0,
        60.0,
        None,
    )
    for name, value in {
        "MAIL_SERVER": "smtp.internal",
        "MAIL_PORT": "587",
        "MAIL_USE_TLS": "yes",
        "MAIL_TIMEOUT": "2.5",
        "MAIL_DEFAULT_SENDER": "dpo@example.com",
        "PRIVACY_CONTACT": "privacy@example.com",
        "MAIL_RETRY_INTERVALS": "1, 2,3",
    }.items():
        env.setenv(name, value)
    cfg = _load(tmp_path)
    assert (cfg["MAIL_SERVER"], cfg["MAIL_PORT"], cfg["MAIL_USE_TLS"], cfg["MAIL_TIMEOUT"]) == (
        "smtp.internal",
        587,
        True,
        2.5,
    )
    assert (cfg["MAIL_DEFAULT_SENDER"], cfg["PRIVACY_CONTACT"]) == ("dpo@example.com", "privacy@example.com")
    assert cfg["MAIL_RETRY_INTERVALS"] == [1, 2, 3]
    env.setenv("MAIL_RETRY_INTERVALS", "soon")
    with pytest.raises(ConfigError, match="MAIL_RETRY_INTERVALS"):
        _load(tmp_path)


def test_config_web_strips_the_base_url_and_reads_proxies_and_hsts(tmp_path, env):
    cfg = _load(tmp_path)
    assert (cfg["PORTAL_BASE_URL"], cfg["TRUSTED_PROXIES"], cfg["HSTS_MAX_AGE"]) == (
        "http://127.0.0.1:5000",
        0,
        31536000,
    )
    assert (cfg["LOG_FORMAT"], cfg["REQUEST_ID_HEADER"], cfg["PREFERRED_URL_SCHEME"]) == (
        "text",
        "X-Request-ID",
        "http",
    )
    env.setenv("PORTAL_BASE_URL", "https://privacy.example.com/")
    env.setenv("TRUSTED_PROXIES", "2")
    env.setenv("HSTS_MAX_AGE", "60")
    env.setenv("REQUEST_ID_HEADER", "X-Trace")
    cfg = _load(tmp_path)
    assert (cfg["PORTAL_BASE_URL"], cfg["TRUSTED_PROXIES"], cfg["HSTS_MAX_AGE"]) == (
        "https://privacy.example.com",
        2,
        60,
    )
    assert cfg["REQUEST_ID_HEADER"] == "X-Trace"


def test_config_jobs_graces_and_retry_intervals(tmp_path, env):
    cfg = _load(tmp_path)
    assert (cfg["SCHEDULE_STALE_HOURS"], cfg["FULFIL_RETRY_INTERVALS"]) == (26.0, None)
    assert (cfg["RECONCILE_HORSE_GRACE_SECONDS"], cfg["RECONCILE_MAIL_GRACE_SECONDS"]) == (90.0, 30.0)
    env.setenv("FULFIL_RETRY_INTERVALS", "1,2")
    env.setenv("RECONCILE_HORSE_GRACE_SECONDS", "3")
    cfg = _load(tmp_path)
    assert (cfg["FULFIL_RETRY_INTERVALS"], cfg["RECONCILE_HORSE_GRACE_SECONDS"]) == ([1, 2], 3.0)


def test_config_staff_session_lifetime_bounds_the_cookie(tmp_path, env):
    cfg = _load(tmp_path)
    assert (cfg["STAFF_SESSION_IDLE_MINUTES"], cfg["STAFF_SESSION_MAX_HOURS"], cfg["STAFF_REAUTH_MINUTES"]) == (
        30,
        12,
        5,
    )
    assert cfg["PERMANENT_SESSION_LIFETIME"] == 12 * 3600
    assert (cfg["SESSION_COOKIE_NAME"], cfg["SESSION_COOKIE_SECURE"]) == ("session", False)
    env.setenv("STAFF_SESSION_MAX_HOURS", "3")
    assert _load(tmp_path)["PERMANENT_SESSION_LIFETIME"] == 3 * 3600
    env.setenv("STAFF_LOGIN_FREE_ATTEMPTS", "0")
    with pytest.raises(ConfigError, match="STAFF_LOGIN_FREE_ATTEMPTS must be a whole number"):
        _load(tmp_path)


def test_config_uploads_request_limit_follows_the_attachment_limit(tmp_path, env):
    cfg = _load(tmp_path)
    assert cfg["ATTACHMENT_MAX_BYTES"] == 2 * 1024 * 1024
    assert cfg["MAX_CONTENT_LENGTH"] == 2 * 1024 * 1024 + 256 * 1024
    env.setenv("ATTACHMENT_MAX_BYTES", "1000")
    cfg = _load(tmp_path)
    assert (cfg["ATTACHMENT_MAX_BYTES"], cfg["MAX_CONTENT_LENGTH"]) == (1000, 1000 + 256 * 1024)


def test_config_lifetimes_defaults_and_overrides(tmp_path, env):
    cfg = _load(tmp_path)
    assert {k: cfg[k] for k in ("STATUS_LINK_DAYS", "CLOSED_REQUEST_GRACE_DAYS", "DUE_SOON_DAYS")} == {
        "STATUS_LINK_DAYS": 30,
        "CLOSED_REQUEST_GRACE_DAYS": 30,
        "DUE_SOON_DAYS": 7,
    }
    assert (cfg["SUBJECT_REMINDER_DAYS"], cfg["DUPLICATE_SUBMIT_SECONDS"]) == (7, 5)
    env.setenv("DUE_SOON_DAYS", "3")
    env.setenv("SUBJECT_REMINDER_DAYS", "2")
    cfg = _load(tmp_path)
    assert (cfg["DUE_SOON_DAYS"], cfg["SUBJECT_REMINDER_DAYS"]) == (3, 2)


def test_config_testing_email_hash_key_derives_from_the_signing_key_unless_given(tmp_path, env):
    assert _load(tmp_path)["EMAIL_HASH_KEY"] == "test-derived-" + "k" * 40
    assert load_config(tmp_path, {"SECRET_KEY": "k" * 40, "EMAIL_HASH_KEY": "h" * 40})["EMAIL_HASH_KEY"] == "h" * 40
    env.setenv("EMAIL_HASH_KEY", "from-env")
    assert _load(tmp_path)["EMAIL_HASH_KEY"] == "from-env"


def test_config_request_policy_flags_default_off(tmp_path, env):
    cfg = _load(tmp_path)
    assert cfg["DELETION_REQUIRES_SECOND_APPROVER"] is False and cfg["ACCESS_REVIEW_BEFORE_RELEASE"] is False
    env.setenv("DELETION_REQUIRES_SECOND_APPROVER", "1")
    env.setenv("SUPERVISORY_AUTHORITIES_GDPR", "DPC|https://dataprotection.ie")
    cfg = _load(tmp_path)
    assert cfg["DELETION_REQUIRES_SECOND_APPROVER"] is True
    assert cfg["SUPERVISORY_AUTHORITIES_GDPR"] == "DPC|https://dataprotection.ie"


def test_config_mailbox_defaults_and_size_limit(tmp_path, env):
    cfg = _load(tmp_path)
    assert (cfg["MAIL_IMAP_URL"], cfg["MAIL_IMAP_KEEP"], cfg["MAIL_IMAP_TIMEOUT"]) == (None, False, 30.0)
    assert cfg["MAIL_IMAP_MAX_BYTES"] == 25 * 1024 * 1024
    env.setenv("MAIL_IMAP_MAX_BYTES", "-1")
    with pytest.raises(ConfigError, match="MAIL_IMAP_MAX_BYTES"):
        _load(tmp_path)


def test_config_overrides_win_over_every_section(tmp_path, env):
    env.setenv("MAIL_SERVER", "smtp.internal")
    env.setenv("DUE_SOON_DAYS", "3")
    cfg = load_config(tmp_path, {"SECRET_KEY": "k" * 40, "MAIL_SERVER": None, "DUE_SOON_DAYS": 9})
    assert (cfg["MAIL_SERVER"], cfg["DUE_SOON_DAYS"]) == (None, 9)
