"""The platform's data sources and the questions the rest of the portal asks them.

``SOURCES`` lists one connector per erasable inventory category, in erasure order (the account goes last:
it is what leads to everything else). ``subject_summary`` and ``erasure_plan`` are read-only and
quick (counts in SQL); Stripe trouble is reported in the result, never raised.

Every connector satisfies ``Source``. ``BY_KEY`` is typed per key (``Connectors``), so what only one
connector does (Stripe's customer lookups and resumable erasure, the account's corrections and opt-out)
is called on its own class: ``BY_KEY["stripe"].customer_ids(subject)``.
"""

from __future__ import annotations

from typing import Any, TypedDict

from app.sources.account import AccountSource, CorrectionRefused
from app.sources.api_keys import ApiKeySource
from app.sources.base import PlanItem, ResultItem, Source, Subject, find_subject, normalise_email
from app.sources.inventory import BY_NAME, EXPORTED, INVENTORY, Category
from app.sources.requests import RequestHistorySource
from app.sources.stripe_billing import BillingError, StripeSource
from app.sources.stripe_billing import configured as stripe_configured
from app.sources.support import SupportSource
from app.sources.usage import UsageSource


class Connectors(TypedDict):
    """``BY_KEY``: each connector by its key, as its own class."""

    usage: UsageSource
    api_keys: ApiKeySource
    support: SupportSource
    stripe: StripeSource
    account: AccountSource


BY_KEY: Connectors = {
    "usage": UsageSource(),
    "api_keys": ApiKeySource(),
    "support": SupportSource(),
    "stripe": StripeSource(),
    "account": AccountSource(),
}
# Erasure order: dependants first, the account last.
SOURCES: tuple[Source, ...] = (
    BY_KEY["usage"],
    BY_KEY["api_keys"],
    BY_KEY["support"],
    BY_KEY["stripe"],
    BY_KEY["account"],
)
BY_CATEGORY: dict[str, Source] = {s.category.name: s for s in SOURCES}
# What the access package reads: every source, and the person's own requests to us (export only: the
# records of requests are kept and minimised by their own rules, never erased by a deletion).
EXPORTERS: dict[str, Source] = {**BY_CATEGORY, "requests": RequestHistorySource()}

__all__ = [
    "BY_CATEGORY",
    "BY_KEY",
    "BY_NAME",
    "EXPORTED",
    "EXPORTERS",
    "INVENTORY",
    "SOURCES",
    "BillingError",
    "Category",
    "Connectors",
    "CorrectionRefused",
    "PlanItem",
    "ResultItem",
    "Source",
    "Subject",
    "erasure_plan",
    "find_subject",
    "normalise_email",
    "subject_summary",
]


def subject_summary(target: Subject | str) -> dict[str, Any]:
    """What the platform holds about a subject (for the request detail page)."""
    from app.extensions import db
    from app.platform.models import Account

    subject = find_subject(target) if isinstance(target, str) else target
    acct = db.session.get(Account, subject.account_id) if subject.account_id is not None else None
    summary: dict[str, Any] = {
        "account_found": acct is not None,
        "account_id": subject.account_id,
        "account_created_at": acct.created_at if acct else None,
        "account_status": acct.status if acct else None,
        "api_keys": BY_KEY["api_keys"].count(subject),
        "usage_rows": BY_KEY["usage"].count(subject),
        "support_messages": BY_KEY["support"].count(subject),
        "stripe_customer": subject.stripe_customer_id,
        "stripe_configured": stripe_configured(),
        "stripe_error": None,
    }
    if summary["stripe_configured"]:
        try:
            summary["stripe_customer"] = ", ".join(BY_KEY["stripe"].customer_ids(subject)) or None
            summary["stripe_shared"] = ", ".join(BY_KEY["stripe"].foreign_customers(subject)) or None
        except BillingError as exc:
            summary["stripe_error"] = str(exc)
    return summary


def account_fields(subject: Subject) -> dict[str, Any]:
    """The correctable fields of the subject's account as they are now (views read platform data only
    through the sources)."""
    from app.extensions import db
    from app.platform.models import Account
    from app.sources.account import CORRECTABLE

    acct = db.session.get(Account, subject.account_id) if subject.account_id is not None else None
    if acct is None:
        return {}
    return {field: getattr(acct, column) for field, column in CORRECTABLE.items()}


def erasure_plan(target: Subject | str) -> list[PlanItem]:
    """The dry run staff see before approving a deletion: per category, delete / anonymise / keep."""
    subject = find_subject(target) if isinstance(target, str) else target
    plan: list[PlanItem] = []
    for source in SOURCES:
        try:
            plan.extend(source.plan(subject))
        except BillingError as exc:
            # Unchecked, not a decision: the deletion job checks again and deletes what it finds.
            reason = f"Could not reach Stripe to check billing data: {exc}"
            plan.append(source.plan_item("keep", 0, reason, unchecked=True))
    for cat in INVENTORY:
        if not cat.source:
            plan.append(
                {"category": cat.name, "source": "none", "action": "keep", "count": 0, "reason": cat.erasure_reason}
            )
    return plan
