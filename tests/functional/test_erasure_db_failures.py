"""A database failing in the middle of erasure, anonymisation and minimisation, on the real database:
a constraint violation, or a dropped connection (OperationalError, raised by a SQLAlchemy event just
before the statement reaches the server). Each step's transaction rolls back whole: no half-anonymised
account, no report that claims success, and the request says truthfully whether it failed or will retry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from app.audit.models import AuditEvent
from app.dsr.minimise import minimise_closed_requests
from app.dsr.models import DsrRequest
from app.extensions import db
from app.mail.models import OutgoingMail
from app.models_base import utcnow
from app.platform.models import Account, ApiKey, SupportMessage
from app.sources import erasure_plan
from tests.factories import make_account, make_request
from tests.functional._fulfil import make_subject_data, run_jobs, usage_count
from tests.functional.test_erasure import approved_deletion
from workers.jobs import erase_subject


@contextmanager
def failing(engine: Engine, sql: str, *, skip: int = 0, times: int = 1) -> Iterator[list[str]]:
    """The connection drops under the statements that run ``sql`` (at their start, or inside one, as
    PostgreSQL's batched ``WITH gone AS (DELETE ...)``): the first ``skip`` pass, the next ``times``
    raise OperationalError as the driver does when the server goes away."""
    seen: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if sql.upper() in statement.upper():
            seen.append(statement)
            if skip < len(seen) <= skip + times:
                raise OperationalError(statement, parameters, Exception("server closed the connection unexpectedly"))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def reload(dsr_id: int) -> DsrRequest:
    db.session.expire_all()
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr is not None
    return dsr


def report_mails() -> list[OutgoingMail]:
    stmt = select(OutgoingMail).where(OutgoingMail.template == "fulfil_deletion_report")
    return list(db.session.execute(stmt).scalars())


def counts(dsr: DsrRequest) -> dict[tuple[str, str], int | None]:
    return {(i["category"], i["action"]): i["count"] for i in dsr.report["items"]}


def test_anonymising_an_account_that_hits_a_constraint_rolls_back_whole_and_fails(app, redis_conn):
    """The plan keeps the API keys and support messages, so the account is anonymised (messages unlinked,
    then the account's fields replaced) in one transaction; the unique email refuses the second step."""
    acct = make_subject_data(usage=5)
    account_id = acct.id
    make_account(email=f"erased-{account_id}@invalid")  # the anonymised address is taken
    keep = {"api_keys", "support_messages"}
    plan = [{**p, "action": "keep"} if p["category"] in keep else p for p in erasure_plan("ada@example.com")]
    dsr_id = approved_deletion("ada@example.com", plan=plan)
    run_jobs(redis_conn)

    dsr = reload(dsr_id)
    assert dsr.status == "failed" and dsr.last_error.startswith("IntegrityError")
    assert "items" not in (dsr.report or {}) and dsr.outcome is None and report_mails() == []
    # Neither half of the anonymisation stayed: the account is as it was, its messages still linked.
    acct = db.session.get(Account, account_id)
    assert (acct.email, acct.name, acct.status) == ("ada@example.com", "Ada Lovelace", "active")
    linked = select(func.count()).select_from(SupportMessage).where(SupportMessage.account_id == account_id)
    assert db.session.execute(linked).scalar_one() == 2
    assert db.session.execute(select(func.count()).select_from(ApiKey)).scalar_one() == 2
    alerts = db.session.execute(select(OutgoingMail).where(OutgoingMail.template == "fulfil_staff_alert")).scalars()
    assert any("IntegrityError" in m.body_text for m in alerts)


def test_a_connection_drop_while_deleting_the_account_is_retried_and_reports_the_first_counts(app, redis_conn):
    acct = make_subject_data(usage=30)
    account_id = acct.id
    dsr_id = approved_deletion("ada@example.com")
    with failing(db.engines["platform"], "DELETE FROM platform_account") as seen:
        run_jobs(redis_conn)
    assert seen

    dsr = reload(dsr_id)
    assert dsr.status == "in_progress"
    assert dsr.last_error.startswith("OperationalError") and "(will retry; 4 retries left)" in dsr.last_error
    assert db.session.get(Account, account_id) is not None and report_mails() == []
    assert "items" not in dsr.report and set(dsr.report["state"]["done"]) >= {"usage_logs", "api_keys"}
    assert usage_count(account_id) == 0  # the steps before the drop are done, and recorded as done

    assert erase_subject(dsr_id).startswith("erased")  # the retry
    dsr = reload(dsr_id)
    assert dsr.status == "completed", dsr.last_error
    found = counts(dsr)
    assert found[("usage_logs", "deleted")] == 30 and found[("account", "deleted")] == 1
    assert db.session.get(Account, account_id) is None
    [mail] = report_mails()
    assert "API usage logs: deleted (30)" in mail.body_text


def test_a_drop_while_recording_completion_sends_no_report_and_the_retry_does(app, redis_conn):
    """The last transaction (report, mail to the subject, completed) fails as a whole."""
    make_subject_data(usage=4)
    dsr_id = approved_deletion("ada@example.com")
    with failing(db.engine, "INSERT INTO outgoing_mail"):
        run_jobs(redis_conn)

    dsr = reload(dsr_id)
    assert dsr.status == "in_progress" and "will retry" in dsr.last_error
    assert "items" not in dsr.report and dsr.outcome is None and report_mails() == []
    completed = select(AuditEvent).where(AuditEvent.request_id == dsr_id, AuditEvent.event == "request.status_changed")
    assert all(e.data.get("to") != "completed" for e in db.session.execute(completed).scalars())

    erase_subject(dsr_id)
    dsr = reload(dsr_id)
    assert dsr.status == "completed" and counts(dsr)[("usage_logs", "deleted")] == 4
    assert len(report_mails()) == 1


def test_minimisation_interrupted_by_a_drop_leaves_no_request_half_minimised(app):
    long_ago = utcnow() - timedelta(days=90)
    ids = [
        make_request("completed", email=f"closed{n}@example.com", full_name=f"Closed {n}", closed_at=long_ago).id
        for n in range(2)
    ]
    # The second request's notes go in the same batch transaction as the whole of the first request.
    with failing(db.engine, "DELETE FROM request_note", skip=1), pytest.raises(OperationalError):
        minimise_closed_requests()
    db.session.rollback()  # what the job's session handling does with the failed transaction

    for n, dsr_id in enumerate(ids):
        dsr = reload(dsr_id)
        assert (dsr.email, dsr.full_name, dsr.minimised_at) == (f"closed{n}@example.com", f"Closed {n}", None)
    minimised = select(func.count()).select_from(AuditEvent).where(AuditEvent.event == "request.minimised")
    assert db.session.execute(minimised).scalar_one() == 0

    assert minimise_closed_requests() == 2
    assert all(reload(i).email is None and reload(i).minimised_at is not None for i in ids)


def test_an_account_whose_api_keys_the_plan_keeps_is_anonymised_not_deleted(app, redis_conn):
    """The counterpart of the constraint test above: with the address free, the same plan anonymises."""
    acct = make_subject_data(usage=5, stripe_customer_id="cus_kept123456")
    account_id = acct.id
    keep = {"api_keys", "support_messages"}
    plan = [{**p, "action": "keep"} if p["category"] in keep else p for p in erasure_plan("ada@example.com")]
    dsr_id = approved_deletion("ada@example.com", plan=plan)
    run_jobs(redis_conn)

    dsr = reload(dsr_id)
    assert dsr.status == "completed", dsr.last_error
    [item] = [i for i in dsr.report["items"] if i["category"] == "account"]
    assert (item["action"], item["count"]) == ("anonymised", 1) and "keeps its API keys" in item["reason"]
    acct = db.session.get(Account, account_id)
    assert (acct.email, acct.name, acct.company, acct.stripe_customer_id, acct.status) == (
        f"erased-{account_id}@invalid",
        "Erased account",
        None,
        None,
        "closed",
    )
    linked = select(func.count()).select_from(SupportMessage).where(SupportMessage.account_id == account_id)
    assert db.session.execute(linked).scalar_one() == 0  # the kept messages are no longer linked to it
    [mail] = report_mails()
    assert "anonymised" in mail.body_text.lower()
