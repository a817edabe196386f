"""One decision, one place: the detail page offers exactly the actions ``available_actions`` allows, in
every status, so the template never shows a button the action endpoint would refuse."""

from __future__ import annotations

import pytest
from bs4 import BeautifulSoup

from app.dsr.actions import available_actions
from app.dsr.models import CorrectionItem
from app.dsr.states import RequestStatus
from app.extensions import db
from tests.factories import make_request
from tests.functional.admin_support import fresh_g, staff_client  # noqa: F401

# Buttons that need something more than the status to appear (a proposed change, a withheld record,
# an identifier to remove): the page may show fewer of these than are allowed, never more.
NEEDS_AN_ITEM = {"decide_item", "release_record", "remove_identifier"}


def _offered(html: str) -> set[str]:
    """Every action a form on the page would post: a button's or a hidden field's ``action``."""
    fields = BeautifulSoup(html, "html.parser").find_all(["button", "input"], attrs={"name": "action"})
    return {f["value"] for f in fields}


@pytest.mark.parametrize("status", [s.value for s in RequestStatus])
@pytest.mark.parametrize("request_type", ["access", "correction"])
def test_detail_page_offers_only_the_available_actions(app, status, request_type):
    client, user = staff_client(app, "officer")
    dsr = make_request(status, request_type=request_type)
    if request_type == "correction":
        dsr.corrections.append(CorrectionItem(field="name", proposed_value="Sam New"))
        db.session.commit()
    html = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    allowed = available_actions(dsr, user)
    offered = _offered(html)
    assert offered <= allowed, f"{status}: shown but refused: {sorted(offered - allowed)}"
    missing = allowed - NEEDS_AN_ITEM - offered
    assert not missing, f"{status}: allowed, not shown: {sorted(missing)}"
    if request_type == "correction" and "decide_item" in allowed:
        assert "decide_item" in offered


def test_an_auditor_is_offered_no_action(app):
    client, user = staff_client(app, "auditor")
    dsr = make_request(RequestStatus.PENDING_REVIEW)
    html = client.get(f"/admin/requests/{dsr.reference}").get_data(as_text=True)
    assert available_actions(dsr, user) == frozenset()
    assert _offered(html) == set()
