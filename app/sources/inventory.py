"""The data inventory, loaded from ``inventory.toml`` (configuration, not prose in code).

One entry per category: what it holds (fields with labels, meanings and units), where it comes from, why,
on what legal basis, who receives it (named recipients, with the transfer safeguard of each one outside the
EEA), how long it is kept, its CCPA categories, and the erasure rule. It drives the access package's README,
the deletion plan and the retention sweep and export filter. ``validate`` lists what an entry lacks; the
unit tests fail on any gap, and loading refuses an inventory that names an unknown recipient.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The operator's own inventory (a copy of this one with its real processors confirmed), or the shipped one.
INVENTORY_PATH = Path(os.environ.get("INVENTORY_FILE") or Path(__file__).with_name("inventory.toml"))


@dataclass(frozen=True)
class Retained:
    """Records of a category we must keep after a deletion, and why: listed in every deletion report."""

    kind: str  # "Invoices"
    contains: str  # what the record holds about the person
    obligation: str  # the law that makes us keep it
    period: str  # how long

    def sentence(self) -> str:
        return f"{self.kind} ({self.contains}) are kept for {self.period} because {self.obligation}."


@dataclass(frozen=True)
class Recipient:
    """A processor or other recipient, named (Art. 15(1)(c) GDPR, CJEU C-154/21)."""

    key: str
    name: str
    service: str
    role: str
    country: str
    eea: bool
    transfer: str = ""  # safeguard for a transfer outside the EEA (Art. 15(2), 46 GDPR)
    uk_transfer: str = ""
    # False for an example shipped with the software that this installation's operator has not confirmed
    # against its processing agreements: the README says so instead of presenting it as fact.
    confirmed: bool = True


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    meaning: str
    unit: str = ""
    kind: str = "text"  # text, datetime, int, bool, money
    total: bool = False  # README.html shows the sum over every row
    tally: bool = False  # README.html shows how many rows have each value


@dataclass(frozen=True)
class Category:
    name: str  # file stem in the access package, e.g. ``usage_logs`` -> usage_logs.json / .csv
    title: str
    source: str  # connector key in app.sources; "" when we hold nothing identifiable
    location: str
    fields: tuple[str, ...]  # exported fields, in order (an allowlist: nothing else leaves)
    purpose: str
    legal_basis: str
    recipients: tuple[Recipient, ...]
    retention: str
    erasure: str  # delete / anonymise / keep / none
    erasure_reason: str
    retention_days: int | None = None
    exported: bool = True
    policy_ref: str = ""
    retained: tuple[Retained, ...] = ()
    summary: str = ""
    origin: str = ""  # where the data comes from (Art. 15(1)(g) GDPR; CCPA categories of sources)
    retention_from: str = ""
    retention_field: str = ""  # row timestamp the export filters by retention_days
    ccpa_categories: tuple[str, ...] = ()
    ccpa_business_purpose: str = ""
    field_info: tuple[Field, ...] = ()
    withhold_reason: str = ""

    @property
    def dictionary(self) -> dict[str, Field]:
        return {f.name: f for f in self.field_info}


@dataclass(frozen=True)
class Inventory:
    controller: dict[str, Any]
    recipients: dict[str, Recipient]
    authorities: dict[str, tuple[tuple[str, str], ...]]
    categories: tuple[Category, ...]


def _category(raw: dict[str, Any], recipients: dict[str, Recipient]) -> Category:
    unknown = [k for k in raw.get("recipients", ()) if k not in recipients]
    if unknown:
        raise ValueError(f"inventory category {raw.get('name')!r} names unknown recipients {unknown}")
    fields = tuple(Field(**f) for f in raw.get("fields", ()))
    return Category(
        name=raw["name"],
        title=raw["title"],
        source=raw.get("source", ""),
        location=raw.get("location", ""),
        fields=tuple(f.name for f in fields),
        purpose=raw.get("purpose", ""),
        legal_basis=raw.get("legal_basis", ""),
        recipients=tuple(recipients[k] for k in raw.get("recipients", ())),
        retention=raw.get("retention", ""),
        erasure=raw.get("erasure", ""),
        erasure_reason=raw.get("erasure_reason", ""),
        retention_days=raw.get("retention_days"),
        exported=raw.get("exported", True),
        policy_ref=raw.get("policy_ref", ""),
        retained=tuple(Retained(**r) for r in raw.get("retained", ())),
        summary=raw.get("summary", ""),
        origin=raw.get("origin", ""),
        retention_from=raw.get("retention_from", ""),
        retention_field=raw.get("retention_field", ""),
        ccpa_categories=tuple(raw.get("ccpa_categories", ())),
        ccpa_business_purpose=raw.get("ccpa_business_purpose", ""),
        field_info=fields,
        withhold_reason=raw.get("withhold_reason", ""),
    )


def load(path: Path = INVENTORY_PATH) -> Inventory:
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    recipients = {r["key"]: Recipient(**r) for r in raw.get("recipient", ())}
    authorities = {
        law: tuple((a["name"], a["url"]) for a in entries) for law, entries in raw.get("authority", {}).items()
    }
    return Inventory(
        controller=raw.get("controller", {}),
        recipients=recipients,
        authorities=authorities,
        categories=tuple(_category(c, recipients) for c in raw.get("category", ())),
    )


def validate(inv: Inventory) -> list[str]:
    """Every gap that would leave a question of Art. 15 or the CCPA unanswered, one line each."""
    gaps: list[str] = []
    for r in inv.recipients.values():
        if not (r.name and r.service and r.country):
            gaps.append(f"recipient {r.key}: name, service and country are required")
        if not r.eea and not r.transfer:
            gaps.append(f"recipient {r.key}: outside the EEA without a transfer mechanism")
    for law in ("gdpr", "ccpa", "other"):
        if not inv.authorities.get(law):
            gaps.append(f"authorities: none for {law}")
    for c in inv.categories:
        for attr in ("title", "summary", "origin", "purpose", "legal_basis", "retention", "erasure_reason"):
            if not getattr(c, attr):
                gaps.append(f"category {c.name}: no {attr}")
        if not c.recipients:
            gaps.append(f"category {c.name}: no recipients or processors")
        if not c.retention_days:
            gaps.append(f"category {c.name}: no retention period in days (retention_days)")
        if not c.ccpa_categories:
            gaps.append(f"category {c.name}: no CCPA category")
        if c.exported and not c.source:
            gaps.append(f"category {c.name}: exported without a source connector")
        if c.exported and not c.field_info:
            gaps.append(f"category {c.name}: exported without fields")
        for f in c.field_info:
            if not (f.label and f.meaning):
                gaps.append(f"category {c.name}: field {f.name} needs a label and a meaning")
        if c.retention_field and c.retention_field not in c.fields:
            gaps.append(f"category {c.name}: retention_field {c.retention_field} is not one of its fields")
    return gaps


_INV = load()
CONTROLLER = _INV.controller
RECIPIENTS = _INV.recipients
AUTHORITIES = _INV.authorities
INVENTORY: tuple[Category, ...] = _INV.categories
GA_OPT_OUT_URL = CONTROLLER.get("ga_opt_out_url", "https://tools.google.com/dlpage/gaoptout")
BY_NAME = {c.name: c for c in INVENTORY}
EXPORTED = tuple(c for c in INVENTORY if c.exported)


def unconfirmed_recipients() -> list[str]:
    """Keys of recipients the operator has not confirmed (named on the start-up line)."""
    return [r.key for r in RECIPIENTS.values() if not r.confirmed]


def category(name: str) -> Category:
    return BY_NAME[name]


def retention_days(name: str, override: str) -> int:
    """Days category ``name`` is kept: the config value ``override`` when the operator set one, else the
    inventory's ``retention_days`` (one number, which the package README states and the sweeps apply)."""
    from flask import current_app

    configured = current_app.config.get(override)
    days = int(configured) if configured else BY_NAME[name].retention_days
    if not days:
        raise LookupError(f"category {name} has no retention_days and {override} is not set")
    return days


def recipients_of(categories: Iterable[Category]) -> list[Recipient]:
    """Every recipient of the given categories, once each, in inventory order."""
    seen: dict[str, Recipient] = {}
    for c in categories:
        for r in c.recipients:
            seen.setdefault(r.key, r)
    return [r for k, r in RECIPIENTS.items() if k in seen]
