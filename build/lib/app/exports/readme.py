"""README.html for the access package (GDPR Art. 15: what, why, legal basis, recipients, retention,
source, rights, how to complain), rendered from the data inventory."""

from __future__ import annotations

from datetime import datetime

from flask import render_template

from app.sources.inventory import COMPLAINT_URL, GA_OPT_OUT_URL, INVENTORY, PRIVACY_CONTACT


def render_readme(
    *,
    reference: str,
    generated_at: datetime,
    counts: dict[str, int],
    notes: dict[str, str],
    jurisdiction: str = "gdpr",
) -> str:
    from app.dsr.law import law_for

    return render_template(
        "exports/README.html",
        law=law_for(jurisdiction),
        reference=reference,
        generated_at=generated_at,
        inventory=INVENTORY,
        counts=counts,
        notes=notes,
        ga_opt_out_url=GA_OPT_OUT_URL,
        complaint_url=COMPLAINT_URL,
        privacy_contact=PRIVACY_CONTACT,
    )
