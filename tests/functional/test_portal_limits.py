"""Rate limits on intake (per IP, per email) and verification, with a friendly 429 page."""

from __future__ import annotations

import pytest

GOOD = {"request_type": "access", "full_name": "Lim Iter", "jurisdiction": "gdpr", "details": ""}


@pytest.fixture
def app_config(app_config):
    return {
        **app_config,
        "RATELIMIT_INTAKE_IP": "4 per hour",
        "RATELIMIT_INTAKE_EMAIL": "2 per hour",
        "RATELIMIT_VERIFY": "3 per hour",
    }


def test_intake_per_email_limit_counts_valid_submissions_only(client):
    assert client.post_form("/requests/new", {**GOOD, "email": "bad-email"}).status_code == 400
    assert client.post_form("/requests/new", {**GOOD, "email": "same@example.com"}).status_code == 303
    assert client.post_form("/requests/new", {**GOOD, "email": "SAME@example.com"}).status_code == 303
    r = client.post_form("/requests/new", {**GOOD, "email": "same@example.com"})
    assert r.status_code == 429
    assert "Too many attempts" in r.get_data(as_text=True)


def test_intake_per_ip_limit(client):
    for i in range(4):
        r = client.post_form("/requests/new", {**GOOD, "email": f"p{i}@example.com"})
        assert r.status_code == 303
    r = client.post_form("/requests/new", {**GOOD, "email": "p9@example.com"})
    assert r.status_code == 429
    # reading the form is not limited
    assert client.get("/requests/new").status_code == 200


def test_verify_attempts_limited(client):
    codes = [client.get(f"/verify/guess{i}").status_code for i in range(4)]
    assert codes == [404, 404, 404, 429]


def test_default_limits_allow_a_busy_minute(tmp_path, monkeypatch):
    from limits import parse

    from app.config import load_config

    for name in ("RATELIMIT_INTAKE_IP", "RATELIMIT_VERIFY"):
        monkeypatch.delenv(name, raising=False)
    cfg = load_config(tmp_path, {"SECRET_KEY": "x"})
    assert parse(cfg["RATELIMIT_INTAKE_IP"]).amount >= 12
    assert parse(cfg["RATELIMIT_VERIFY"]).amount >= 12


def test_rate_limit_keys_in_redis_are_keyed_hashes_not_plain_ones(client, redis_conn):
    import hashlib

    assert client.post_form("/requests/new", {**GOOD, "email": "frances.turing@example.com"}).status_code == 303
    keys = b" ".join(redis_conn.keys("*"))
    assert hashlib.sha256(b"frances.turing@example.com").hexdigest().encode() not in keys
    assert b"intake-email" in keys
