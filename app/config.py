"""Configuration from the environment (names fixed by INTERFACE.md).

Secrets come only from the environment. In development a signing key is generated once into
``instance/`` so sessions survive restarts; in production the app refuses to boot without one.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, overload


class ConfigError(RuntimeError):
    """The environment does not describe a bootable app."""


TRUE = {"1", "true", "yes", "on"}
# The privacy address: the sender of our mail and the contact every page, mail and package names, unless
# MAIL_DEFAULT_SENDER / PRIVACY_CONTACT say otherwise.
PRIVACY_ADDRESS = "privacy@chatgpttech.mobi"
# How long a job's heartbeats (rq's and the request row's) must be quiet before its worker is presumed
# gone (RECONCILE_HORSE_GRACE_SECONDS; app.queue.LEFTOVER_GRACE, workers.reconcile.horse_grace).
HEARTBEAT_GRACE_SECONDS = 90


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in TRUE


def _positive(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, not {raw!r}")
    return value


def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = (os.environ.get(name) or default).strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be {' or '.join(allowed)}, not {value!r}")
    return value


def _header_name(name: str, default: str) -> str:
    value = (os.environ.get(name) or default).strip()
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
        raise ConfigError(f"{name} must be an HTTP header name (letters, digits, hyphens), not {value!r}")
    return value


STAFF_ROLES = ("admin", "officer", "auditor")
DOWNLOAD_ACCEL_MODES = ("none", "x-accel-redirect", "x-sendfile")


def parse_roles(value: str | None, name: str = "TOTP_REQUIRED_ROLES") -> frozenset[str]:
    """Comma-separated staff roles; an empty string means none."""
    roles = frozenset(r.strip().lower() for r in (value or "").split(",") if r.strip())
    unknown = roles - set(STAFF_ROLES)
    if unknown:
        raise ConfigError(f"{name} lists unknown roles {sorted(unknown)}; use {', '.join(STAFF_ROLES)} or empty")
    return roles


def _intervals(value: str | None, name: str = "MAIL_RETRY_INTERVALS") -> list[int] | None:
    if not value or not value.strip():
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()] or None
    except ValueError as exc:
        raise ConfigError(f"{name} must be comma-separated seconds, not {value!r}") from exc


MIN_SECRET_KEY_LENGTH = 32
SECRET_KEY_ADVICE = (
    f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} random characters when APP_ENV=production "
    "(it signs sessions and keys the audit trail's hashes); generate one with "
    "python -c 'import secrets; print(secrets.token_hex(32))'"
)


def secret_key_problem(key: str) -> str | None:
    """Why ``key`` is too weak to sign production sessions; None when it looks random enough.

    Length is the main test; a key of one repeated character or a repeated short pattern is long but
    not random. (The error says what is needed and never echoes the key.)"""
    if len(key) < MIN_SECRET_KEY_LENGTH:
        return f"{SECRET_KEY_ADVICE}; the one given has {len(key)}"
    periodic = any(key == (key[:p] * (len(key) // p + 1))[: len(key)] for p in range(1, len(key) // 2 + 1))
    if len(set(key)) < 8 or periodic:
        return f"{SECRET_KEY_ADVICE}; the one given repeats a few characters"
    return None


def _secret_key(env: str, instance_path: Path) -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    if env == "production":
        raise ConfigError("SECRET_KEY must be set when APP_ENV=production")
    keyfile = instance_path / "secret_key"
    if keyfile.exists():
        return keyfile.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


def _instance_secret(name: str, env: str, instance_path: Path, fallback: str | None) -> str:
    """A secret from the environment; in development one generated once into ``instance/`` (0600);
    in production it must be set; in tests, derived from the test signing key."""
    value = os.environ.get(name)
    if value:
        return value
    if env == "production":
        raise ConfigError(f"{name} must be set when APP_ENV=production")
    if env == "testing" and fallback:
        return "test-derived-" + fallback
    keyfile = instance_path / name.lower()
    if keyfile.exists():
        return keyfile.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    try:
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return keyfile.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def load_config(instance_path: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from the environment, then apply ``overrides``.

    Each concern reads its own variables (the ``_section`` functions below); the checks that need the
    whole mapping (storage, mailbox, production's fail-closed rules) run last, after the overrides."""
    given = dict(overrides or {})
    env = _app_env(given)
    production = env == "production"
    secret = _signing_key(env, instance_path, given)
    cfg: dict[str, Any] = {"APP_ENV": env, "SECRET_KEY": secret, "TESTING": env == "testing"}
    for section in (
        _database(instance_path),
        _redis(),
        _mail(),
        _stripe(),
        _storage(instance_path),
        _web(production),
        _jobs(),
        _rate_limits(),
        _staff_sessions(production),
        _uploads(),
        _lifetimes(),
        _secrets(env, instance_path, secret, given),
        _request_policy(),
        _mailbox(),
    ):
        cfg.update(section)
    cfg.update(given)
    _check_export_storage(cfg)
    _check_download_accel(cfg)
    _check_mailbox(cfg, production)
    if production:
        _refuse_unsafe_production(cfg, given)
    return cfg


