"""Who a request is about: its verified identifiers, matched against the platform's records.

A request's identifiers are its confirmed email (once the subject clicked our link) plus what staff
added and verified (another email, confirmed by a link sent to it or by a recorded reason; an account id
or a Stripe customer id, with a recorded reason). Nothing else is acted on: an address the platform only
knows from its history (one a correction replaced, one that wrote to support about another account) is
reported to staff as a warning with the account and the correction's reference, never used silently.

The deletion plan, the erasure job, the access package and the correction job all call
``resolve_subject`` with the same request, so what staff saw is what the job does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from app.extensions import db
from app.platform.models import Account, SupportMessage
from app.sources.base import Subject, normalise_email

if TYPE_CHECKING:
    from app.dsr.models import DsrRequest


@dataclass
class Identifiers:
    emails: list[str] = field(default_factory=list)
    account_ids: list[int] = field(default_factory=list)
    stripe_customer_ids: list[str] = field(default_factory=list)


@dataclass
class Resolution:
    subject: Subject
    identifiers: Identifiers
    # Which identifier matched which record: {"identifier": ..., "record": ..., "detail": ...}
    matches: list[dict[str, Any]] = field(default_factory=list)
    # History hits staff must look at: never used, only shown.
    warnings: list[dict[str, Any]] = field(default_factory=list)
    # More than one platform account matched: staff must remove the wrong identifier first.
    conflict: list[int] = field(default_factory=list)


def verified_identifiers(dsr: DsrRequest) -> Identifiers:
    ids = Identifiers()
    if dsr.email and dsr.verified_at is not None:
        ids.emails.append(normalise_email(dsr.email))
    for ident in getattr(dsr, "identifiers", []) or []:
        if ident.status != "verified":
            continue
        if ident.kind == "email":
            email = normalise_email(ident.value)
            if email not in ids.emails:
                ids.emails.append(email)
        elif ident.kind == "account_id" and str(ident.value).isdecimal():
            ids.account_ids.append(int(ident.value))
        elif ident.kind == "stripe_customer_id":
            ids.stripe_customer_ids.append(ident.value.strip())
    return ids


def _account_by_email(email: str) -> Account | None:
    return db.session.execute(
        select(Account).where(func.lower(Account.email) == email).order_by(Account.id).limit(1)
    ).scalar_one_or_none()


def _history(email: str, accounts: set[int]) -> list[dict[str, Any]]:
    """Where ``email`` appears in the platform's history without being a current account's address."""
    from app.dsr.models import CorrectionItem, DsrRequest

    found: list[dict[str, Any]] = []
    replaced = db.session.execute(
        select(CorrectionItem.proposed_value, CorrectionItem.applied_at, DsrRequest.reference)
        .join(DsrRequest, DsrRequest.id == CorrectionItem.request_id)
        .where(
            CorrectionItem.field == "email",
            func.lower(CorrectionItem.current_value) == email,
            CorrectionItem.applied_at.is_not(None),
        )
        .order_by(CorrectionItem.applied_at)
    ).all()
    for new_value, applied_at, reference in replaced:
        acct = _account_by_email(normalise_email(new_value or ""))
        found.append(
            {
                "kind": "replaced_by_correction",
                "email": email,
                "account_id": acct.id if acct else None,
                "reference": reference,
                "applied_at": applied_at.isoformat() if applied_at else None,
                "text": f"{email} was replaced on account {acct.id if acct else '(since gone)'} by correction "
                f"{reference}. It is not used for this request; add the account as an identifier, with a "
                "reason, only if you have verified that it is the subject's.",
            }
        )
    linked = db.session.execute(
        select(SupportMessage.account_id, func.count())
        .where(func.lower(SupportMessage.email) == email, SupportMessage.account_id.is_not(None))
        .group_by(SupportMessage.account_id)
    ).all()
    for account_id, n in linked:
        if account_id in accounts:
            continue
        found.append(
            {
                "kind": "support_history",
                "email": email,
                "account_id": account_id,
                "count": int(n),
                "text": f"{n} support message(s) from {email} belong to account {account_id}, whose address is "
                "now different. They are left out unless that account is verified as the subject's.",
            }
        )
    return found


def released_records(dsr: DsrRequest) -> dict[str, set[int]]:
    """Withheld records an officer released for this request, by category."""
    from app.dsr.models import ReleasedRecord

    found: dict[str, set[int]] = {}
    if dsr.id is None:
        return found
    rows = db.session.execute(
        select(ReleasedRecord.category, ReleasedRecord.record_id).where(ReleasedRecord.request_id == dsr.id)
    )
    for cat, record_id in rows:
        found.setdefault(cat, set()).add(record_id)
    return found


def resolve_subject(dsr: DsrRequest) -> Resolution:
    """The subject of ``dsr`` as the platform knows them, from verified identifiers only."""
    ids = verified_identifiers(dsr)
    matches: list[dict[str, Any]] = []
    accounts: dict[int, Account] = {}
    for email in ids.emails:
        acct = _account_by_email(email)
        if acct is not None:
            accounts.setdefault(acct.id, acct)
            matches.append({"identifier": f"email {email}", "record": f"account {acct.id}", "detail": "address"})
    for account_id in ids.account_ids:
        acct = db.session.get(Account, account_id) if 0 < account_id < 2**31 else None
        if acct is not None:
            accounts.setdefault(acct.id, acct)
            matches.append({"identifier": f"account id {account_id}", "record": f"account {acct.id}", "detail": ""})
        else:
            matches.append({"identifier": f"account id {account_id}", "record": None, "detail": "no such account"})
    warnings: list[dict[str, Any]] = []
    for email in ids.emails:
        if _account_by_email(email) is None:
            warnings.extend(_history(email, set(accounts)))
    primary = ids.emails[0] if ids.emails else ""
    conflict = sorted(accounts) if len(accounts) > 1 else []
    acct = accounts[min(accounts)] if accounts else None
    subject = Subject(
        email=primary,
        account_id=acct.id if acct else None,
        account_email=acct.email if acct else None,
        stripe_customer_id=acct.stripe_customer_id if acct else None,
        extra_emails=set(ids.emails[1:]),
        stripe_customer_ids=set(ids.stripe_customer_ids),
        released=released_records(dsr),
    )
    if acct is not None and acct.stripe_customer_id:
        matches.append(
            {"identifier": f"account {acct.id}", "record": f"Stripe customer {acct.stripe_customer_id}", "detail": ""}
        )
    for cid in ids.stripe_customer_ids:
        matches.append({"identifier": f"Stripe customer id {cid}", "record": f"Stripe customer {cid}", "detail": ""})
    return Resolution(subject=subject, identifiers=ids, matches=matches, warnings=warnings, conflict=conflict)
