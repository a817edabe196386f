"""Property-based fuzzing (hypothesis) of every form and query parameter: whatever arrives, the answer is
a page or a clear 4xx, never a 500. Forms carry a valid CSRF token so the input reaches the view."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.dsr import services
from app.dsr.models import CorrectionItem
from app.dsr.states import RequestStatus
from app.extensions import db
from tests.factories import make_request

FUZZ = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

TRICKY = st.sampled_from(
    [
        "",
        " ",
        "0",
        "-1",
        "99999999999999999999999",
        "1e308",
        "NaN",
        "null",
        "None",
        "true",
        "2026-02-30",
        "9999-12-31",
        "0000-00-00",
        "../../etc/passwd",
        "%00",
        "\x00",
        "\ud7ff\ue000\U0010ffff",
        "\u202e",
        "' OR 1=1 --",
        '"; DROP TABLE dsr_request; --',
        "<script>alert(1)</script>",
        "{{7*7}}",
        "a" * 5000,
        "DSR-AAAA-AAAA",
        "dsr-aaaa-aaaa",
        "access",
        "correction",
        "deletion",
        "gdpr",
        "ccpa",
        "approve",
        "deny",
        "other",
        "on_hold",
        "someone@example.com",
        "Ⅻ@例え.テスト",
    ]
)
TEXT = st.one_of(TRICKY, st.text(max_size=300), st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
MAYBE = st.one_of(st.none(), TEXT)


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _ok(resp, what) -> None:
    resp.get_data()  # run streamed bodies (CSV) to the end: a failure there is a 500 too
    resp.close()
    assert resp.status_code < 500, (resp.status_code, what)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RATELIMIT_ENABLED": False}


def test_fuzz_intake_form_never_500(app, client):
    token = client.csrf_from("/requests/new")

    @FUZZ
    @given(
        st.fixed_dictionaries(
            {},
            optional={
                "request_type": TEXT,
                "email": TEXT,
                "full_name": TEXT,
                "jurisdiction": TEXT,
                "details": TEXT,
                "confirm_deletion": TEXT,
                "correction-0-field": TEXT,
                "correction-0-value": TEXT,
                "correction-1-field": TEXT,
                "correction-1-value": TEXT,
                "correction-7-value": TEXT,
            },
        ),
        MAYBE,
    )
    def run(form, type_arg):
        _ok(client.post("/requests/new", data={"csrf_token": token, **form}), form)
        _ok(client.get("/requests/new", query_string=_drop_none({"type": type_arg})), type_arg)
        _ok(client.post("/verify/resend", data={"csrf_token": token, "email": form.get("email", "")}), form)

    run()


def test_fuzz_links_and_references_never_500(app, client):
    dsr = make_request(RequestStatus.PENDING_REVIEW)
    raw_status = services.issue_token(dsr, "status")
    unverified = make_request(RequestStatus.UNVERIFIED)
    raw_verify = services.issue_token(unverified, "verify", lifetime=timedelta(hours=24), max_uses=1)
    db.session.commit()
    csrf = client.csrf_from("/requests/new")
    assert client.get(f"/verify/{raw_verify}").status_code == 303

    @FUZZ
    @given(TEXT, TEXT, MAYBE, st.sampled_from([None, "cancel", "approve", ""]))
    def run(token, reference, action, cancel):
        path_token = quote(token, safe="") or "x"
        path_ref = quote(reference, safe="") or "x"
        _ok(client.get(f"/verify/{path_token}"), token)
        _ok(client.post(f"/verify/{path_token}", data={"csrf_token": csrf}), token)
        _ok(client.post("/verify", data={"csrf_token": csrf}), token)
        _ok(client.get("/download"), token)
        _ok(client.get(f"/download/{path_token}"), token)
        _ok(client.get(f"/requests/{path_ref}", query_string={"token": token}), (reference, token))
        _ok(client.get(f"/requests/{dsr.reference}", query_string={"token": token}), token)
        _ok(client.get(f"/requests/{path_ref}", query_string={"token": raw_status}), reference)
        form = _drop_none({"csrf_token": csrf, "action": cancel if cancel is not None else action, "token": token})
        _ok(client.post(f"/requests/{path_ref}", data=form), (reference, form))

    run()


def test_admin_date_filters_at_the_end_of_the_calendar_are_not_500(app, officer_client):
    """Found by the fuzzing below: a "to" date of 9999-12-31 overflowed when a day was added (500)."""
    for path, key in [("/admin/audit", "date_to"), ("/admin/audit.csv", "date_to"), ("/admin/requests", "received_to")]:
        for value in ("9999-12-31", "0001-01-01", "9999-12-30"):
            resp = officer_client.get(path, query_string={key: value})
            _ok(resp, (path, key, value))
            assert resp.status_code == 200, (path, key, value, resp.status_code)


def test_fuzz_admin_query_parameters_never_500(app, officer_client):
    make_request(RequestStatus.PENDING_REVIEW)
    names = ["status", "type", "q", "overdue", "page", "jurisdiction", "assignee", "received_from", "received_to"]

    @FUZZ
    @given(
        st.fixed_dictionaries({}, optional=dict.fromkeys(names, TEXT)),
        st.fixed_dictionaries(
            {}, optional=dict.fromkeys(["event", "actor", "reference", "date_from", "date_to", "page"], TEXT)
        ),
        MAYBE,
        MAYBE,
        TEXT,
    )
    def run(queue_args, audit_args, year, page, reference):
        _ok(officer_client.get("/admin/requests", query_string=queue_args), queue_args)
        _ok(officer_client.get("/admin/audit", query_string=audit_args), audit_args)
        _ok(officer_client.get("/admin/audit.csv", query_string=audit_args), audit_args)
        _ok(officer_client.get("/admin/reports", query_string=_drop_none({"year": year})), year)
        _ok(officer_client.get("/admin/reports/register.csv", query_string=_drop_none({"year": year})), year)
        _ok(officer_client.get("/admin/outbox", query_string=_drop_none({"page": page})), page)
        _ok(officer_client.get(f"/admin/requests/{quote(reference, safe='') or 'x'}"), reference)
        _ok(officer_client.get(f"/admin/requests/{quote(reference, safe='') or 'x'}/progress"), reference)

    run()


def test_fuzz_admin_action_forms_never_500(app, officer_client):
    dsrs = [
        make_request(RequestStatus.PENDING_REVIEW, request_type="correction"),
        make_request(RequestStatus.PENDING_REVIEW, request_type="deletion"),
        make_request(RequestStatus.FAILED, request_type="access"),
    ]
    dsrs[0].corrections.append(CorrectionItem(field="name", proposed_value="New Name"))
    db.session.commit()
    csrf = officer_client.csrf_from("/admin/")
    action = st.one_of(st.sampled_from(["approve", "deny", "hold", "resume", "extend", "assign", "note", "retry",
                                        "cancel", "request_info", "decide_item"]), TEXT)  # fmt: skip
    fields = ["reason", "reason_text", "note", "assignee", "item_id", "decision", "message", "pause_clock"]

    @FUZZ
    @given(
        st.sampled_from(range(len(dsrs))),
        action,
        st.fixed_dictionaries({}, optional=dict.fromkeys(fields, TEXT)),
        st.lists(TEXT, max_size=4),
        MAYBE,
    )
    def run(which, act, form, refs, return_to):
        data = {"csrf_token": csrf, "action": act, **form}
        _ok(officer_client.post(f"/admin/requests/{dsrs[which].reference}/action", data=data), data)
        bulk = _drop_none({**data, "ref": refs + [dsrs[which].reference], "return_to": return_to})
        _ok(officer_client.post("/admin/requests/bulk", data=bulk), bulk)

    run()


def test_fuzz_admin_login_never_500(app, client):
    csrf = client.csrf_from("/admin/login")

    @FUZZ
    @given(MAYBE, MAYBE, MAYBE)
    def run(email, password, next_url):
        data = _drop_none({"csrf_token": csrf, "email": email, "password": password})
        resp = client.post("/admin/login", data=data, query_string=_drop_none({"next": next_url}))
        _ok(resp, data)
        assert resp.status_code in (200, 302, 400), resp.status_code  # 400: a NUL byte
        _ok(client.get("/admin/login", query_string=_drop_none({"next": next_url})), next_url)
        _ok(client.post("/admin/login/totp", data=_drop_none({"csrf_token": csrf, "totp": password})), password)

    run()


def test_unicode_digits_in_numeric_parameters_are_no_500(app, officer_client):
    """Found by review: "²" passes str.isdigit() and then breaks int()."""
    dsr = make_request(RequestStatus.PENDING_REVIEW, request_type="correction")
    for path in (
        "/admin/requests?page=²",
        "/admin/requests?assignee=²",
        "/admin/audit?page=²²",
        "/admin/reports?year=²²²²",
    ):
        assert officer_client.get(path).status_code < 500, path
    attempts = [
        {"action": "assign", "assignee": "²"},
        {"action": "decide_item", "item_id": "²", "decision": "approved"},
        {"action": "remove_identifier", "identifier_id": "²"},
        {"action": "add_identifier", "kind": "account_id", "value": "²", "method": "staff", "justification": "x"},
    ]
    for fields in attempts:
        resp = officer_client.post_form(
            f"/admin/requests/{dsr.reference}/action", fields, page=f"/admin/requests/{dsr.reference}"
        )
        assert resp.status_code == 303, (fields, resp.status_code)
