"""No account enumeration through intake: a known email (a platform account with a key, usage and
support mail) and an unknown one get the same page, and the same time to answer within 5 ms (median
over 200 interleaved tries each, rate limits off so both paths do all their work)."""

from __future__ import annotations

import re
import statistics
import time

import pytest

from app.extensions import db
from app.platform.models import Account
from tests.conftest import CSRF_RE
from tests.factories import make_account

KNOWN = "known.customer@example.com"
UNKNOWN = "nobody.here@example.com"
TRIES = 200


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RATELIMIT_ENABLED": False}


def _form(email: str, token: str) -> dict:
    return {
        "csrf_token": token,
        "request_type": "access",
        "email": email,
        "full_name": "Sam Subject",
        "jurisdiction": "gdpr",
        "details": "Please send me my data.",
    }


def _normalise(html: str, email: str) -> str:
    html = CSRF_RE.sub('name="csrf_token" value="-"', html)
    return re.sub(re.escape(email), "EMAIL", html, flags=re.IGNORECASE)


def test_intake_known_and_unknown_email_same_page_and_timing(app, client):
    make_account(email=KNOWN, name="Known Customer")
    assert db.session.query(Account).filter_by(email=KNOWN).count() == 1
    token = client.csrf_from("/requests/new")
    pages = {}
    for email in (KNOWN, UNKNOWN):  # warm-up: template caches, connection pools
        resp = client.post("/requests/new", data=_form(email, token), follow_redirects=True)
        assert resp.status_code == 200, resp.status_code
        pages[email] = _normalise(resp.get_data(as_text=True), email)
    assert pages[KNOWN] == pages[UNKNOWN]
    times: dict[str, list[float]] = {KNOWN: [], UNKNOWN: []}
    for i in range(TRIES):
        order = (KNOWN, UNKNOWN) if i % 2 == 0 else (UNKNOWN, KNOWN)
        for email in order:
            started = time.perf_counter()
            resp = client.post("/requests/new", data=_form(email, token), follow_redirects=True)
            times[email].append(time.perf_counter() - started)
            assert resp.status_code == 200
            if i % 50 == 0:
                assert _normalise(resp.get_data(as_text=True), email) == pages[KNOWN]
    known, unknown = statistics.median(times[KNOWN]), statistics.median(times[UNKNOWN])
    print(f"enumeration: median known {known * 1000:.2f} ms, unknown {unknown * 1000:.2f} ms")
    assert abs(known - unknown) < 0.005, (known, unknown)
