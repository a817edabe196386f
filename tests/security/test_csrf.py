"""CSRF on every state-changing route, found by walking ``app.url_map`` (a new route is covered the day it
lands). A POST without a token, sent with the most powerful session that route accepts (an admin for
``/admin``, nobody for the portal), must be refused with 400 and change nothing.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from app.audit.models import AuditEvent
from app.dsr import services
from app.dsr.models import DsrRequest
from app.dsr.states import RequestStatus
from app.extensions import db
from app.mail import queue_mail
from app.mail.models import OutgoingMail
from tests.factories import make_request, make_staff

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _state() -> tuple:
    return (
        db.session.execute(select(func.count(AuditEvent.id))).scalar_one(),
        db.session.execute(select(func.count(OutgoingMail.id))).scalar_one(),
        tuple(db.session.execute(select(DsrRequest.status).order_by(DsrRequest.id)).scalars()),
    )


def test_csrf_every_state_changing_route_refuses_a_post_without_token(app, admin_client):
    dsr = make_request(RequestStatus.PENDING_REVIEW)
    raw_status = services.issue_token(dsr, "status")
    unverified = make_request(RequestStatus.UNVERIFIED)
    raw_verify = services.issue_token(unverified, "verify", lifetime=timedelta(hours=24), max_uses=1)
    other = make_staff("officer")
    mail = queue_mail(dsr.email, "verify", "x", dsr=dsr, link="http://x", hours=24, type_label="Access")
    db.session.commit()
    values = {
        "reference": dsr.reference,
        "token": raw_verify,
        "user_id": other.id,
        "mail_id": mail.id,
        "id": 1,
        "item_id": 1,
    }
    anonymous = app.test_client()
    checked: list[str] = []
    for rule in app.url_map.iter_rules():
        methods = (rule.methods or set()) & UNSAFE
        if not methods or rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        missing = set(rule.arguments) - set(values)
        assert not missing, f"add a sample value for {missing} ({rule.rule})"
        url = rule.build({k: values[k] for k in rule.arguments}, append_unknown=False)[1]
        if rule.endpoint == "portal.request_status":
            url += f"?token={raw_status}"
        client = admin_client if rule.rule.startswith("/admin") else anonymous
        form = {"action": "approve", "reason": "other", "reason_text": "x", "note": "x", "ref": dsr.reference}
        form.update({"email": "csrf@example.com", "password": "x", "request_type": "access"})
        for method in sorted(methods):
            before = _state()
            resp = client.open(url, method=method, data=form)
            assert resp.status_code == 400, (method, rule.rule, resp.status_code)
            assert _state() == before, (method, rule.rule)
            checked.append(f"{method} {rule.endpoint}")
    print(f"csrf: {len(checked)} state-changing routes refused without a token: {', '.join(checked)}")
    must_cover = {"portal.new_request", "portal.verify", "portal.request_status", "admin.request_action"}
    assert must_cover | {"admin.bulk_action", "admin.login", "admin.logout"} <= {c.split()[1] for c in checked}
    # The session still works and the same POST with a token is accepted (the 400 was the missing token).
    resp = admin_client.post_form(
        f"/admin/requests/{dsr.reference}/action", {"action": "note", "note": "hi"}, page="/admin/"
    )
    assert resp.status_code == 303
