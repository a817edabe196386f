"""Stripe failing under erasure and export, through the real SDK: a front that answers Stripe's error
responses or cuts the connection stands between the app and localstripe. Connection trouble, rate
limits and 5xx are retried (the request says so); a refused request (bad key, invalid request) fails
at once and surfaces to staff; a bug in our code is never dressed up as a transient error."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from app.demo import create_stripe_customer
from app.dsr.models import DsrRequest
from app.extensions import db
from app.mail.models import OutgoingMail
from app.platform.models import Account
from tests.factories import make_request
from tests.functional._fulfil import make_subject_data, run_jobs, stripe_app_config
from tests.functional.admin_support import act, fresh_g, staff_client  # noqa: F401
from workers.jobs import build_export, erase_subject

__all__ = ["stripe_app_config"]

ERRORS = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
}


class StripeFront:
    """An HTTP server where Stripe should be: answers every call with ``status`` (a Stripe error body),
    or, with ``cut``, closes the connection without a word (a proxy dropping it)."""

    def __init__(self) -> None:
        self.status = 500
        self.cut = False
        self.hits = 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                front.hits += 1
                if front.cut:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = json.dumps(
                    {"error": {"type": ERRORS[front.status], "message": f"front says {front.status}"}}
                ).encode()
                self.send_response(front.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def app_config(stripe_app_config):
    return {**stripe_app_config, "STAFF_ALERT_EMAIL": "dpo@example.com"}


@pytest.fixture
def front():
    f = StripeFront()
    yield f
    f.stop()


def approved(app, request_type: str) -> tuple[int, str, str]:
    """A subject with an account and a Stripe customer, and their request approved by an officer (the
    plan read from the real localstripe). Returns (request id, reference, customer id)."""
    client, _ = staff_client(app, "officer")
    acct = make_subject_data(usage=3)
    acct.stripe_customer_id = create_stripe_customer(acct.email, acct.name)
    db.session.commit()
    customer = acct.stripe_customer_id
    dsr = make_request("pending_review", request_type, email="ada@example.com")
    extra = {"confirm_reference": dsr.reference} if request_type == "deletion" else {}
    act(client, dsr, "approve", **extra)
    return dsr.id, dsr.reference, customer


def mails(template: str) -> list[OutgoingMail]:
    return list(db.session.execute(select(OutgoingMail).where(OutgoingMail.template == template)).scalars())


def scheduled_retries(redis_conn) -> list[str]:
    return ScheduledJobRegistry("fulfilment", connection=redis_conn).get_job_ids()


def reload(dsr_id: int) -> DsrRequest:
    db.session.expire_all()
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr is not None
    return dsr


@pytest.mark.parametrize("status", [400, 401, 403])
def test_stripe_refusing_an_erasure_fails_it_at_once_and_tells_staff(app, redis_conn, front, status):
    dsr_id, reference, _ = approved(app, "deletion")
    front.status = status
    app.config["STRIPE_API_BASE"] = front.base
    run_jobs(redis_conn)

    dsr = reload(dsr_id)
    assert dsr.status == "failed"
    assert f"BillingPermanent: Stripe refused the request ({status})" in dsr.last_error
    assert front.hits == 1 and scheduled_retries(redis_conn) == []  # asked once, never retried
    # Nothing claims success: no report, no outcome, no mail to the subject; the account is still there.
    assert "items" not in (dsr.report or {}) and dsr.outcome is None
    assert mails("fulfil_deletion_report") == []
    assert db.session.execute(select(Account).where(Account.email == "ada@example.com")).scalar_one()
    [alert] = mails("fulfil_staff_alert")
    assert alert.to_addr == "dpo@example.com" and f"refused the request ({status})" in alert.body_text
    client, _ = staff_client(app, "officer")
    page = client.get(f"/admin/requests/{reference}").get_data(as_text=True)
    assert f"Stripe refused the request ({status})" in page


@pytest.mark.parametrize("trouble", ["cut", 429, 500, 503])
def test_stripe_unreachable_during_erasure_is_retried_then_finishes(app, redis_conn, front, localstripe, trouble):
    dsr_id, _, customer = approved(app, "deletion")
    if trouble == "cut":
        front.cut = True
    else:
        front.status = trouble
    app.config["STRIPE_API_BASE"] = front.base
    run_jobs(redis_conn)

    dsr = reload(dsr_id)
    assert dsr.status == "in_progress"
    assert "BillingTransient" in dsr.last_error and "(will retry; 4 retries left)" in dsr.last_error
    assert scheduled_retries(redis_conn) == [f"fulfil-{dsr_id}"]
    assert mails("fulfil_deletion_report") == [] and mails("fulfil_staff_alert") == []
    assert "items" not in (dsr.report or {})

    # Stripe is back: the retry (run here directly) resumes from the recorded state and completes.
    app.config["STRIPE_API_BASE"] = localstripe
    assert erase_subject(dsr_id).startswith("erased")
    dsr = reload(dsr_id)
    assert dsr.status == "completed", dsr.last_error
    billing = {s["step"]: s for i in dsr.report["items"] if i["category"] == "billing" for s in i.get("steps", [])}
    assert billing["customer_deleted"]["verified"]
    with pytest.raises(stripe.InvalidRequestError):  # localstripe answers 404 for a deleted customer
        stripe.Customer.retrieve(customer)
    [report] = mails("fulfil_deletion_report")
    assert report.to_addr == "ada@example.com"


def test_a_bug_in_the_stripe_code_is_not_retried_as_transient(app, redis_conn, monkeypatch):
    dsr_id, _, customer = approved(app, "deletion")

    def broken(*args, **kwargs):
        raise TypeError("list() got an unexpected keyword argument 'emial'")

    monkeypatch.setattr(stripe.Customer, "list", broken)
    run_jobs(redis_conn)

    dsr = reload(dsr_id)
    assert dsr.status == "failed" and dsr.last_error.startswith("TypeError:")
    assert "will retry" not in dsr.last_error and scheduled_retries(redis_conn) == []
    assert mails("fulfil_deletion_report") == []
    monkeypatch.undo()
    assert not stripe.Customer.retrieve(customer).to_dict().get("deleted")  # nothing was erased at Stripe


def test_stripe_refusing_an_export_fails_it_and_no_link_goes_out(app, redis_conn, front):
    dsr_id, _, _ = approved(app, "access")
    front.status = 401
    app.config["STRIPE_API_BASE"] = front.base
    run_jobs(redis_conn)

    dsr = reload(dsr_id)
    assert dsr.status == "failed" and "Stripe refused the request (401)" in dsr.last_error
    assert scheduled_retries(redis_conn) == []
    assert mails("fulfil_export_ready") == []
    assert [m.to_addr for m in mails("fulfil_staff_alert")] == ["dpo@example.com"]


def test_stripe_cut_off_during_an_export_is_retried_then_the_package_is_built(app, redis_conn, front, localstripe):
    dsr_id, _, _ = approved(app, "access")
    front.cut = True
    app.config["STRIPE_API_BASE"] = front.base
    run_jobs(redis_conn)

    dsr = reload(dsr_id)
    assert dsr.status == "in_progress" and "will retry" in dsr.last_error
    assert scheduled_retries(redis_conn) == [f"fulfil-{dsr_id}"]

    app.config["STRIPE_API_BASE"] = localstripe
    assert build_export(dsr_id).startswith("export")
    dsr = reload(dsr_id)
    assert dsr.status == "completed", dsr.last_error
    assert [m.to_addr for m in mails("fulfil_export_ready")] == ["ada@example.com"]


def correction(customer_email: str = "ada@example.com") -> tuple[int, int, str]:
    from app.audit import Actor
    from app.dsr import services
    from app.dsr.models import CorrectionItem
    from app.dsr.states import RequestStatus
    from tests.factories import make_staff

    acct = make_subject_data(usage=0)
    acct.stripe_customer_id = create_stripe_customer(acct.email, acct.name)
    db.session.commit()
    dsr = make_request("pending_review", "correction", email=customer_email)
    db.session.add(
        CorrectionItem(request_id=dsr.id, field="name", proposed_value="Augusta Ada King", decision="approved")
    )
    db.session.commit()
    services.transition(dsr, RequestStatus.APPROVED, Actor.staff(make_staff("officer")))
    db.session.commit()
    return dsr.id, acct.id, acct.stripe_customer_id


def test_stripe_refusing_a_correction_applies_the_account_and_says_stripe_was_not_updated(
    app, redis_conn, front, localstripe
):
    dsr_id, account_id, customer = correction()
    front.status = 403
    app.config["STRIPE_API_BASE"] = front.base
    run_jobs(redis_conn)

    dsr = reload(dsr_id)
    assert dsr.status == "completed", dsr.last_error
    [item] = dsr.corrections
    assert item.result.startswith("Account name updated.")
    assert "Stripe not updated: Stripe refused the request (403)" in item.result
    assert db.session.get(Account, account_id).name == "Augusta Ada King"
    [done] = mails("fulfil_correction_done")
    assert "Stripe not updated" in done.body_text  # the subject is told what was not changed
    stripe.api_base = app.config["STRIPE_API_BASE"] = localstripe
    assert stripe.Customer.retrieve(customer).name == "Ada Lovelace"


def test_stripe_cut_off_during_a_correction_is_retried_and_the_retry_updates_both(app, redis_conn, front, localstripe):
    from workers.jobs import apply_corrections

    dsr_id, account_id, customer = correction()
    front.cut = True
    app.config["STRIPE_API_BASE"] = front.base
    run_jobs(redis_conn)

    dsr = reload(dsr_id)
    assert dsr.status == "in_progress" and "will retry" in dsr.last_error
    assert [c.applied_at for c in dsr.corrections] == [None] and mails("fulfil_correction_done") == []

    app.config["STRIPE_API_BASE"] = localstripe
    assert apply_corrections(dsr_id) == "1 correction(s) applied"
    [item] = reload(dsr_id).corrections
    assert "Account name updated." in item.result and "Stripe customer name updated." in item.result
    assert stripe.Customer.retrieve(customer).name == "Augusta Ada King"
