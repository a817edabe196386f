"""The web app while Redis or the database is unreachable (a restart, a failover, a network cut).

Subjects can still file a request while Redis is away: the request and its confirmation mail are
committed, the rate limits are held in each process's memory meanwhile (Flask-Limiter's fallback), and
the reconciler sends the mail once Redis answers. What cannot be served safely fails closed: staff
sign-in (its throttle lives in Redis), a link resend (its job is all there is), and every page while
the database is away answer a plain 503 page with ``Retry-After``, never a traceback, a 500 or the
exception's text.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app import create_app
from app.dsr.models import DsrRequest
from app.extensions import db
from app.mail.models import OutgoingMail
from tests.conftest import CsrfClient, free_port, make_config
from tests.factories import PASSWORD, make_staff

GOOD = {"request_type": "access", "full_name": "Out Age", "jurisdiction": "gdpr", "details": ""}
UNAVAILABLE = "briefly unavailable"


def _dead_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def _assert_plain_503(response) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code == 503, body[:400]
    assert UNAVAILABLE in body
    assert response.headers.get("Retry-After", "").isdigit()
    for leak in ("Traceback", "OperationalError", "ConnectionError", "127.0.0.1", "redis://", "psycopg", "sqlite"):
        assert leak not in body, leak


@pytest.fixture(autouse=True)
def _limiter_storage_alive_again():
    """Flask-Limiter's extension is one object per process and remembers that its storage died across
    ``init_app``: the next test's app (with a working Redis) must not start on the fallback."""
    yield
    from app.extensions import limiter

    limiter._storage_dead = False


@pytest.fixture
def app_config(app_config):
    dead = _dead_redis()
    return {
        **app_config,
        "REDIS_URL": dead,
        "RATELIMIT_STORAGE_URI": dead,
        "RATELIMIT_INTAKE_IP": "3 per hour",
        "RATELIMIT_INTAKE_EMAIL": "2 per hour",
    }


def test_a_request_filed_while_redis_is_down_is_kept_and_its_mail_sent_once_redis_is_back(
    client, app, migrated, redis_url, tmp_path
):
    r = client.post_form("/requests/new", {**GOOD, "email": "while.down@example.com"})
    assert r.status_code == 303
    assert r.headers["Location"].endswith("/requests/sent")
    req = db.session.execute(select(DsrRequest).where(DsrRequest.email == "while.down@example.com")).scalar_one()
    mail = db.session.execute(select(OutgoingMail).where(OutgoingMail.request_id == req.id)).scalar_one()
    assert mail.status == "queued"
    db.session.remove()

    # Redis answers again: the reconciler (cron) hands the waiting mail to a worker.
    back = create_app(make_config(migrated, redis_url, tmp_path))
    with back.app_context():
        from app.queue import get_redis
        from workers.reconcile import reconcile

        summary = reconcile(mail_grace=timedelta(0))
        assert summary["mail"] == 1
        assert get_redis().exists(f"rq:job:mail-{mail.id}")
        db.session.remove()


def test_rate_limits_still_hold_while_redis_is_down(client):
    assert client.post_form("/requests/new", {**GOOD, "email": "same@example.com"}).status_code == 303
    assert client.post_form("/requests/new", {**GOOD, "email": "SAME@example.com"}).status_code == 303
    # The per-address limit (2 an hour) is counted in memory meanwhile.
    assert client.post_form("/requests/new", {**GOOD, "email": "same@example.com"}).status_code == 429
    # And the per-client one (3 an hour, the third POST above counted).
    assert client.post_form("/requests/new", {**GOOD, "email": "other@example.com"}).status_code == 429


def test_staff_sign_in_fails_closed_while_redis_is_down(client, app):
    user = make_staff(email="officer.down@staff.test")
    db.session.commit()
    r = client.post_form("/admin/login", {"email": user.email, "password": PASSWORD})
    _assert_plain_503(r)
    # Nobody was signed in by it.
    after = client.get("/admin/")
    assert after.status_code in (302, 303) and "/admin/login" in after.headers["Location"]


def test_a_lost_link_lookup_while_redis_is_down_says_try_again(client):
    _assert_plain_503(client.post_form("/requests/lookup", {"email": "lost@example.com"}))