@overload
def _text(name: str) -> str | None: ...
@overload
def _text(name: str, default: str) -> str: ...
def _text(name: str, default: str | None = None) -> str | None:
    """The variable's value; unset or empty: ``default``."""
    return os.environ.get(name) or default


def _app_env(overrides: Mapping[str, Any]) -> str:
    env = str(overrides.get("APP_ENV") or os.environ.get("APP_ENV", "development"))
    if env not in {"development", "production", "testing"}:
        raise ConfigError(f"APP_ENV must be development, production or testing, not {env!r}")
    return env


def _signing_key(env: str, instance_path: Path, overrides: Mapping[str, Any]) -> str:
    """``SECRET_KEY`` (an override wins), strong enough for production."""
    secret = overrides["SECRET_KEY"] if "SECRET_KEY" in overrides else _secret_key(env, instance_path)
    problem = secret_key_problem(secret or "") if env == "production" else None
    if problem:
        raise ConfigError(problem)
    return secret


def _database(instance_path: Path) -> dict[str, Any]:
    database_url = _text("DATABASE_URL") or f"sqlite:///{instance_path / 'portal.db'}"
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_BINDS": {"platform": _text("PLATFORM_DATABASE_URL") or database_url},
        # hide_parameters: a statement's parameters (names, addresses, message bodies) never reach an
        # exception's text, so no traceback in a log carries them.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "hide_parameters": True},
        "ALLOW_SQLITE_IN_PRODUCTION": _bool(os.environ.get("ALLOW_SQLITE_IN_PRODUCTION")),
    }


def _redis() -> dict[str, Any]:
    return {"REDIS_URL": _text("REDIS_URL")}


def _mail() -> dict[str, Any]:
    return {
        "MAIL_SERVER": _text("MAIL_SERVER"),
        "MAIL_PORT": int(os.environ.get("MAIL_PORT") or 25),
        "MAIL_USE_TLS": _bool(os.environ.get("MAIL_USE_TLS")),
        "MAIL_USERNAME": _text("MAIL_USERNAME"),
        "MAIL_PASSWORD": _text("MAIL_PASSWORD"),
        "MAIL_DEFAULT_SENDER": _text("MAIL_DEFAULT_SENDER", PRIVACY_ADDRESS),
        # The address every page, mail and package names for privacy questions.
        "PRIVACY_CONTACT": _text("PRIVACY_CONTACT", PRIVACY_ADDRESS),
        "MAIL_TIMEOUT": float(os.environ.get("MAIL_TIMEOUT") or 10),
        "STAFF_ALERT_EMAIL": _text("STAFF_ALERT_EMAIL"),
        # Mail retry backoff in seconds (comma-separated); unset: the built-in schedule (app.mail.MAIL_RETRY).
        "MAIL_RETRY_INTERVALS": _intervals(os.environ.get("MAIL_RETRY_INTERVALS")),
        # How long a send attempt owns a message; a claim older than this belongs to a dead attempt.
        "MAIL_SEND_LEASE_SECONDS": float(os.environ.get("MAIL_SEND_LEASE_SECONDS") or 120),
        # How long rq lets one send attempt run (the lease is kept longer than this plus MAIL_TIMEOUT).
        "MAIL_JOB_TIMEOUT_SECONDS": float(os.environ.get("MAIL_JOB_TIMEOUT_SECONDS") or 60),
    }


