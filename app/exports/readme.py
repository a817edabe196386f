"""README.html of the access package: a self-contained page (styles inline, nothing fetched, it opens
offline from the zip) in plain language, rendered from the data inventory and what the export found.

Order: a summary that answers "what do you hold about me, why, who else gets it, and how long", then the
person's records per category (the first rows in full, with human labels, ISO 8601 times in UTC and money
in currency units; every row is in the CSV and JSON beside it), the data dictionary, what was withheld and
why, and the sections of the request's own law: GDPR Article 15 or the CCPA, never both. Bounded whatever
the row count: a category shows its digest (``categories.Digest``), never every row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flask import current_app, render_template

from app.exports.categories import SAMPLE_ROWS, Digest
from app.sources.inventory import GA_OPT_OUT_URL, INVENTORY, Category, recipients_of


def iso(value: datetime) -> str:
    """ISO 8601 with its zone, in UTC: 2026-03-01T09:30:00+00:00."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def show(value: Any, kind: str, currency: str | None = None) -> str:
    """One value as a person reads it."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bool) or kind == "bool":
        return "Yes" if value else "No"
    if kind == "money" and isinstance(value, (Decimal, int, float, str)):
        amount = Decimal(str(value))
        return f"{amount:,} {currency}" if currency else f"{amount:,}"
    if isinstance(value, int) and kind == "int" and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


def table(cat: Category, digest: Digest) -> dict[str, Any]:
    """The category's first rows with labels; columns empty in every shown row are left out."""
    fields = cat.field_info
    cur = cat.fields.index("currency") if "currency" in cat.fields else None
    rows = [
        [show(v, f.kind, row[cur] if cur is not None else None) for v, f in zip(row, fields, strict=True)]
        for row in digest.sample
    ]
    keep = [i for i in range(len(fields)) if any(r[i] for r in rows)]
    return {
        "labels": [fields[i].label for i in keep],
        "rows": [[r[i] for i in keep] for r in rows],
        "hidden": [fields[i].label for i in range(len(fields)) if i not in keep],
    }


def facts(cat: Category, digest: Digest) -> list[tuple[str, str]]:
    """A few totals over every row (bounded work: computed while streaming)."""
    out: list[tuple[str, str]] = []
    span = digest.span(cat)
    if span and digest.rows > 1:
        out.append(("From", iso(span[0])))
        out.append(("To", iso(span[1])))
    for f in cat.field_info:
        if f.name in digest.totals:
            out.append((f"{f.label}, total", f"{digest.totals[f.name]:,} {f.unit}".strip()))
        if f.name in digest.tallies:
            top = digest.tallies[f.name].most_common(8)
            out.append((f"Rows per {f.label.lower()}", ", ".join(f"{k}: {n:,}" for k, n in top)))
    return out


def render_readme(
    *,
    reference: str,
    generated_at: datetime,
    digests: dict[str, Digest],
    notes: dict[str, str],
    withheld: list[dict[str, Any]] | None = None,
    jurisdiction: str = "gdpr",
) -> str:
    from app.dsr.law import law_for

    law = law_for(jurisdiction)
    held = [c for c in INVENTORY if not c.exported or digests.get(c.name, Digest()).rows or c.name in notes]
    categories = []
    for cat in INVENTORY:
        digest = digests.get(cat.name, Digest())
        categories.append(
            {
                "cat": cat,
                "rows": digest.rows,
                "table": table(cat, digest) if cat.exported else None,
                "facts": facts(cat, digest) if cat.exported else [],
                "more": max(digest.rows - SAMPLE_ROWS, 0),
            }
        )
    recipients = recipients_of(held)
    withheld = withheld or []
    return render_template(
        "exports/README.html",
        law=law,
        reference=reference,
        generated_at=iso(generated_at),
        categories=categories,
        held=held,
        recipients=recipients,
        transfers=[r for r in recipients if not r.eea],
        notes=notes,
        withheld=[{**w, "when": iso(w["sent_at"]) if w.get("sent_at") else ""} for w in withheld],
        withheld_titles={c.name: c.title for c in INVENTORY},
        sample_rows=SAMPLE_ROWS,
        ga_opt_out_url=GA_OPT_OUT_URL,
        privacy_contact=current_app.config["PRIVACY_CONTACT"],
    )
