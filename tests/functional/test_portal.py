"""The subject portal over HTTP: intake, verification, status, cancel, and every failure path."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from bs4 import BeautifulSoup
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.dsr import services
from app.dsr.models import CorrectionItem, DsrRequest, Token
from app.dsr.states import RequestStatus
from app.extensions import db
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from tests.factories import make_account, make_request

S = RequestStatus

GOOD = {
    "request_type": "access",
    "email": "Ada.Lovelace@Example.COM",
    "full_name": "Ada Lovelace",
    "jurisdiction": "gdpr",
    "details": "Please send me everything.",
}


def submit(client, **overrides):
    return client.post_form("/requests/new", {**GOOD, **overrides}, follow_redirects=True)


def verify_link(to: str) -> str:
    mail = (
        db.session.execute(
            select(OutgoingMail)
            .where(OutgoingMail.to_addr == to, OutgoingMail.template == "verify")
            .order_by(OutgoingMail.id.desc())
        )
        .scalars()
        .first()
    )
    assert mail is not None, f"no verification mail to {to}"
    assert mail.body_html and "/verify/" in mail.body_html
    return re.search(r"http://portal\.test(/verify/\S+)", mail.body_text).group(1)


def open_link(client, path: str):
    """Open an emailed link as a browser does: the token is traded for a cookie, then the clean URL."""
    first = client.get(path)
    assert first.status_code == 303 and "token" not in first.headers["Location"], first.status_code
    return first.headers["Location"], client.get(first.headers["Location"])


def submit_and_verify(client, **overrides):
    assert submit(client, **overrides).status_code == 200
    email = overrides.get("email", GOOD["email"]).lower()
    clean, _ = open_link(client, verify_link(email))
    page = client.post_form(clean)
    assert page.status_code == 200, page.get_data(as_text=True)
    soup = BeautifulSoup(page.get_data(as_text=True), "html.parser")
    status = next(a["href"] for a in soup.find_all("a", href=True) if "/requests/DSR-" in a["href"])
    return page, status.split("?", 1)[0]  # the page set the status cookie: the clean URL opens it


def receipt_status_link(email: str) -> str:
    mail = db.session.execute(
        select(OutgoingMail).where(OutgoingMail.to_addr == email, OutgoingMail.template == "receipt")
    ).scalar_one()
    return re.search(r"http://portal\.test(/requests/\S+)", mail.body_text).group(1)


# --- pages ---------------------------------------------------------------------------------------


def test_home_explains_rights_and_deadlines(client):
    html = client.get("/").get_data(as_text=True)
    for words in ("copy", "correct", "delete", "1 month", "45 days", "/requests/new"):
        assert words in html
    assert "style=" not in html and "<script" not in html


def test_intake_form_has_the_interface_field_names(client):
    soup = BeautifulSoup(client.get("/requests/new").get_data(as_text=True), "html.parser")
    names = {el.get("name") for el in soup.find_all(["input", "select", "textarea"])}
    for name in (
        "request_type",
        "email",
        "full_name",
        "jurisdiction",
        "details",
        "csrf_token",
        "correction-0-field",
        "correction-0-value",
        "confirm_deletion",
    ):
        assert name in names
    # every visible control has a label
    for el in soup.find_all(["input", "select", "textarea"]):
        if el.get("type") == "hidden":
            continue
        assert soup.find("label", attrs={"for": el["id"]}) is not None, el


def test_intake_creates_unverified_request_tokens_and_mail(client):
    r = submit(client)
    assert r.status_code == 200
    assert "Check your inbox" in r.get_data(as_text=True)
    dsr = db.session.execute(select(DsrRequest)).scalar_one()
    assert dsr.status == "unverified"
    assert dsr.email == "ada.lovelace@example.com"
    purposes = sorted(t.purpose for t in db.session.execute(select(Token)).scalars())
    assert purposes == ["verify"]
    verify = db.session.execute(select(Token).where(Token.purpose == "verify")).scalar_one()
    assert verify.max_uses == 1
    assert timedelta(hours=23) < verify.expires_at - utcnow() <= timedelta(hours=24)
    ev = db.session.execute(select(AuditEvent).where(AuditEvent.event == "request.submitted")).scalar_one()
    assert ev.public and "ada" not in str(ev.data).lower()
    assert verify_link("ada.lovelace@example.com").startswith("/verify/")


def test_intake_correction_stores_pairs(client):
    r = submit(
        client,
        request_type="correction",
        **{
            "correction-0-field": "name",
            "correction-0-value": "Ada King",
            "correction-1-field": "company",
            "correction-1-value": "Analytical Engines Ltd",
        },
    )
    assert r.status_code == 200
    items = db.session.execute(select(CorrectionItem).order_by(CorrectionItem.id)).scalars().all()
    assert [(i.field, i.proposed_value) for i in items] == [("name", "Ada King"), ("company", "Analytical Engines Ltd")]


def test_intake_correction_without_pairs_is_refused(client):
    r = submit(client, request_type="correction")
    assert r.status_code == 400
    assert "at least one field" in r.get_data(as_text=True)
    r = submit(client, request_type="correction", **{"correction-0-field": "phone", "correction-0-value": "x"})
    assert r.status_code == 400


def test_intake_access_ignores_untouched_correction_rows(client):
    r = submit(client, **{"correction-0-field": "name", "correction-0-value": ""})
    assert r.status_code == 200
    assert db.session.execute(select(CorrectionItem)).first() is None


def test_intake_deletion_requires_the_confirmation(client):
    r = submit(client, request_type="deletion")
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "Tick the box" in html and 'aria-invalid="true"' in html
    r = submit(client, request_type="deletion", confirm_deletion="y")
    assert r.status_code == 200


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a" * 5000 + "@example.test"}, "email"),
        ({"full_name": "x" * 100000}, "full_name"),
        ({"full_name": ""}, "full_name"),
        ({"request_type": "steal"}, "request_type"),
        ({"jurisdiction": "mars"}, "jurisdiction"),
        ({"details": "\x00\ud7ff"}, "details"),
        ({"details": "y" * 5001}, "details"),
        ({"full_name": "Bad\x07Name"}, "full_name"),
    ],
)
def test_intake_malformed_input_shows_errors_not_500(client, overrides, field):
    r = submit(client, **overrides)
    assert r.status_code == 400
    soup = BeautifulSoup(r.get_data(as_text=True), "html.parser")
    summary = soup.find(class_="error-summary")
    assert summary is not None
    assert summary.find("a", href=re.compile(f"^#{field}"))
    assert soup.find(id=f"{field}-error") is not None
    assert db.session.execute(select(DsrRequest)).first() is None


def test_intake_lone_surrogate_and_garbage_bytes_never_500(client):
    token = client.csrf_from("/requests/new")
    body = (
        f"csrf_token={token}&request_type=access&email=a%40example.test&full_name=%ED%A0%80%FF"
        "&jurisdiction=gdpr&details=%00"
    )
    r = client.post("/requests/new", data=body, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400


def test_intake_oversized_body_is_413_page(client):
    token = client.csrf_from("/requests/new")
    r = client.post("/requests/new", data={**GOOD, "csrf_token": token, "details": "z" * 3_000_000})
    assert r.status_code == 413
    assert "too large" in r.get_data(as_text=True)


def test_intake_without_csrf_is_refused(client):
    r = client.post("/requests/new", data=GOOD)
    assert r.status_code == 400
    assert "security token" in r.get_data(as_text=True)
    assert db.session.execute(select(DsrRequest)).first() is None


def page_text(html: str) -> str:
    html = re.sub(r'name="csrf_token"[^>]*', "", html)
    return html


def test_intake_known_and_unknown_email_pages_are_identical(client, app):
    make_account(email="known@example.com")
    known = submit(client, email="known@example.com")
    unknown = submit(client, email="stranger@example.test")
    assert known.status_code == unknown.status_code == 200
    assert page_text(known.get_data(as_text=True)) == page_text(unknown.get_data(as_text=True))
    assert db.session.execute(select(DsrRequest.email).order_by(DsrRequest.id)).scalars().all() == [
        "known@example.com",
        "stranger@example.test",
    ]


# --- verification --------------------------------------------------------------------------------


def test_verify_get_does_not_verify_post_does(client):
    submit(client)
    clean, page = open_link(client, verify_link("ada.lovelace@example.com"))
    assert clean == "/verify" and page.status_code == 200
    assert "Confirm my request" in page.get_data(as_text=True)
    assert db.session.execute(select(DsrRequest.status)).scalar_one() == "unverified"

    page = client.post_form(clean)
    assert page.status_code == 200
    dsr = db.session.execute(select(DsrRequest)).scalar_one()
    db.session.refresh(dsr)
    assert dsr.status == "pending_review" and dsr.due_at is not None
    assert re.search(r"DSR-[0-9A-Z]{4}-[0-9A-Z]{4}", page.get_data(as_text=True))
    assert dsr.reference in page.get_data(as_text=True)
    assert client.get(f"/requests/{dsr.reference}").status_code == 200  # its cookie came with the page
    receipt = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "receipt")).scalar_one()
    assert dsr.reference in receipt.body_text and "/requests/" in receipt.body_text
    assert dsr.due_at.strftime("%d %B %Y") in receipt.body_text


def test_verify_reused_link_is_410_with_resend_form(client):
    submit(client)
    path = verify_link("ada.lovelace@example.com")
    clean, _ = open_link(client, path)
    assert client.post_form(clean).status_code == 200
    again = client.get(path)
    assert again.status_code == 410
    assert "/verify/resend" in again.get_data(as_text=True)
    token = client.csrf_from("/requests/new")
    again = client.post(clean, data={"csrf_token": token})  # confirming cleared the link's cookie
    assert again.status_code == 404
    assert "/verify/resend" in again.get_data(as_text=True)


def test_verify_expired_link_is_410(client):
    submit(client)
    path = verify_link("ada.lovelace@example.com")
    clean, _ = open_link(client, path)
    tok = db.session.execute(select(Token).where(Token.purpose == "verify")).scalar_one()
    tok.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    r = client.get(path)
    assert r.status_code == 410 and "expired" in r.get_data(as_text=True)
    r = client.post_form(clean, page="/requests/new")
    assert r.status_code == 410
    assert db.session.execute(select(DsrRequest.status)).scalar_one() == "unverified"


@pytest.mark.parametrize("bad", ["tampered", "x" * 500, "%00", "..%2F..%2Fetc"])
def test_verify_tampered_link_is_404(client, bad):
    r = client.get(f"/verify/{bad}")
    assert r.status_code == 404
    html = r.get_data(as_text=True)
    assert "does not work" in html or "Page not found" in html


def test_verify_post_without_csrf_refused(client):
    submit(client)
    clean, _ = open_link(client, verify_link("ada.lovelace@example.com"))
    assert client.post(clean).status_code == 400
    assert db.session.execute(select(DsrRequest.status)).scalar_one() == "unverified"


def test_a_new_request_like_an_open_one_joins_it_and_the_subject_is_told(client):
    first = make_request(S.PENDING_REVIEW, email="ada.lovelace@example.com")
    page = submit(client)
    assert page.status_code == 200 and "Check your inbox" in page.get_data(as_text=True)
    assert [d.id for d in db.session.execute(select(DsrRequest)).scalars()] == [first.id]
    [notice] = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "duplicate_notice")).scalars()
    assert first.reference in notice.body_text and f"/requests/{first.reference}?token=" in notice.body_text
    assert db.session.execute(select(AuditEvent).where(AuditEvent.event == "request.duplicate_submitted")).scalar_one()


def test_a_reload_or_double_submit_makes_one_request_and_one_mail(client):
    token = client.csrf_from("/requests/new")
    first = client.post("/requests/new", data={**GOOD, "csrf_token": token})
    assert first.status_code == 303 and first.headers["Location"].endswith("/requests/sent")
    assert client.post("/requests/new", data={**GOOD, "csrf_token": token}).status_code == 303
    assert client.get(first.headers["Location"]).status_code == 200  # the reloaded page sends nothing
    assert len(db.session.execute(select(DsrRequest)).scalars().all()) == 1
    assert len(db.session.execute(select(OutgoingMail)).scalars().all()) == 1
    # sent again later: a request of its own (an unconfirmed one may be anybody's, so it absorbs nothing)
    for tok in db.session.execute(select(Token)).scalars():
        tok.created_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    assert client.post_form("/requests/new", GOOD).status_code == 303
    assert len(db.session.execute(select(DsrRequest)).scalars().all()) == 2
    assert [m.template for m in db.session.execute(select(OutgoingMail)).scalars()] == ["verify", "verify"]


def test_an_unconfirmed_request_by_someone_else_never_absorbs_the_owners_own(client):
    """An attacker's unconfirmed correction for the victim's address; the victim then sends her own."""
    client.post_form("/requests/new", {**GOOD, "request_type": "correction", "correction-0-field": "email",
                                       "correction-0-value": "attacker@evil.example"})  # fmt: skip
    own = {**GOOD, "request_type": "correction", "correction-0-field": "company", "correction-0-value": "Acme"}
    assert client.post_form("/requests/new", own).status_code == 303
    requests = db.session.execute(select(DsrRequest).order_by(DsrRequest.id)).scalars().all()
    assert len(requests) == 2
    assert [(c.field, c.proposed_value) for c in requests[1].corrections] == [("company", "Acme")]
    clean, page = open_link(client, verify_link("ada.lovelace@example.com"))
    html = page.get_data(as_text=True)
    assert "Acme" in html and "attacker@evil.example" not in html  # the page shows what is confirmed


def test_gpc_signal_offers_the_opt_out(client):
    html = client.get("/requests/new", headers={"Sec-GPC": "1"}).get_data(as_text=True)
    assert "Global Privacy Control" in html
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("input", attrs={"name": "request_type", "value": "opt_out"}).has_attr("checked")
    r = client.post_form("/requests/new", {**GOOD, "request_type": "opt_out"}, headers={"Sec-GPC": "1"})
    assert r.status_code == 303
    ev = db.session.execute(select(AuditEvent).where(AuditEvent.event == "request.submitted")).scalar_one()
    assert ev.data["gpc"] is True and ev.data["type"] == "opt_out"


def test_lookup_answers_the_same_and_mails_links_of_open_requests(client, redis_conn):
    from tests.functional._fulfil import run_jobs

    known = make_request(S.PENDING_REVIEW, email="ada.lovelace@example.com").reference
    make_request(S.COMPLETED, email="ada.lovelace@example.com")
    pages = []
    for email in ("ada.lovelace@example.com", "nobody@example.com"):
        r = client.post_form("/requests/lookup", {"email": email})
        assert r.status_code == 200
        pages.append(page_text(r.get_data(as_text=True)))
    assert pages[0] == pages[1]
    run_jobs(redis_conn)
    [mail] = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "lookup_links")).scalars()
    assert mail.to_addr == "ada.lovelace@example.com"
    assert f"/requests/{known}?token=" in mail.body_text and mail.body_text.count("/requests/DSR-") == 1
    assert client.post_form("/requests/lookup", {"email": "not an address"}).status_code == 400


def test_resend_issues_new_link_only_for_unverified_and_same_page(client, redis_conn):
    submit(client)
    first = verify_link("ada.lovelace@example.com")
    r1 = client.post_form("/verify/resend", {"email": "ada.lovelace@example.com"}, page="/verify/nope")
    r2 = client.post_form("/verify/resend", {"email": "nobody@example.com"}, page="/verify/nope")
    assert r1.status_code == r2.status_code == 200
    assert page_text(r1.get_data(as_text=True)) == page_text(r2.get_data(as_text=True))
    from tests.functional._fulfil import run_jobs

    run_jobs(redis_conn)  # resend works in a job, the same for every address
    second = verify_link("ada.lovelace@example.com")
    assert second != first
    clean, _ = open_link(client, second)
    assert client.post_form(clean).status_code == 200


def test_resend_invalid_email_is_400(client):
    r = client.post_form("/verify/resend", {"email": "nope"}, page="/verify/nope")
    assert r.status_code == 400


# --- status and cancel ---------------------------------------------------------------------------


def test_status_page_shows_timeline_due_date_and_cancel(client):
    _, status = submit_and_verify(client)
    page = client.get(status)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    dsr = db.session.execute(select(DsrRequest)).scalar_one()
    assert dsr.reference in html and "Waiting for review" in html
    assert dsr.due_at.strftime("%d %B %Y") in html
    assert "We received your request" in html and "You confirmed your email address" in html
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("button", attrs={"name": "action", "value": "cancel"}) is not None


def test_status_page_needs_the_right_token(client, app):
    submit_and_verify(client)
    dsr = db.session.execute(select(DsrRequest)).scalar_one()
    link = receipt_status_link(dsr.email)
    other = make_request(S.PENDING_REVIEW)
    other_raw = services.issue_token(other, "status")
    db.session.commit()
    stranger = app.test_client()
    assert stranger.get(f"/requests/{dsr.reference}").status_code == 404
    assert stranger.get(f"/requests/{dsr.reference}?token=wrong").status_code == 404
    assert stranger.get(f"/requests/{dsr.reference}?token={other_raw}").status_code == 404
    assert stranger.get("/requests/DSR-0000-0000?token=" + link.split("token=")[1]).status_code == 404
    assert stranger.get(link, follow_redirects=True).status_code == 200
    # a verify token is not a status token
    raw_verify = services.issue_token(dsr, "verify")
    db.session.commit()
    assert client.get(f"/requests/{dsr.reference}?token={raw_verify}").status_code == 404


def test_cancel_pending_request(client, app, redis_conn):
    _, status = submit_and_verify(client)
    r = client.post_form(status, {"action": "cancel"})
    assert r.status_code == 200
    assert "cancelled" in r.get_data(as_text=True)
    dsr = db.session.execute(select(DsrRequest)).scalar_one()
    db.session.refresh(dsr)
    assert dsr.status == "cancelled"
    assert db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "cancelled")).scalar_one()
    assert "Cancel this request" not in r.get_data(as_text=True)


def test_cancel_after_approval_refused(client):
    dsr = make_request(S.APPROVED)
    raw = services.issue_token(dsr, "status")
    db.session.commit()
    url = f"/requests/{dsr.reference}?token={raw}"
    page = client.get(url, follow_redirects=True)
    assert "Cancel this request" not in page.get_data(as_text=True)
    r = client.post_form(f"/requests/{dsr.reference}", {"action": "cancel"}, page="/requests/new")
    assert r.status_code == 409
    assert "can no longer be cancelled" in r.get_data(as_text=True)
    db.session.refresh(dsr)
    assert dsr.status == "approved"


def test_cancel_without_csrf_refused(client):
    dsr = make_request(S.PENDING_REVIEW)
    raw = services.issue_token(dsr, "status")
    db.session.commit()
    client.get(f"/requests/{dsr.reference}?token={raw}")
    r = client.post(f"/requests/{dsr.reference}", data={"action": "cancel"})
    assert r.status_code == 400
    db.session.refresh(dsr)
    assert dsr.status == "pending_review"


def test_unknown_action_is_400(client):
    dsr = make_request(S.PENDING_REVIEW)
    raw = services.issue_token(dsr, "status")
    db.session.commit()
    client.get(f"/requests/{dsr.reference}?token={raw}")
    assert client.post_form(f"/requests/{dsr.reference}", {"action": "approve"}).status_code == 400


# --- expiry service, errors ----------------------------------------------------------------------


def test_expire_unverified_after_seven_days(app):
    old = make_request(S.UNVERIFIED, received_days_ago=8)
    new = make_request(S.UNVERIFIED, received_days_ago=1)
    assert services.expire_unverified(utcnow()) == 1
    db.session.commit()
    db.session.refresh(old)
    db.session.refresh(new)
    assert old.status == "expired" and new.status == "unverified"
    assert services.expire_unverified(utcnow()) == 0


def test_error_pages_use_the_layout(client):
    r = client.get("/no/such/page")
    assert r.status_code == 404 and "Page not found" in r.get_data(as_text=True)
    assert "site-header" in r.get_data(as_text=True)
    r = client.delete("/requests/new")
    assert r.status_code == 405 and "site-header" in r.get_data(as_text=True)


def test_status_page_lists_requested_corrections(client):
    dsr = make_request(S.PENDING_REVIEW, request_type="correction")
    dsr.corrections.append(CorrectionItem(field="company", proposed_value="Example <Corp>"))
    raw = services.issue_token(dsr, "status")
    db.session.commit()
    html = client.get(f"/requests/{dsr.reference}?token={raw}", follow_redirects=True).get_data(as_text=True)
    assert "Company" in html and "Example &lt;Corp&gt;" in html


def test_unexpected_error_renders_500_page(app, client):
    def boom():
        raise RuntimeError("boom")

    app.add_url_rule("/boom-for-test", "boom_for_test", boom)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    r = client.get("/boom-for-test")
    assert r.status_code == 500
    html = r.get_data(as_text=True)
    assert "Something went wrong on our side" in html and "boom" not in html