def _stripe() -> dict[str, Any]:
    return {"STRIPE_API_KEY": _text("STRIPE_API_KEY"), "STRIPE_API_BASE": _text("STRIPE_API_BASE")}


def _storage(instance_path: Path) -> dict[str, Any]:
    return {
        "EXPORT_DIR": _text("EXPORT_DIR") or str(instance_path / "exports"),
        # Where packages are stored (app.exports.store): a directory, or s3://bucket/prefix (then
        # EXPORT_DIR is only this machine's scratch space); unset: EXPORT_DIR.
        "EXPORT_STORAGE_URL": _text("EXPORT_STORAGE_URL"),
        # An S3-compatible store's address (MinIO, Ceph...); unset: AWS S3 in the AWS_REGION.
        "S3_ENDPOINT_URL": _text("S3_ENDPOINT_URL"),
        # Who sends a counted download's bytes (app.portal.package_response): the app itself, or, for a
        # directory store only, the front server told by X-Accel-Redirect (nginx: DOWNLOAD_ACCEL_PREFIX is
        # its internal location) or X-Sendfile (Apache mod_xsendfile, lighttpd). S3 always streams.
        "DOWNLOAD_ACCEL": _choice("DOWNLOAD_ACCEL", DOWNLOAD_ACCEL_MODES, "none"),
        "DOWNLOAD_ACCEL_PREFIX": _text("DOWNLOAD_ACCEL_PREFIX", "/_exports/"),
    }


def _web(production: bool) -> dict[str, Any]:
    return {
        # Log lines (app.logs): one JSON object a line for a collector (production's default), or text.
        "LOG_FORMAT": _choice("LOG_FORMAT", ("text", "json"), "json" if production else "text"),
        # The incoming header a proxy's request id is read from (else one is made); echoed in responses.
        "REQUEST_ID_HEADER": _header_name("REQUEST_ID_HEADER", "X-Request-ID"),
        "PORTAL_BASE_URL": (os.environ.get("PORTAL_BASE_URL") or "http://127.0.0.1:5000").rstrip("/"),
        # Proxy hops whose X-Forwarded-For/Proto/Host are trusted (werkzeug's ProxyFix); 0: none are.
        "TRUSTED_PROXIES": int(os.environ.get("TRUSTED_PROXIES") or 0),
        # Bearer token /metrics requires; unset: /metrics answers on loopback only.
        "METRICS_TOKEN": _text("METRICS_TOKEN"),
        # Strict-Transport-Security max-age in production (seconds); 0 sends none.
        "HSTS_MAX_AGE": int(os.environ.get("HSTS_MAX_AGE") or 31536000),
        "PREFERRED_URL_SCHEME": "https" if production else "http",
        "WTF_CSRF_TIME_LIMIT": 8 * 3600,
    }


def _jobs() -> dict[str, Any]:
    return {
        # A daily job that has run before and not succeeded for this long makes /readyz not ready.
        "SCHEDULE_STALE_HOURS": float(os.environ.get("SCHEDULE_STALE_HOURS") or 26),
        # Fulfilment retry backoff for transient errors (Stripe or the export store unreachable), one
        # retry per interval; unset: 30 s, 2 min, 10 min, 30 min.
        "FULFIL_RETRY_INTERVALS": _intervals(os.environ.get("FULFIL_RETRY_INTERVALS"), "FULFIL_RETRY_INTERVALS"),
        # How long a request's heartbeat must be quiet before a job whose worker died is re-run.
        "RECONCILE_HORSE_GRACE_SECONDS": float(
            os.environ.get("RECONCILE_HORSE_GRACE_SECONDS") or HEARTBEAT_GRACE_SECONDS
        ),
        # How old a queued mail must be before the reconciler re-enqueues it.
        "RECONCILE_MAIL_GRACE_SECONDS": float(os.environ.get("RECONCILE_MAIL_GRACE_SECONDS") or 30),
    }


