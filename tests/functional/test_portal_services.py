"""The portal's services called directly, as the views call them: a raw link in, a typed result out.

The pages built on them are covered end to end in ``test_portal.py`` and ``test_portal_download.py``;
these pin what each service does on its own (counts, audit events, which problem it raises).
"""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.dsr import downloads, portal, services
from app.dsr.models import Export, Token
from app.dsr.states import RequestStatus
from app.extensions import db
from tests.factories import make_request
from tests.functional.test_portal_download import make_export

S = RequestStatus


def _downloaded_events() -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.event == "export.downloaded")).scalars())


def test_take_opens_counts_and_audits_one_download(app):
    dsr, export, raw = make_export(app)
    taken = downloads.take(raw)
    try:
        assert taken.filename == f"{dsr.reference}-data.zip"
        assert taken.use == 1
        assert taken.package.file.read(2) == b"PK"
        assert taken.package.size > 0
    finally:
        taken.package.close()
    db.session.commit()
    db.session.refresh(export)
    assert export.download_count == 1
    token = db.session.execute(select(Token).where(Token.purpose == "download")).scalar_one()
    assert token.use_count == 1
    events = _downloaded_events()
    assert len(events) == 1 and events[0].data == {"export_id": export.id, "use": 1}


def test_peek_and_check_link_count_nothing(app):
    _, export, raw = make_export(app)
    assert downloads.check_link(raw).id == export.id
    assert downloads.peek(raw) > 0
    db.session.commit()
    db.session.refresh(export)
    assert export.download_count == 0
    assert _downloaded_events() == []


def test_take_of_a_used_up_link_raises_used(app):
    _, _, raw = make_export(app)
    token = db.session.execute(select(Token).where(Token.purpose == "download")).scalar_one()
    token.use_count = token.max_uses
    db.session.commit()
    with pytest.raises(services.TokenProblem) as caught:
        downloads.take(raw)
    assert caught.value.kind == "used"


def test_take_of_a_package_that_vanished_raises_expired_and_counts_nothing(app):
    _, export, raw = make_export(app)
    (Path(app.config["EXPORT_DIR"]) / export.filename).unlink()
    with pytest.raises(downloads.DownloadProblem) as caught:
        downloads.take(raw)
    assert (caught.value.kind, caught.value.status) == ("expired", 410)
    db.session.rollback()
    assert db.session.execute(select(Token.use_count).where(Token.purpose == "download")).scalar_one() == 0


def test_verification_after_the_request_was_confirmed_is_closed(app):
    dsr = make_request(S.UNVERIFIED)
    raw = services.issue_token(dsr, "verify", lifetime=timedelta(hours=1), max_uses=1)
    db.session.commit()
    assert portal.verification(raw).dsr.id == dsr.id
    done = portal.verify(raw)
    db.session.commit()
    assert done.dsr.status == S.PENDING_REVIEW.value and done.status_token
    with pytest.raises(services.TokenProblem) as caught:
        portal.verification(raw)
    assert caught.value.kind == "used"  # spent by the confirmation
    with pytest.raises(services.TokenProblem):
        portal.verify(raw)


def test_verification_of_a_request_cancelled_meanwhile_is_closed(app):
    dsr = make_request(S.UNVERIFIED)
    raw = services.issue_token(dsr, "verify", lifetime=timedelta(hours=1), max_uses=1)
    dsr.status = S.EXPIRED.value
    db.session.commit()
    with pytest.raises(services.TokenProblem) as caught:
        portal.verification(raw)
    assert caught.value.kind == "closed"


def test_status_request_of_another_reference_is_invalid(app):
    dsr = make_request(S.PENDING_REVIEW)
    other = make_request(S.PENDING_REVIEW)
    raw = services.issue_token(dsr, "status")
    db.session.commit()
    assert portal.status_request(dsr.reference, raw).id == dsr.id
    for reference, link in ((other.reference, raw), (dsr.reference, ""), ("X" * 33, raw)):
        with pytest.raises(services.TokenProblem) as caught:
            portal.status_request(reference, link)
        assert caught.value.kind == "invalid"


def test_status_page_lists_ready_packages_with_downloads_left(app):
    dsr, export, raw = make_export(app)
    downloads.take(raw).package.close()
    db.session.add(Export(request_id=dsr.id, status="purged", filename="gone.zip"))
    db.session.commit()
    page = portal.status_page(dsr)
    assert page.downloads == [downloads.PackageLink(expires_at=export.expires_at, left=4)]
    assert page.outcome == "completed" and not page.cancellable and not page.can_reply
    assert [e.event for e in page.events] == ["export.downloaded"]  # public events only
    assert set(page.context()) >= {"dsr", "events", "downloads", "thread", "status_label", "outcome"}


def test_portal_views_reach_the_database_only_through_services():
    """The views parse, call a service and render: no queries and no models of their own."""
    source = (Path(__file__).resolve().parents[2] / "app" / "portal" / "views.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    assert not {m for m in imported if m.startswith("sqlalchemy") or m == "app.audit.models"}
    assert "db.session.execute" not in source and "db.session.get" not in source


def _identifier_link_without_identifier() -> str:
    """An identifier link whose address is no longer there to confirm (found, but nothing to use it on)."""
    dsr = make_request(S.PENDING_REVIEW)
    raw = services.issue_token(dsr, "identifier", lifetime=timedelta(hours=1), max_uses=1)
    db.session.commit()
    return raw


def test_confirm_of_a_link_with_nothing_to_confirm_is_spent_not_unknown(app):
    raw = _identifier_link_without_identifier()
    with pytest.raises(portal.SpentLink) as caught:
        portal.confirm("identifier", raw)
    assert caught.value.kind == "invalid"
    db.session.rollback()
    with pytest.raises(services.TokenProblem) as unknown:
        portal.confirm("identifier", "no-such-link")
    assert unknown.value.kind == "invalid" and not isinstance(unknown.value, portal.SpentLink)


def test_confirm_page_answers_410_for_a_found_link_it_cannot_use(app, client):
    raw = _identifier_link_without_identifier()
    assert client.get(f"/identifiers/{raw}").status_code == 303
    assert client.get("/identifiers/confirm").status_code == 200
    assert client.post_form("/identifiers/confirm").status_code == 410
    client.delete_cookie("dsr_identifier", path="/identifiers/confirm")
    client.set_cookie("dsr_identifier", "no-such-link", path="/identifiers/confirm")
    assert client.post_form("/identifiers/confirm", page="/requests/new").status_code == 404
