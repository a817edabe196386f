"""The access package a person can read and a regulator accepts (issue 13): README sections per law, the
person's records in readable tables, third-party messages withheld and released by an officer, retention
enforced at export, zip entries dated at generation, the request history as a category of its own."""

from __future__ import annotations

import json
import zipfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from app.audit import Actor
from app.dsr import services
from app.dsr.models import DsrRequest, Export
from app.dsr.states import RequestStatus
from app.extensions import db
from app.models_base import utcnow
from app.platform.models import SupportMessage, UsageRecord
from tests.factories import make_request, make_staff
from tests.functional._fulfil import make_subject_data, run_jobs


def approve(dsr: DsrRequest) -> None:
    services.transition(dsr, RequestStatus.APPROVED, Actor.staff(make_staff("officer")))
    db.session.commit()


def export_zip(app, dsr_id: int) -> zipfile.ZipFile:
    export = (
        db.session.execute(
            select(Export)
            .where(Export.request_id == dsr_id, Export.status.in_(["ready", "review"]))
            .order_by(Export.id.desc())
        )
        .scalars()
        .first()
    )
    assert export is not None, "no package was built"
    return zipfile.ZipFile(Path(app.config["EXPORT_DIR"]) / export.filename)


def fulfil(
    app,
    redis_conn,
    jurisdiction: str = "gdpr",
    email: str = "ada@example.com",
    expect: RequestStatus = RequestStatus.COMPLETED,
) -> zipfile.ZipFile:
    dsr = make_request(RequestStatus.PENDING_REVIEW, "access", email=email, jurisdiction=jurisdiction)
    approve(dsr)
    dsr_id = dsr.id
    run_jobs(redis_conn)
    dsr = db.session.get(DsrRequest, dsr_id)
    assert dsr.status == expect.value, dsr.last_error
    return export_zip(app, dsr_id)


def test_readme_gdpr_request_answers_article_15_and_never_claims_the_ccpa(app, redis_conn):
    make_subject_data(usage=30)
    readme = fulfil(app, redis_conn, "gdpr").read("README.html").decode()
    # summary first: what, why, who else, how long
    summary = readme.index('id="summary"')
    assert summary < readme.index('id="cat-account"') < readme.index('id="dictionary"') < readme.index('id="law"')
    for heading in ("What we hold", "Why we hold it", "Who else gets it", "How long we keep it"):
        assert heading in readme[summary : readme.index('id="files"')]
    for part in ("Art. 15(1)(a)", "Art. 15(1)(c)", "Art. 15(1)(d)", "Art. 15(1)(g)", "Art. 15(1)(h)", "Art. 15(2)"):
        assert part in readme, part
    # named recipients, with the safeguard of each transfer outside the EEA; the UK ICO among the authorities
    assert "Stripe, Inc." in readme and "Google LLC" in readme
    assert "EU-US Data Privacy Framework" in readme and "Standard Contractual Clauses" in readme
    assert "Information Commissioner" in readme
    assert "Cloud infrastructure providers" not in readme and "as long as needed" not in readme
    # not both laws: a GDPR request is not answered under the CCPA
    assert "CCPA" not in readme and "California" not in readme and 'id="ccpa"' not in readme
    # self-contained: no script, no external resource
    assert "<script" not in readme and "<link" not in readme and "src=" not in readme
    assert "<style>" in readme


def test_readme_ccpa_request_answers_the_ccpa_and_never_cites_article_15(app, redis_conn):
    make_subject_data(usage=30)
    readme = fulfil(app, redis_conn, "ccpa").read("README.html").decode()
    for heading in (
        "Categories of personal information we collected about you",
        "Categories of sources",
        "Business or commercial purposes",
        "Categories of third parties we disclosed it to",
        "Sale and sharing",
    ):
        assert heading in readme, heading
    for ccpa_category in ("Identifiers", "Commercial information", "Internet or other electronic network activity"):
        assert ccpa_category in readme
    assert "California Privacy Protection Agency" in readme
    assert "Article 15" not in readme and "Art. 15" not in readme and "GDPR" not in readme


def test_readme_tables_use_labels_iso_dates_and_the_dictionary_names_every_field(app, redis_conn):
    from app.sources.inventory import EXPORTED

    make_subject_data(usage=25)
    z = fulfil(app, redis_conn, "gdpr")
    readme = z.read("README.html").decode()
    assert '<th scope="col">Time of request</th>' in readme and '<th scope="col">Input tokens</th>' in readme
    assert "created_at</th>" not in readme  # raw field names only in the dictionary's column of file names
    first = json.loads(z.read("usage_logs.json"))[0]
    assert first["created_at"][:19] in readme  # the same time, ISO 8601
    assert "+00:00" in readme
    # the first rows, not all of them, and the count of all
    assert "The first 10 of 25 records" in readme
    for cat in EXPORTED:
        for f in cat.field_info:
            assert f"<code>{f.name}</code>" in readme and f.label in readme