def _rate_limits() -> dict[str, Any]:
    # Flask-Limiter syntax; RATELIMIT_ENABLED=false turns them off.
    return {
        "RATELIMIT_ENABLED": _bool(os.environ.get("RATELIMIT_ENABLED"), default=True),
        "RATELIMIT_INTAKE_IP": _text("RATELIMIT_INTAKE_IP", "20 per hour"),
        "RATELIMIT_INTAKE_EMAIL": _text("RATELIMIT_INTAKE_EMAIL", "5 per hour"),
        "RATELIMIT_VERIFY": _text("RATELIMIT_VERIFY", "30 per hour"),
        "RATELIMIT_LOGIN": _text("RATELIMIT_LOGIN", "30 per 15 minutes"),
        "RATELIMIT_HEADERS_ENABLED": False,
        # While Redis is unreachable each process counts the same limits in its own memory (Flask-Limiter's
        # fallback) and checks Redis again as it goes: the portal keeps taking requests, still limited.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": _bool(
            os.environ.get("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"), default=True
        ),
    }


def _staff_sessions(production: bool) -> dict[str, Any]:
    session_max_hours = _positive("STAFF_SESSION_MAX_HOURS", 12)
    return {
        # Staff sessions (server-side, app.staff.sessions): idle timeout, absolute lifetime, and how
        # recently the password (and second factor) must have been entered for staff management and settings.
        "STAFF_SESSION_IDLE_MINUTES": _positive("STAFF_SESSION_IDLE_MINUTES", 30),
        "STAFF_SESSION_MAX_HOURS": session_max_hours,
        "STAFF_REAUTH_MINUTES": _positive("STAFF_REAUTH_MINUTES", 5),
        # Roles that cannot use the dashboard without a second factor (unset: admin; empty: none). The
        # admin setting "require TOTP for every staff member" adds every role (app.staff.policy).
        "TOTP_REQUIRED_ROLES": parse_roles(os.environ.get("TOTP_REQUIRED_ROLES", "admin")),
        # How long an emailed (or printed) second-factor enrolment link works; it works once.
        "STAFF_ENROL_LINK_HOURS": _positive("STAFF_ENROL_LINK_HOURS", 72),
        # Sign-in delays (app.staff.throttle), per account and client address: failures allowed before
        # delays start, the first delay (doubling with each further failure) and its cap.
        "STAFF_LOGIN_FREE_ATTEMPTS": _positive("STAFF_LOGIN_FREE_ATTEMPTS", 5),
        "STAFF_LOGIN_DELAY_SECONDS": _positive("STAFF_LOGIN_DELAY_SECONDS", 30),
        "STAFF_LOGIN_MAX_DELAY_SECONDS": _positive("STAFF_LOGIN_MAX_DELAY_SECONDS", 900),
        # Cookies: secure in production, never readable by script, not sent cross-site. In production the
        # session cookie has the __Host- prefix: the browser only accepts it Secure, for path / and
        # without a Domain, so no sibling subdomain can set or overwrite it.
        "SESSION_COOKIE_NAME": "__Host-session" if production else "session",
        "SESSION_COOKIE_PATH": "/",
        "SESSION_COOKIE_DOMAIN": None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": production,
        # The cookie never outlives the session record behind it.
        "PERMANENT_SESSION_LIFETIME": session_max_hours * 3600,
    }


def _uploads() -> dict[str, Any]:
    # Forms are small; only a subject's attachment (ATTACHMENT_MAX_BYTES) makes a request larger.
    attachment_max = int(os.environ.get("ATTACHMENT_MAX_BYTES") or 2 * 1024 * 1024)
    return {
        "ATTACHMENT_MAX_BYTES": attachment_max,
        # Where attached files are kept (0600, outside the web root); web and workers must share it.
        "ATTACHMENT_DIR": _text("ATTACHMENT_DIR"),
        "MAX_CONTENT_LENGTH": attachment_max + 256 * 1024,
    }