@pytest.fixture
def no_database_client(redis_url, tmp_path):
    """An app whose databases (portal and platform) refuse every connection."""
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"
    application = create_app(make_config(dead, redis_url, tmp_path, RATELIMIT_ENABLED=False))
    with application.app_context():
        yield CsrfClient(application.test_client())
        db.session.remove()


def test_pages_while_the_database_is_down_answer_a_plain_503(no_database_client):
    client = no_database_client
    assert client.get("/healthz").status_code == 200  # alive: a restart would not help
    assert client.get("/readyz").status_code == 503  # not ready: the balancer sends no one here
    _assert_plain_503(client.post_form("/requests/new", {**GOOD, "email": "nodb@example.com"}))
    # A confirmation link: traded for a cookie, then looked up.
    _assert_plain_503(client.get("/verify/" + "x" * 43, follow_redirects=True))
    _assert_plain_503(client.post_form("/admin/login", {"email": "a@staff.test", "password": PASSWORD}))


# --- what is an outage, and what the log keeps -------------------------------------------------------


@pytest.fixture
def as_in_production(app):
    """Errors answered by the app's own 500 page, as in production (tests otherwise re-raise them)."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


def test_a_redis_programming_error_is_a_500_not_an_outage(client, as_in_production, monkeypatch):
    """A wrong Redis type is a bug in our code, not Redis being away: no "briefly unavailable", no
    Retry-After that sends clients and balancers back to it."""
    import redis

    import app.portal.views as views

    def broken(_email):
        raise redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")

    monkeypatch.setattr(views, "enqueue_lookup", broken)
    r = client.post_form("/requests/lookup", {"email": "someone@example.com"})
    assert (r.status_code, r.headers.get("Retry-After")) == (500, None)


def test_a_deadlock_is_a_500_not_an_outage(client, as_in_production, monkeypatch):
    import psycopg
    from sqlalchemy import exc as sa_exc

    import app.dsr.portal as portal

    def deadlocked(**_kw):
        raise sa_exc.OperationalError("UPDATE dsr_request SET ...", {}, psycopg.errors.DeadlockDetected("deadlock"))

    monkeypatch.setattr(portal, "submit", deadlocked)
    r = client.post_form("/requests/new", {**GOOD, "email": "ada@example.com"})
    assert (r.status_code, r.headers.get("Retry-After")) == (500, None)


def test_a_lost_database_connection_mid_statement_is_an_outage(client, monkeypatch):
    import psycopg
    from sqlalchemy import exc as sa_exc

    import app.dsr.portal as portal

    def dropped(**_kw):
        raise sa_exc.OperationalError(
            "INSERT ...", {}, psycopg.OperationalError("server closed the connection unexpectedly")
        )

    monkeypatch.setattr(portal, "submit", dropped)
    _assert_plain_503(client.post_form("/requests/new", {**GOOD, "email": "ada@example.com"}))


def test_no_failed_statement_carries_its_parameters_into_an_error_or_a_log(
    client, as_in_production, monkeypatch, caplog
):
    """A subject's name in a failed statement's parameters reached the traceback Flask logs; the
    engines now hide parameters (a real failing statement through the app's own engine)."""
    import logging

    from sqlalchemy import exc as sa_exc
    from sqlalchemy import text

    import app.dsr.portal as portal

    def failing(**kw):
        db.session.execute(text("SELECT * FROM no_such_table WHERE name = :name"), {"name": kw["full_name"]})

    monkeypatch.setattr(portal, "submit", failing)
    with caplog.at_level(logging.ERROR):
        r = client.post_form("/requests/new", {**GOOD, "full_name": "Ada Secretname", "email": "ada@example.com"})
    assert r.status_code == 500  # a missing table is a bug, not an outage
    logged = "\n".join((rec.exc_text or "") + rec.getMessage() for rec in caplog.records)
    assert "no_such_table" in logged  # the failure itself is logged, with its statement
    assert "Ada Secretname" not in logged
    with pytest.raises(sa_exc.DBAPIError) as raised:  # SQLite: OperationalError; PostgreSQL: ProgrammingError
        failing(full_name="Ada Secretname")
    assert "Ada Secretname" not in str(raised.value)