def test_third_party_support_message_is_withheld_and_listed_not_exported(app, redis_conn):
    acct = make_subject_data(usage=5)
    db.session.add(
        SupportMessage(
            email="neighbour@example.org",
            account_id=acct.id,
            direction="inbound",
            subject="About Ada's account",
            body="Call me on +44 7700 900123, I am her neighbour",
        )
    )
    db.session.commit()
    third = db.session.execute(select(SupportMessage.id).where(SupportMessage.email == "neighbour@example.org"))
    third_id = third.scalar_one()
    # Something is withheld: the package waits for an officer who weighs it (even without
    # ACCESS_REVIEW_BEFORE_RELEASE), and no download link has gone out yet.
    z = fulfil(app, redis_conn, expect=RequestStatus.AWAITING_RELEASE)
    from app.mail.models import OutgoingMail

    templates = set(db.session.execute(select(OutgoingMail.template)).scalars())
    assert "fulfil_export_ready" not in templates and "fulfil_staff_review" in templates
    blob = b"".join(z.read(n) for n in z.namelist())
    assert b"7700 900123" not in blob and b"neighbour@example.org" not in blob
    support = json.loads(z.read("support_messages.json"))
    assert third_id not in {m["id"] for m in support} and len(support) == 3  # the subject's own three
    manifest = json.loads(z.read("manifest.json"))
    assert [(w["category"], w["id"]) for w in manifest["withheld"]] == [("support_messages", third_id)]
    readme = z.read("README.html").decode()
    assert 'id="withheld"' in readme and "Article 15(4)" in readme
    assert f"<td>{third_id}</td>" in readme


def test_usage_row_past_retention_is_never_exported_though_the_sweep_has_not_run(app, redis_conn):
    acct = make_subject_data(usage=3)
    now = utcnow()
    for days, rid in ((366, "req_expired"), (364, "req_kept")):
        db.session.add(
            UsageRecord(
                account_id=acct.id,
                key_prefix="sk-x",
                model="m",
                request_id=rid,
                prompt_tokens=1,
                completion_tokens=1,
                created_at=now - timedelta(days=days),
            )
        )
    db.session.commit()
    z = fulfil(app, redis_conn)
    usage = json.loads(z.read("usage_logs.json"))
    ids = {u["request_id"] for u in usage}
    assert "req_kept" in ids and "req_expired" not in ids and len(usage) == 4
    assert b"req_expired" not in z.read("usage_logs.csv")
    # the sweep has not run: the row is still in the database
    assert db.session.execute(select(UsageRecord.id).where(UsageRecord.request_id == "req_expired")).first()


def test_zip_entries_are_dated_at_generation_time_and_history_is_a_category(app, redis_conn):
    make_subject_data(usage=3)
    earlier = make_request(RequestStatus.COMPLETED, "deletion", email="ada@example.com")
    earlier_ref = earlier.reference
    z = fulfil(app, redis_conn)
    generated = json.loads(z.read("manifest.json"))["generated_at"]
    stamp = tuple(int(x) for x in (generated[:4], generated[5:7], generated[8:10]))
    for info in z.infolist():
        assert info.date_time[:3] == stamp, (info.filename, info.date_time)
        assert info.date_time[0] != 1980
    history = json.loads(z.read("requests.json"))
    assert earlier_ref in {r["reference"] for r in history}
    assert {"requests.json", "requests.csv"} <= set(z.namelist())
    assert "Your requests to us" in z.read("README.html").decode()


def test_readme_other_law_request_cites_neither_law(app, redis_conn):
    make_subject_data(usage=3)
    readme = fulfil(app, redis_conn, "other").read("README.html").decode()
    assert 'id="law"' in readme and "What you are entitled to know" in readme
    assert "Art. 15" not in readme and "Article 15" not in readme and "CCPA" not in readme
    assert "Transfers outside the European Economic Area" in readme and "Stripe, Inc." in readme


def test_an_example_processor_the_operator_has_not_confirmed_is_never_presented_as_fact(app, redis_conn):
    from app.sources.inventory import RECIPIENTS, unconfirmed_recipients

    make_subject_data(usage=2)
    readme = fulfil(app, redis_conn).read("README.html").decode()
    marker = "[example provider, not yet confirmed by this installation's operator]"
    assert set(unconfirmed_recipients()) == {"hosting", "storage", "mail"}
    for key in unconfirmed_recipients():
        assert f"{RECIPIENTS[key].name}{marker}" in readme.replace(" [", "[")
    assert f"Stripe, Inc.{marker}" not in readme.replace(" [", "[") and "Stripe, Inc." in readme
