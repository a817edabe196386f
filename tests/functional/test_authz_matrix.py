"""Authorization matrix of the staff dashboard: every admin endpoint x (anonymous, auditor, officer,
admin), plus a walk of ``app.url_map`` that fails when an admin view escapes the guard or the matrix,
and CSRF enforced on every state-changing admin route."""

from __future__ import annotations

import pytest

from app.admin.guard import ENDPOINT_ROLES, PUBLIC, ROLE_RANK, bp, guard
from app.dsr.models import DsrRequest
from app.extensions import db
from app.mail import queue_mail
from tests.conftest import CsrfClient
from tests.factories import make_request, make_staff
from tests.functional.admin_support import fresh_g, login  # noqa: F401

ROLES = ("anonymous", "auditor", "officer", "admin")

# (method, url template, least role). {ref}: a request reference; {sid}: another staff id; {mid}: a mail id.
MATRIX = [
    ("GET", "/admin/", "auditor"),
    ("GET", "/admin/requests", "auditor"),
    ("GET", "/admin/requests/new", "officer"),
    ("POST", "/admin/requests/new", "officer"),
    ("GET", "/admin/requests/{ref}", "auditor"),
    ("GET", "/admin/requests/{ref}/progress", "auditor"),
    ("GET", "/admin/requests/{ref}/messages/{msg}/attachment", "officer"),
    ("GET", "/admin/requests/{ref}/package/readme", "auditor"),
    ("POST", "/admin/requests/{ref}/action", "officer"),
    ("POST", "/admin/requests/bulk", "officer"),
    ("POST", "/admin/requests/views", "auditor"),
    ("GET", "/admin/mailbox", "officer"),
    ("GET", "/admin/mailbox/{inb}", "officer"),
    ("POST", "/admin/mailbox/{inb}/dismiss", "officer"),
    ("POST", "/admin/mailbox/{inb}/thread", "officer"),
    ("GET", "/admin/mailbox/{inb}/attachments/{n}", "officer"),
    ("GET", "/admin/reports", "auditor"),
    ("GET", "/admin/reports/register.csv", "auditor"),
    ("GET", "/admin/audit", "auditor"),
    ("GET", "/admin/audit.csv", "auditor"),
    ("GET", "/admin/outbox", "auditor"),
    ("GET", "/admin/outbox/{mid}", "auditor"),
    ("GET", "/admin/mail-previews", "admin"),
    ("GET", "/admin/mail-previews/{tpl}.html", "admin"),
    ("GET", "/admin/requests/{ref}/mail/{mid}", "auditor"),
    ("GET", "/admin/staff", "admin"),
    ("POST", "/admin/staff", "admin"),
    ("POST", "/admin/staff/{sid}/role", "admin"),
    ("POST", "/admin/staff/{sid}/active", "admin"),
    ("POST", "/admin/staff/{sid}/reset", "admin"),
    ("POST", "/admin/staff/{sid}/totp-reset", "admin"),
    ("POST", "/admin/settings", "admin"),
    ("GET", "/admin/account/password", "auditor"),
    ("POST", "/admin/account/password", "auditor"),
    ("GET", "/admin/account/totp", "auditor"),
    ("POST", "/admin/account/totp", "auditor"),
    ("POST", "/admin/account/totp/disable", "auditor"),
    ("POST", "/admin/account/recovery-codes", "auditor"),
    ("GET", "/admin/reauth", "auditor"),
    ("POST", "/admin/reauth", "auditor"),
    ("POST", "/admin/logout", "auditor"),
]
PUBLIC_ROUTES = [
    ("GET", "/admin/login"),
    ("POST", "/admin/login"),
    ("GET", "/admin/login/totp"),
    ("POST", "/admin/login/totp"),
    ("GET", "/admin/enrol/{ref}"),
    ("POST", "/admin/enrol/{ref}"),
]


def _fill(url: str, ids: dict) -> str:
    return url.format(**ids)