def _lifetimes() -> dict[str, Any]:
    """Deadlines and lifetimes: of what we send people, of what we keep, and staff's "due soon"."""
    return {
        "VERIFY_TOKEN_HOURS": 24,
        "UNVERIFIED_EXPIRY_DAYS": 7,
        "DOWNLOAD_DAYS": 7,
        "DOWNLOAD_MAX": 5,
        # Unset: the inventory's retention_days of requests (730), usage_logs (365) and account (30): the
        # periods the package README states are the ones the sweeps apply.
        "RECORD_RETENTION_DAYS": _positive("RECORD_RETENTION_DAYS", 0) or None,
        "USAGE_RETENTION_DAYS": _positive("USAGE_RETENTION_DAYS", 0) or None,
        "CLOSED_ACCOUNT_DAYS": _positive("CLOSED_ACCOUNT_DAYS", 0) or None,
        # Status links expire (a new one is emailed with every notice, and by /requests/lookup).
        "STATUS_LINK_DAYS": int(os.environ.get("STATUS_LINK_DAYS") or 30),
        # Minimisation: this many days after a request closes, only what record-keeping needs stays.
        "CLOSED_REQUEST_GRACE_DAYS": int(os.environ.get("CLOSED_REQUEST_GRACE_DAYS") or 30),
        # The same request sent again within this many seconds (a double click) sends no second mail.
        "DUPLICATE_SUBMIT_SECONDS": int(os.environ.get("DUPLICATE_SUBMIT_SECONDS") or 5),
        # Requests due within this many days count as "due soon" (dashboard, queue, reminders).
        "DUE_SOON_DAYS": int(os.environ.get("DUE_SOON_DAYS") or 7),
        # A request waiting this many days for the subject's answer gets a reminder to them and to staff.
        "SUBJECT_REMINDER_DAYS": int(os.environ.get("SUBJECT_REMINDER_DAYS") or 7),
    }


