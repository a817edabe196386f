"""Billing in the access package, from a localstripe customer with a subscription, an invoice and a charge:
every field Stripe holds that is the person's (addresses, billing details, invoice lines), amounts in
currency units and times in ISO 8601 (UTC), no card secret."""

from __future__ import annotations

import csv
import io
import json

import pytest
import stripe

from app.demo import create_stripe_customer
from app.extensions import db
from app.sources.stripe_billing import setup
from tests.functional._fulfil import make_subject_data, stripe_app_config

__all__ = ["stripe_app_config"]
from tests.functional.test_access_package import fulfil


@pytest.fixture
def app_config(stripe_app_config):
    return stripe_app_config


def test_billing_export_has_customer_addresses_lines_and_converted_amounts(app, redis_conn):
    acct = make_subject_data(usage=3)
    cid = create_stripe_customer(acct.email, acct.name, charge_cents=1999)
    setup()
    address = {"line1": "1 Engine Street", "city": "London", "postal_code": "N1 9GU", "country": "GB"}
    stripe.Customer.modify(cid, address=address, phone="+44 20 7946 0000")
    acct.stripe_customer_id = cid
    email, name = acct.email, acct.name
    db.session.commit()

    z = fulfil(app, redis_conn)
    billing = json.loads(z.read("billing.json"))
    by_type: dict[str, list[dict]] = {}
    for row in billing:
        by_type.setdefault(row["record_type"], []).append(row)
    assert {"customer", "payment_method", "subscription", "invoice", "invoice_line", "charge"} <= set(by_type)

    (customer,) = by_type["customer"]
    assert customer["email"] == email and customer["name"] == name
    assert customer["address"] == "1 Engine Street, N1 9GU London, GB" and customer["phone"] == "+44 20 7946 0000"
    assert customer["created"].endswith("+00:00")  # ISO 8601 with its zone, not a Unix epoch

    charge = next(c for c in by_type["charge"] if c["description"] == "API usage top-up")
    assert charge["amount"] == "19.99" and charge["currency"] == "USD"
    sub = by_type["subscription"][0]
    assert sub["amount"] == "20.00" and sub["period_start"] and sub["period_end"]
    invoice = by_type["invoice"][0]
    assert invoice["email"] == email and invoice["currency"] == "USD"
    line = by_type["invoice_line"][0]
    assert line["parent"] == invoice["id"] and line["amount"] == "20.00" and line["currency"] == "USD"
    card = by_type["payment_method"][0]
    assert card["last4"] == "4242" and card["brand"] == "visa"

    assert b"4242424242424242" not in b"".join(z.read(n) for n in z.namelist())
    billing_files = z.read("billing.json") + z.read("billing.csv")
    assert b"fingerprint" not in billing_files and b"cvc" not in billing_files
    rows = list(csv.DictReader(io.StringIO(z.read("billing.csv").decode())))
    assert any(r["amount"] == "19.99" for r in rows)
    readme = z.read("README.html").decode()
    assert "19.99 USD" in readme and "1 Engine Street" in readme