@pytest.fixture
def world(app):
    dsr = make_request("pending_review")
    other = make_staff("officer", email="target@staff.test")
    mail = queue_mail(
        "someone@example.com", "admin_staff_invite", "Hi", dsr=dsr, role="officer", login_url="x", inviter="y"
    )
    from app.dsr.attachments import save_attachment
    from app.dsr.models import RequestMessage

    message = RequestMessage(
        request_id=dsr.id,
        direction="in",
        body="see attached",
        attachment_key=save_attachment(b"hello", "text/plain"),
        attachment_name="a.txt",
        attachment_type="text/plain",
        attachment_size=5,
    )
    db.session.add(message)
    # A package held for an officer's release (ACCESS_REVIEW_BEFORE_RELEASE), for its README preview.
    import zipfile
    from pathlib import Path

    from app.dsr.models import Export

    held = Export(request_id=dsr.id, status="review", filename=f"{dsr.reference}-held.zip")
    db.session.add(held)
    export_dir = Path(app.config["EXPORT_DIR"])
    export_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(export_dir / held.filename, "w") as zf:
        zf.writestr("README.html", "<p>held</p>")
    from app.mailbox.models import InboundMail
    from app.models_base import utcnow

    inbound = InboundMail(
        mailbox="test",
        uid_validity=1,
        uid=1,
        message_id_hash="0" * 64,
        from_addr="writer@example.com",
        subject="a letter",
        body_text="hello",
        attachments=[{"name": "b.txt", "type": "text/plain", "size": 2, "key": save_attachment(b"hi", "text/plain")}],
        received_at=utcnow(),
    )
    db.session.add(inbound)
    db.session.commit()
    return {
        "ref": dsr.reference,
        "sid": other.id,
        "mid": mail.id,
        "msg": message.id,
        "tpl": "verify",
        "inb": inbound.id,
        "n": 1,
    }


def expected(role: str, least: str, method: str) -> set[int]:
    if role == "anonymous":
        return {302} if method == "GET" else {401}
    if ROLE_RANK[role] < ROLE_RANK[least]:
        return {403}
    return {200} if method == "GET" else {200, 302, 303, 400}


@pytest.mark.parametrize("role", ROLES)
def test_authz_matrix_every_endpoint_gives_the_expected_status(app, world, role):
    client = CsrfClient(app.test_client())
    if role != "anonymous":
        login(client, make_staff(role))
    token = client.csrf_from("/admin/login") if role == "anonymous" else client.csrf_from("/admin/account/password")
    failures = []
    for method, template, least in MATRIX:
        url = _fill(template, world)
        if method == "GET":
            resp = client.get(url)
            if resp.is_streamed:
                resp.get_data()
        else:
            if url.endswith("/logout"):
                continue  # checked last: it ends the session
            resp = client.post(url, data={"csrf_token": token})
        if resp.status_code not in expected(role, least, method):
            failures.append((role, method, url, resp.status_code))
    assert not failures
    if role != "anonymous":
        assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    else:
        assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 401
    assert not failures


def test_authz_url_map_every_admin_view_is_guarded_and_in_the_matrix(app):
    assert app.before_request_funcs[bp.name] == [guard], "the admin blueprint must have exactly one guard"
    listed = {(m, t) for m, t, _ in MATRIX} | set(PUBLIC_ROUTES)
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") and not rule.rule.startswith("/admin"):
            continue
        assert rule.endpoint.startswith("admin."), f"{rule.rule} is served outside the admin blueprint"
        assert rule.endpoint in PUBLIC or rule.endpoint in ENDPOINT_ROLES, f"{rule.endpoint} has no declared role"
        template = rule.rule
        for arg in rule.arguments:
            placeholder = {"item_id": "{inb}", "index": "{n}"}.get(arg) or (
                "{sid}" if "user" in arg else "{msg}" if "message" in arg else "{mid}"
            )
            named = "{tpl}" if arg == "name" else "{ref}"
            template = template.replace(f"<{arg}>", named).replace(f"<id:{arg}>", placeholder)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (method, template) in listed, f"{method} {rule.rule} is missing from the authorization matrix"
    assert all(least in ROLE_RANK for _, _, least in MATRIX)


def test_authz_undeclared_admin_view_is_denied_even_to_admins(app, client):
    app.add_url_rule("/admin/sneaky", endpoint="admin.sneaky", view_func=lambda: "secret")
    admin = make_staff("admin")
    assert client.get("/admin/sneaky").status_code == 302
    login(client, admin)
    assert client.get("/admin/sneaky").status_code == 403


def test_authz_csrf_is_enforced_on_every_state_changing_route(app, world, client):
    login(client, make_staff("admin"))
    for method, template, _ in MATRIX + [(m, t, None) for m, t in PUBLIC_ROUTES]:
        if method != "POST":
            continue
        resp = client.post(_fill(template, world), data={"action": "approve", "ref": world["ref"]})
        assert resp.status_code == 400, template
    assert db.session.get(DsrRequest, 1).status == "pending_review"


def test_authz_auditor_cannot_change_anything(app, world, client):
    login(client, make_staff("auditor"))
    detail = client.get(f"/admin/requests/{world['ref']}").get_data(as_text=True)
    assert 'value="approve"' not in detail and "read-only" in detail
    resp = client.post_form(f"/admin/requests/{world['ref']}/action", {"action": "approve"}, page="/admin/requests")
    assert resp.status_code == 403
    db.session.expire_all()
    assert db.session.get(DsrRequest, 1).status == "pending_review"
