"""Integer path parameters are bounded: a 20-digit id is a 404, never a 500 ("Python int too large")."""

from __future__ import annotations

import pytest
from werkzeug.routing import IntegerConverter

from app.mail import queue_mail
from app.routing import MAX_ID, IdConverter
from tests.factories import make_staff
from tests.functional.admin_support import staff_client

HUGE = ["99999999999999999999", str(2**63), str(2**31), str(MAX_ID + 1), "0" * 30 + "1" * 30, "9" * 5000]


@pytest.mark.parametrize("raw", HUGE)
def test_huge_ids_in_admin_paths_are_404_not_500(app, raw):
    client, _admin = staff_client(app, "admin")
    queue_mail("someone@example.com", "admin_staff_invite", "Hi", role="officer", login_url="x", inviter="y")
    for path in ("role", "active", "reset"):
        resp = client.post_form(f"/admin/staff/{raw}/{path}", {"role": "officer", "active": "0"}, page="/admin/staff")
        assert resp.status_code == 404, (path, resp.status_code)
    assert client.get(f"/admin/outbox/{raw}").status_code == 404


def test_the_largest_id_is_a_plain_not_found(app):
    client, _admin = staff_client(app, "admin")
    assert client.get(f"/admin/outbox/{MAX_ID}").status_code == 404
    target = make_staff("officer")
    resp = client.post_form(f"/admin/staff/{target.id}/role", {"role": "auditor"}, page="/admin/staff")
    assert resp.status_code == 303  # the converter still lets real ids through


def test_every_integer_path_parameter_in_the_app_is_bounded(app):
    for rule in app.url_map.iter_rules():
        for name, converter in rule._converters.items():
            if isinstance(converter, IntegerConverter):
                assert isinstance(converter, IdConverter), f"{rule.rule}: <{name}> is an unbounded int"
