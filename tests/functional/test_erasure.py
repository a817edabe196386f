"""Deletion requests through the job: follows the plan, leaves no trace, resumes after a crash."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.audit import Actor
from app.dsr import services
from app.dsr.models import DsrRequest
from app.dsr.states import RequestStatus
from app.extensions import db
from app.mail.models import OutgoingMail
from app.platform.models import Account, SupportMessage
from app.sources import erasure_plan
from app.sources.erasure import erase_everything
from tests.factories import make_request, make_staff
from tests.functional._fulfil import make_subject_data, platform_mentions, run_jobs, usage_count


def approved_deletion(email: str, plan=None) -> int:
    dsr = make_request(RequestStatus.PENDING_REVIEW, "deletion", email=email)
    dsr.plan = plan if plan is not None else erasure_plan(email)
    db.session.commit()
    services.transition(dsr, RequestStatus.APPROVED, Actor.staff(make_staff("officer")))
    db.session.commit()
    return dsr.id


def test_erase_subject_job_deletes_everything_and_reports(app, redis_conn):
    acct = make_subject_data(usage=700)
    other = make_subject_data(email="grace@example.com", name="Grace Hopper", usage=30)
    account_id, other_id = acct.id, other.id
    dsr_id = approved_deletion("ada@example.com")
    run_jobs(redis_conn)

    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == RequestStatus.COMPLETED.value, dsr.last_error
    assert platform_mentions("ada@example.com") == []
    assert platform_mentions("lovelace") == []
    assert usage_count(account_id) == 0 and usage_count(other_id) == 30
    counts = {(i["category"], i["action"]): i["count"] for i in dsr.report["items"]}
    assert counts[("usage_logs", "deleted")] == 700
    assert counts[("api_keys", "deleted")] == 2
    assert counts[("support_messages", "deleted")] == 3
    assert counts[("account", "deleted")] == 1
    assert counts[("billing", "not_checked")] is None  # Stripe not configured in this test
    mail = db.session.execute(
        select(OutgoingMail).where(OutgoingMail.template == "fulfil_deletion_report")
    ).scalar_one()
    assert mail.to_addr == "ada@example.com"
    assert "API usage logs: deleted (700)" in mail.body_text
    assert dsr.outcome == "completed"


class Crash(Exception):
    pass


def test_deletion_interrupted_after_some_batches_then_rerun_completes_with_correct_counts(app, redis_conn):
    acct = make_subject_data(usage=1000)
    account_id = acct.id
    dsr_id = approved_deletion("ada@example.com")
    dsr = db.session.get(DsrRequest, dsr_id)
    plan = dsr.plan
    state_box: dict = {}

    def checkpoint(state):
        row = db.session.get(DsrRequest, dsr_id)
        row.report = {"state": state}
        db.session.commit()
        state_box.update(state)

    batches = []

    def crash_after_three(rows, total, note):
        batches.append(rows)
        if len(batches) == 3:
            raise Crash("worker died")

    with pytest.raises(Crash):
        erase_everything("ada@example.com", plan=plan, checkpoint=checkpoint, progress=crash_after_three, batch=100)
    assert usage_count(account_id) == 700  # three batches of 100 went, in their own transactions
    assert db.session.get(Account, account_id) is not None

    # The job (as the reconciler would enqueue it) resumes and finishes.
    from app.dsr.services import fulfilment_job
    from app.queue import enqueue_now

    enqueue_now(fulfilment_job(db.session.get(DsrRequest, dsr_id)), redis_conn)
    run_jobs(redis_conn)
    db.session.expire_all()
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == RequestStatus.COMPLETED.value, dsr.last_error
    counts = {(i["category"], i["action"]): i["count"] for i in dsr.report["items"]}
    assert counts[("usage_logs", "deleted")] == 1000  # the total, not what the re-run deleted
    assert counts[("account", "deleted")] == 1
    assert usage_count(account_id) == 0
    assert platform_mentions("ada@example.com") == []
    # Running it yet again does nothing and changes nothing.
    from workers.jobs import erase_subject

    assert erase_subject(dsr_id).startswith("nothing to do")


def test_plan_marked_keep_is_followed(app, redis_conn):
    make_subject_data(usage=20)
    plan = [
        p if p["category"] != "support_messages" else {**p, "action": "keep"} for p in erasure_plan("ada@example.com")
    ]
    dsr_id = approved_deletion("ada@example.com", plan=plan)
    run_jobs(redis_conn)
    dsr = db.session.get(DsrRequest, dsr_id)
    # the email-only support message (no account link) is still there, as the approved plan said
    assert dsr.status == RequestStatus.COMPLETED.value, dsr.last_error
    assert ("support_messages", "kept") in {(i["category"], i["action"]) for i in dsr.report["items"]}
    assert ("account", "deleted") in {(i["category"], i["action"]) for i in dsr.report["items"]}
    messages = db.session.execute(select(SupportMessage)).scalars().all()
    assert len(messages) == 3 and all(m.account_id is None for m in messages)


def test_batched_delete_bounds_every_batch_whatever_the_id_layout(app):
    """Dense runs, sparse stretches among another account's rows, and a row below the last floor."""
    from datetime import UTC, datetime

    from app.platform.models import UsageRecord
    from app.sources.base import delete_in_batches, platform_engine

    now = datetime.now(UTC)
    layout = [1] * 130 + ([2] * 29 + [1]) * 40 + [1] * 75 + [2] * 500 + [1] * 3  # account per id
    rows = [
        {
            "id": i,
            "account_id": acct,
            "key_prefix": "sk-t",
            "model": "m",
            "request_id": f"r{i}",
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "created_at": now,
        }
        for i, acct in enumerate(layout, start=1000)
    ]
    with platform_engine().begin() as conn:
        conn.execute(UsageRecord.__table__.insert(), rows)
    totals = []

    def on_batch(total: int) -> None:
        if not totals:  # a row committed late, below every range still to come
            with platform_engine().begin() as conn:
                conn.execute(UsageRecord.__table__.insert(), [{**rows[0], "id": 999, "request_id": "late"}])
        totals.append(total)

    table, where = UsageRecord.__table__, UsageRecord.account_id == 1
    assert delete_in_batches(table, UsageRecord.id, where, batch=25, on_batch=on_batch) == layout.count(1) + 1
    steps = [b - a for a, b in zip([0, *totals], totals, strict=False)]
    assert max(steps) <= 25 and len(steps) < layout.count(1) / 10  # bounded, and not one row at a time
    with platform_engine().connect() as conn:
        left = conn.execute(select(UsageRecord.account_id).distinct()).scalars().all()
    assert left == [2]


def test_the_erasure_holds_no_session_transaction_open_while_the_sources_count_and_delete(app, redis_conn, monkeypatch):
    """The job read the request and the subject's account through the session; that read transaction
    must end before the platform work starts. Left open, it idled across the sources' counts (2.4 s for
    a 1M-row subject of an 11M-row log on PostgreSQL): a transaction holding its snapshot (and on SQLite
    its read lock) for as long as the platform work takes."""
    from app.sources.usage import UsageSource

    make_subject_data(usage=50)
    dsr_id = approved_deletion("ada@example.com")
    open_during: dict[str, bool] = {}
    count, erase = UsageSource.count, UsageSource.erase

    def counting(self, subject):
        open_during["count"] = db.session().in_transaction()
        return count(self, subject)

    def erasing(self, subject, *args, **kwargs):
        open_during["erase"] = db.session().in_transaction()
        return erase(self, subject, *args, **kwargs)

    monkeypatch.setattr(UsageSource, "count", counting)
    monkeypatch.setattr(UsageSource, "erase", erasing)
    run_jobs(redis_conn)
    assert db.session.get(DsrRequest, dsr_id).status == RequestStatus.COMPLETED.value
    assert open_during == {"count": False, "erase": False}
