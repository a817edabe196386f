"""The data inventory is configuration (app/sources/inventory.toml) and complete: every category names its
recipients and processors, its source, a retention period, its CCPA categories; every recipient outside the
EEA its transfer safeguard; every law its authorities. A gap fails here, before a package could omit it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.sources.inventory import INVENTORY, INVENTORY_PATH, RECIPIENTS, load, validate


def test_inventory_shipped_has_no_gap():
    assert validate(load()) == []
    assert {c.name for c in INVENTORY} >= {"account", "usage_logs", "support_messages", "billing", "requests"}


def test_inventory_names_stripe_and_google_in_the_us_with_their_safeguards():
    for key, name in (("stripe", "Stripe, Inc."), ("google", "Google LLC")):
        r = RECIPIENTS[key]
        assert r.name == name and not r.eea and "United States" in r.country
        assert "Data Privacy Framework" in r.transfer and "Standard Contractual Clauses" in r.transfer
    gdpr = load().authorities["gdpr"]
    assert any("Information Commissioner" in name for name, _ in gdpr)


def _without(text: str, pattern: str) -> str:
    changed = re.sub(pattern, "", text, count=1, flags=re.M)
    assert changed != text, pattern
    return changed


@pytest.mark.parametrize(
    ("pattern", "gap"),
    [
        (r'^recipients = \["stripe"\]\n', "category billing: no recipients or processors"),
        (r"^retention_days = 365\n", "category usage_logs: no retention period in days"),
        (
            r'^ccpa_categories = \["Identifiers \(Cal\. Civ\. Code section 1798\.140\(v\)\(1\)\(A\)\)"\]\n',
            "category account: no CCPA category",
        ),
        (r'^origin = "You: what you entered.*\n', "category account: no origin"),
        (
            r'^transfer = "EU-US Data Privacy Framework \(Stripe.*\n',
            "recipient stripe: outside the EEA without a transfer",
        ),
        (r"(?s)\[\[authority\.ccpa\]\].*?(?=\[\[authority\.other\]\])", "authorities: none for ccpa"),
    ],
)
def test_inventory_gap_fails_validation(tmp_path: Path, pattern: str, gap: str):
    broken = tmp_path / "inventory.toml"
    broken.write_text(_without(INVENTORY_PATH.read_text(), pattern))
    gaps = validate(load(broken))
    assert any(g.startswith(gap) for g in gaps), gaps


def test_inventory_refuses_an_unknown_recipient(tmp_path: Path):
    broken = tmp_path / "inventory.toml"
    broken.write_text(INVENTORY_PATH.read_text().replace('recipients = ["stripe"]', 'recipients = ["nobody"]'))
    with pytest.raises(ValueError, match="unknown recipients"):
        load(broken)
