"""The officer's queue: sorting, search as people type it, quick filters with counts, saved views,
"all N matching" for bulk actions, dashboard tiles that open exactly what they count."""

from __future__ import annotations

from bs4 import BeautifulSoup
from sqlalchemy import select

from app.dsr.models import DsrRequest
from app.extensions import db
from tests.factories import make_request
from tests.functional.admin_support import fresh_g, staff_client  # noqa: F401


def refs_on(page: str) -> list[str]:
    soup = BeautifulSoup(page, "html.parser")
    return [a.get_text() for a in soup.select("table.queue tbody td a")]


def test_sorting_by_received_and_type(app):
    client, _ = staff_client(app, "auditor")
    old = make_request("pending_review", "deletion", received_days_ago=20)
    new = make_request("pending_review", "access", received_days_ago=1)
    newest_first = refs_on(client.get("/admin/requests?sort=-received").get_data(as_text=True))
    assert newest_first == [new.reference, old.reference]
    assert refs_on(client.get("/admin/requests?sort=received").get_data(as_text=True)) == [old.reference, new.reference]
    assert refs_on(client.get("/admin/requests?sort=type").get_data(as_text=True))[0] == new.reference
    assert client.get("/admin/requests?sort=%27;drop").status_code == 200  # unknown: the default order


def test_search_by_reference_without_prefix_and_by_name(app):
    client, _ = staff_client(app, "auditor")
    dsr = make_request("pending_review", full_name="Grace Brewster Hopper")
    make_request("pending_review", full_name="Someone Else")
    assert refs_on(client.get(f"/admin/requests?q={dsr.reference[4:]}").get_data(as_text=True)) == [dsr.reference]
    assert refs_on(client.get("/admin/requests?q=brewster").get_data(as_text=True)) == [dsr.reference]
    assert refs_on(client.get(f"/admin/requests?q={dsr.email}").get_data(as_text=True)) == [dsr.reference]


def test_quick_filters_count_and_the_due_soon_tile_opens_them(app):
    client, user = staff_client(app, "officer")
    mine = make_request("pending_review", assignee_id=user.id)
    soon = make_request("on_hold", received_days_ago=27)  # due in about 3 days, on hold
    page = client.get("/admin/requests").get_data(as_text=True)
    assert "Mine (1)" in page and "Due soon (1)" in page
    dashboard = BeautifulSoup(client.get("/admin/").get_data(as_text=True), "html.parser")
    tile = next(a for a in dashboard.select("a.stat-card") if "Due within" in a.get_text())
    assert tile.select_one(".stat").get_text() == "1"
    assert refs_on(client.get(tile["href"]).get_data(as_text=True)) == [soon.reference]
    assert refs_on(client.get("/admin/requests?assignee=me").get_data(as_text=True)) == [mine.reference]


def test_saved_views_belong_to_their_officer(app):
    client, _ = staff_client(app, "officer")
    other, _ = staff_client(app, "officer")
    make_request("pending_review", "deletion")
    resp = client.post_form(
        "/admin/requests/views", {"name": "Deletions", "query": "type=deletion&sort=received"}, page="/admin/requests"
    )
    assert resp.status_code == 303 and "type=deletion" in resp.headers["Location"]
    assert ">Deletions</a>" in client.get("/admin/requests").get_data(as_text=True)
    assert ">Deletions</a>" not in other.get("/admin/requests").get_data(as_text=True)


def test_bulk_all_matching_acts_on_every_match_not_only_the_page(app):
    client, _ = staff_client(app, "officer")
    for _ in range(27):  # more than one page of 25
        make_request("pending_review", "access", jurisdiction="ccpa")
    make_request("pending_review", "access", jurisdiction="gdpr")
    resp = client.post_form(
        "/admin/requests/bulk",
        {"action": "approve", "all_matching": "1", "return_to": "/admin/requests?jurisdiction=ccpa"},
        page="/admin/requests",
    )
    assert resp.status_code == 303
    statuses = db.session.execute(select(DsrRequest.jurisdiction, DsrRequest.status)).all()
    assert sorted({s for j, s in statuses if j == "ccpa"}) == ["approved"]
    assert [s for j, s in statuses if j == "gdpr"] == ["pending_review"]
