"""Open redirects after sign-in, session cookie flags (Secure in production) and security headers."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote, urlsplit

import pytest

from app import create_app
from app.dsr import services
from app.dsr.states import RequestStatus
from app.extensions import db
from tests.conftest import CSRF_RE, CsrfClient, _empty_everything, make_config
from tests.factories import PASSWORD, make_request, make_staff

EVIL_NEXT = [
    quote("https://evil.example", safe=""),
    quote("//evil.example", safe=""),
    quote("/\\evil.example", safe=""),
    quote("javascript:alert(1)", safe=""),
    "%2F%2Fevil.example",
    "%252F%252Fevil.example",
    "//evil.example",
    "/\\evil.example",
    quote("\\\\evil.example", safe=""),
    quote("/admin@evil.example", safe=""),
    quote("https:/evil.example", safe=""),
    quote("/%09/evil.example", safe=""),
    quote("\t//evil.example", safe=""),
    quote("http://localhost@evil.example/admin", safe=""),
]


def _assert_same_origin_admin(location: str) -> None:
    parts = urlsplit(location)
    assert parts.scheme in ("", "http") and parts.netloc in ("", "localhost"), location
    assert parts.path.startswith("/admin") and not parts.path.startswith("//"), location
    assert "evil" not in parts.netloc and "\\" not in location, location


@pytest.mark.parametrize("evil", EVIL_NEXT)
def test_login_next_offsite_is_refused(app, evil):
    user = make_staff("officer")
    client = CsrfClient(app.test_client())
    url = f"/admin/login?next={evil}"
    resp = client.post_form(url, {"email": user.email, "password": PASSWORD})
    assert resp.status_code == 302
    _assert_same_origin_admin(resp.headers["Location"])
    # Already signed in: the login page redirects at once, and must still stay home.
    again = client.get(url)
    assert again.status_code == 302
    _assert_same_origin_admin(again.headers["Location"])


def test_login_next_inside_admin_is_kept(app):
    """The control: a same-site dashboard path survives sign-in (so the refusals above are real)."""
    user = make_staff("officer")
    client = CsrfClient(app.test_client())
    target = "/admin/requests?status=on_hold"
    resp = client.post_form(f"/admin/login?next={quote(target, safe='')}", {"email": user.email, "password": PASSWORD})
    assert resp.status_code == 302 and resp.headers["Location"] == target


def test_bulk_action_return_to_offsite_is_refused(app, officer_client):
    for evil in ("https://evil.example", "//evil.example", "/\\evil.example", "javascript:alert(1)"):
        resp = officer_client.post_form(
            "/admin/requests/bulk", {"action": "approve", "return_to": evil}, page="/admin/"
        )
        assert resp.status_code == 303
        _assert_same_origin_admin(resp.headers["Location"])


def _session_cookie_headers(resp, name: str = "session") -> list[str]:
    return [h for h in resp.headers.getlist("Set-Cookie") if h.startswith(name + "=")]


def test_session_cookie_httponly_samesite(app):
    user = make_staff("officer")
    client = CsrfClient(app.test_client())
    resp = client.post_form("/admin/login", {"email": user.email, "password": PASSWORD})
    cookies = _session_cookie_headers(resp)
    assert cookies, resp.headers
    for header in cookies:
        flags = {f.strip().split("=")[0].lower(): f.strip() for f in header.split(";")[1:]}
        assert "httponly" in flags
        assert flags.get("samesite", "").lower() in ("samesite=lax", "samesite=strict")


def test_session_cookie_secure_in_production_and_https_forms_work(migrated, redis_url, tmp_path, monkeypatch):
    """Production over HTTPS, as a browser does it: the cookie is Secure, and a same-origin form POST
    carries a Referer only if our own Referrer-Policy lets the browser send one. Flask-WTF refuses an
    HTTPS POST without a Referer, so ``no-referrer`` would break every form in production."""
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "a-production-secret-from-the-environment")
    monkeypatch.setenv("EMAIL_HASH_KEY", "a-second-production-secret-for-hashing")
    cfg = make_config(
        migrated,
        redis_url,
        tmp_path,
        PORTAL_BASE_URL="https://localhost",
        MAIL_SERVER="127.0.0.1",
        ALLOW_SQLITE_IN_PRODUCTION=True,
    )
    for key in ("APP_ENV", "SECRET_KEY"):
        cfg.pop(key)
    prod = create_app(cfg)
    assert prod.config["APP_ENV"] == "production" and prod.config["SESSION_COOKIE_SECURE"] is True
    base = "https://localhost"
    with prod.app_context():
        user = make_staff("officer")
        try:
            client = prod.test_client()
            page = client.get("/admin/login", base_url=base)
            token = CSRF_RE.search(page.get_data(as_text=True))
            policy = page.headers["Referrer-Policy"]
            headers = {} if policy == "no-referrer" else {"Referer": f"{base}/admin/login"}
            resp = client.post(
                "/admin/login",
                base_url=base,
                headers=headers,
                data={"email": user.email, "password": PASSWORD, "csrf_token": token.group(1) or token.group(2)},
            )
            assert resp.status_code == 302, (policy, resp.status_code)
            assert prod.config["SESSION_COOKIE_NAME"].startswith("__Host-")
            cookies = _session_cookie_headers(resp, prod.config["SESSION_COOKIE_NAME"])
            assert cookies
            for header in cookies:
                lowered = header.lower()
                assert "; secure" in lowered and "; httponly" in lowered and "samesite=lax" in lowered, header
                # What the __Host- prefix requires of the cookie, or the browser drops it.
                assert "; path=/" in lowered and "domain=" not in lowered, header
            # A valid token with a foreign Referer is still refused; with our own it signs out.
            fresh = CSRF_RE.search(client.get("/admin/", base_url=base).get_data(as_text=True))
            data = {"csrf_token": fresh.group(1) or fresh.group(2)}
            evil = client.post("/admin/logout", base_url=base, headers={"Referer": "https://evil.example/"}, data=data)
            assert evil.status_code == 400
            own = client.post("/admin/logout", base_url=base, headers=headers, data=data)
            assert own.status_code == 302
        finally:
            db.session.remove()
    _empty_everything(prod)  # this test has no ``app`` fixture to leave the tables empty for the next one


def _check_headers(path: str, resp) -> None:
    csp = resp.headers.get("Content-Security-Policy", "")
    directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, (path, csp)
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", (path, csp)
    assert "script-src" in directives or "default-src" in directives, (path, csp)
    assert "*" not in directives.get("script-src", ""), (path, csp)
    assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
    # Never leak a link's token to another site; same-origin referrers are what HTTPS CSRF checks need.
    assert resp.headers.get("Referrer-Policy") in ("no-referrer", "same-origin"), path


def test_security_headers_on_portal_and_admin_pages(app, client, officer_client):
    dsr = make_request(RequestStatus.PENDING_REVIEW)
    raw = services.issue_token(dsr, "status")
    unverified = make_request(RequestStatus.UNVERIFIED)
    verify = services.issue_token(unverified, "verify", lifetime=timedelta(hours=1), max_uses=1)
    db.session.commit()
    portal = [
        "/",
        "/requests/new",
        f"/verify/{verify}",
        "/verify/not-a-token",
        f"/requests/{dsr.reference}?token={raw}",
        "/download/not-a-token",
        "/no-such-page",
        "/healthz",
    ]
    for path in portal:
        resp = client.get(path)
        assert resp.status_code < 500, path
        _check_headers(path, resp)
    resp = client.post("/requests/new", data={})
    _check_headers("POST /requests/new", resp)
    admin = ["/admin/login", "/admin/", "/admin/requests", f"/admin/requests/{dsr.reference}", "/admin/reports"]
    admin += ["/admin/audit", "/admin/outbox", "/admin/account/password"]
    for path in admin:
        resp = officer_client.get(path)
        assert resp.status_code < 500, path
        _check_headers(path, resp)
    _check_headers("anonymous /admin/", client.get("/admin/"))
