"""Application factory: configuration, extensions, blueprints, CLI, security headers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from app.config import load_config
from app.extensions import csrf, db, limiter, login_manager, migrate

ROOT = Path(__file__).resolve().parent.parent
# A checkout has templates/ and migrations/ at its top; an installed wheel carries them in the package.
CHECKOUT = (ROOT / "templates").is_dir() and (ROOT / "migrations").is_dir()
TEMPLATES = ROOT / "templates" if CHECKOUT else Path(__file__).resolve().parent / "_templates"
MIGRATIONS = ROOT / "migrations" if CHECKOUT else Path(__file__).resolve().parent / "_migrations"


def instance_dir() -> Path:
    """``INSTANCE_PATH``, else ``instance/`` in the checkout, else in the working directory."""
    import os

    configured = os.environ.get("INSTANCE_PATH")
    if configured:
        return Path(configured)
    return (ROOT if CHECKOUT else Path.cwd()) / "instance"


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    from app import logs
    from app.redact import install_record_factory

    logs.install_request_id_factory()  # first: the redaction factory below wraps it
    install_record_factory()  # no link token or address reaches a log line of this process
    app = Flask(
        __name__,
        instance_path=str(instance_dir()),
        template_folder=str(TEMPLATES),
        static_folder="static",
    )
    app.config.update(load_config(Path(app.instance_path), config))
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    # Import models so metadata is complete for migrations and queries.
    from app import models  # noqa: F401
    from app.dsr import minimise  # noqa: F401 - registers the email-hash hook on DsrRequest

    db.init_app(app)
    _tune_sqlite(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS))
    csrf.init_app(app)
    login_manager.init_app(app)
    _init_limiter(app)

    from app import queue

    queue.init_app(app)

    from app.routing import register_converters

    register_converters(app)

    from app.health import bp as health_bp

    app.register_blueprint(health_bp)
    _register_blueprints(app)
    _template_policy(app)

    from app.cli import register_cli

    register_cli(app)
    logs.configure(app)  # request ids; LOG_FORMAT=json lines
    app.before_request(_refuse_nul_bytes)
    app.after_request(_security_headers)
    hops = int(app.config.get("TRUSTED_PROXIES") or 0)
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Only the configured number of proxies is believed: the client address, scheme and host they
        # report become the request's (rate limits and audit IPs use the real client).
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]  # Flask's documented way to wrap the WSGI app
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )
    _announce(app)
    return app


def _announce(app: Flask) -> None:
    """One line at start-up saying what is configured, never a secret (not in tests)."""
    if app.config["APP_ENV"] == "testing":
        return
    import sys

    from sqlalchemy.engine import make_url

    def url(value: object) -> str:
        try:
            return make_url(str(value)).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - whatever it is, say only its scheme
            return str(value).split(":", 1)[0]

    cfg = app.config
    mail = f"smtp {cfg['MAIL_SERVER']}:{cfg['MAIL_PORT']}" if cfg.get("MAIL_SERVER") else "outbox"
    parts = [
        f"env={cfg['APP_ENV']}",
        f"database={url(cfg['SQLALCHEMY_DATABASE_URI'])}",
        f"redis={'configured' if cfg.get('REDIS_URL') else 'embedded'}",
        f"mail={mail}",
        f"stripe={'configured' if cfg.get('STRIPE_API_KEY') else 'not configured'}",
        f"base_url={cfg['PORTAL_BASE_URL']}",
        f"trusted_proxies={cfg.get('TRUSTED_PROXIES', 0)}",
        f"exports={_export_storage(cfg)}",
        f"log_format={cfg.get('LOG_FORMAT', 'text')}",
    ]
    from app.sources.inventory import unconfirmed_recipients

    if unconfirmed := unconfirmed_recipients():
        parts.append(f"inventory_unconfirmed={','.join(unconfirmed)}")
    if cfg.get("LOG_FORMAT") == "json":
        import logging

        logging.getLogger("dsr_portal").info("dsr-portal: %s", " ".join(parts))
        return
    print("dsr-portal: " + " ".join(parts), file=sys.stderr, flush=True)


def _export_storage(cfg: Mapping[str, Any]) -> str:
    from app.config import parse_storage_url

    kind, where, prefix = parse_storage_url(str(cfg.get("EXPORT_STORAGE_URL") or cfg["EXPORT_DIR"]))
    if kind == "s3":
        endpoint = ""
        if cfg.get("S3_ENDPOINT_URL"):
            from urllib.parse import urlsplit

            parts = urlsplit(str(cfg["S3_ENDPOINT_URL"]))  # scheme, host and port: never credentials
            endpoint = f" at {parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return f"s3://{where}/{prefix}{endpoint}"
    return f"directory:{where}"


def _refuse_nul_bytes() -> None:
    """A NUL byte is never valid input, and PostgreSQL refuses it in text (a 500 on any query or insert
    that carried one): answer 400 before any view sees it. The portal's forms report control characters
    field by field themselves, so its form bodies are left to them (and path parts are only ever hashed or
    matched against a pattern, never sent to the database as they are)."""
    from flask import abort, request

    sources = [request.args] if request.blueprint == "portal" else [request.args, request.form]
    for values in sources:
        for key, items in values.lists():
            if "\x00" in key or any("\x00" in item for item in items):
                abort(400)
    return None


def _tune_sqlite(app: Flask) -> None:
    """SQLite serves the web, the worker and cron at once: WAL lets readers run beside the writer,
    and a busy timeout makes a writer wait for the lock instead of failing with "database is locked"."""
    from sqlalchemy import event

    with app.app_context():
        engines = [e for e in db.engines.values() if e.dialect.name == "sqlite"]
    for engine in engines:

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 15000")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.close()


def _init_limiter(app: Flask) -> None:
    if app.config.get("RATELIMIT_ENABLED", True):
        from app.queue import redis_url

        app.config.setdefault("RATELIMIT_STORAGE_URI", redis_url(app))
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    # A network cut (packets dropped, not refused) must not hold a request until gunicorn's timeout:
    # the limiter gives up on Redis within seconds and counts in memory meanwhile.
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 2, "socket_timeout": 2})
    limiter.init_app(app)


def _register_blueprints(app: Flask) -> None:
    """The feature packages: the public portal and the staff dashboard."""
    from app.admin import routes as admin_routes
    from app.portal import views as portal_views

    portal_views.register(app)
    admin_routes.register(app)


def _template_policy(app: Flask) -> None:
    """What the templates name that is defined once in code (numbers and limits come from ``config``)."""
    from app.sources.account import FIELD_LABELS

    app.jinja_env.globals["field_labels"] = FIELD_LABELS


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    # same-origin: nothing (a link's token included) leaks to other sites, while our own HTTPS forms keep the
    # Referer that Flask-WTF's strict CSRF check requires (no-referrer refuses every POST in production).
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
    if response.mimetype == "text/html":
        headers.setdefault("Cache-Control", "no-store")
    from flask import current_app

    max_age = int(current_app.config.get("HSTS_MAX_AGE") or 0)
    if current_app.config["APP_ENV"] == "production" and max_age > 0:
        headers.setdefault("Strict-Transport-Security", f"max-age={max_age}; includeSubDomains")
    return response