def _secrets(env: str, instance_path: Path, secret: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    # The keyed hash (HMAC-SHA256) that replaces a minimised request's email address.
    fallback = secret if env == "testing" else None
    return {
        "EMAIL_HASH_KEY": overrides.get("EMAIL_HASH_KEY")
        or _instance_secret("EMAIL_HASH_KEY", env, instance_path, fallback),
    }


def _request_policy() -> dict[str, Any]:
    return {
        # A deletion needs the approval of two different officers.
        "DELETION_REQUIRES_SECOND_APPROVER": _bool(os.environ.get("DELETION_REQUIRES_SECOND_APPROVER")),
        # An officer previews (README and file list) and releases each access package before its link goes out.
        "ACCESS_REVIEW_BEFORE_RELEASE": _bool(os.environ.get("ACCESS_REVIEW_BEFORE_RELEASE")),
        # Supervisory authorities named in refusals, per law: "name|url;name|url" (app.dsr.law defaults).
        "SUPERVISORY_AUTHORITIES_GDPR": _text("SUPERVISORY_AUTHORITIES_GDPR"),
        "SUPERVISORY_AUTHORITIES_CCPA": _text("SUPERVISORY_AUTHORITIES_CCPA"),
        "SUPERVISORY_AUTHORITIES_OTHER": _text("SUPERVISORY_AUTHORITIES_OTHER"),
    }


def _mailbox() -> dict[str, Any]:
    return {
        # The privacy mailbox (app.mailbox): imaps://user:pass@host/INBOX, read by cron for replies and
        # new requests; unset: no mailbox (and no per-request Reply-To).
        "MAIL_IMAP_URL": _text("MAIL_IMAP_URL"),
        # 1: leave read messages on the server (default: deleted once the portal holds them).
        "MAIL_IMAP_KEEP": _bool(os.environ.get("MAIL_IMAP_KEEP")),
        # A message larger than this is not downloaded: an intake item says so and it stays on the server.
        "MAIL_IMAP_MAX_BYTES": _positive("MAIL_IMAP_MAX_BYTES", 25 * 1024 * 1024),
        "MAIL_IMAP_TIMEOUT": float(os.environ.get("MAIL_IMAP_TIMEOUT") or 30),
        # The address whose +tag subaddresses reach the mailbox (Reply-To: privacy+<token>@...).
        "MAIL_REPLY_ADDRESS": _text("MAIL_REPLY_ADDRESS"),
        # The authserv-id our receiving mail server writes in Authentication-Results (RFC 8601): a reply
        # threads itself only when that header says DMARC (or DKIM of the From domain) passed. Unset: a
        # failure any such header reports is still believed.
        "MAIL_AUTHSERV_ID": (os.environ.get("MAIL_AUTHSERV_ID") or "").strip().lower() or None,
    }


def _check_mailbox(cfg: Mapping[str, Any], production: bool) -> None:
    if not cfg.get("MAIL_IMAP_URL"):
        return
    from app.mailbox.imap import parse_imap_url

    try:
        url = parse_imap_url(cfg["MAIL_IMAP_URL"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if production and not url.secure and not url.loopback:
        raise ConfigError("MAIL_IMAP_URL must be imaps:// in production (imap:// only to this machine)")


def _refuse_unsafe_production(cfg: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """Production fails closed: every external part must be named, none may fall back to a default."""

    def given(name: str, key: str) -> bool:
        return bool(os.environ.get(name) or overrides.get(key))

    missing = [
        name
        for name, key in (
            ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI"),
            ("REDIS_URL", "REDIS_URL"),
            ("PORTAL_BASE_URL", "PORTAL_BASE_URL"),
            ("MAIL_SERVER", "MAIL_SERVER"),
        )
        if not (given(name, key) and cfg.get(key))
    ]
    if missing:
        raise ConfigError(f"APP_ENV=production needs {', '.join(missing)} set (no embedded or default fallback)")
    weak = secret_key_problem(str(cfg.get("EMAIL_HASH_KEY") or ""))
    if weak:
        raise ConfigError("EMAIL_HASH_KEY " + weak.split(" ", 1)[1].replace("SECRET_KEY", "EMAIL_HASH_KEY"))
    if not str(cfg["PORTAL_BASE_URL"]).startswith("https://"):
        raise ConfigError("PORTAL_BASE_URL must be an https:// address when APP_ENV=production")
    uris = [cfg["SQLALCHEMY_DATABASE_URI"], *cfg.get("SQLALCHEMY_BINDS", {}).values()]
    if any(str(u).startswith("sqlite") for u in uris) and not cfg.get("ALLOW_SQLITE_IN_PRODUCTION"):
        raise ConfigError("APP_ENV=production refuses SQLite; use PostgreSQL, or set ALLOW_SQLITE_IN_PRODUCTION=1")


def parse_storage_url(url: str) -> tuple[str, str, str]:
    """``EXPORT_STORAGE_URL`` as ``("dir", path, "")`` or ``("s3", bucket, prefix)``."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"EXPORT_STORAGE_URL {url!r} names no bucket (s3://bucket/prefix)")
        return "s3", parts.netloc, parts.path.strip("/")
    if parts.scheme in ("", "file"):
        path = parts.path if parts.scheme == "file" else url
        if not path:
            raise ConfigError("EXPORT_STORAGE_URL is empty")
        return "dir", path, ""
    raise ConfigError(f"EXPORT_STORAGE_URL must be a directory or s3://bucket/prefix, not {parts.scheme}://...")


def _check_export_storage(cfg: Mapping[str, Any]) -> None:
    parse_storage_url(str(cfg.get("EXPORT_STORAGE_URL") or cfg["EXPORT_DIR"]))


def _check_download_accel(cfg: dict[str, Any]) -> None:
    mode = str(cfg.get("DOWNLOAD_ACCEL") or "none").strip().lower()
    if mode not in DOWNLOAD_ACCEL_MODES:
        raise ConfigError(f"DOWNLOAD_ACCEL must be {' or '.join(DOWNLOAD_ACCEL_MODES)}, not {mode!r}")
    cfg["DOWNLOAD_ACCEL"] = mode
    prefix = str(cfg.get("DOWNLOAD_ACCEL_PREFIX") or "/_exports/").strip()
    segments = prefix.strip("/").split("/")
    if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", prefix) or "//" in prefix or {".", ".."} & set(segments):
        raise ConfigError(f"DOWNLOAD_ACCEL_PREFIX must be a plain path such as /_exports/, not {prefix!r}")
    cfg["DOWNLOAD_ACCEL_PREFIX"] = prefix.rstrip("/") + "/"
