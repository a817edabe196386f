"""Realistic demo data for the platform (and a demo staff login), idempotent.

Accounts have deterministic emails, so a second run finds them and adds nothing; ``usage_rows``
tops the heavy account (the first one) up to that many usage rows, inserted in bulk.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import func, insert, select

from app.demo_people import FIRST, LAST, demo_email
from app.demo_requests import seed_demo_requests
from app.extensions import db
from app.models_base import table_of
from app.platform.models import Account, ApiKey, SupportMessage, UsageRecord

if TYPE_CHECKING:
    import psycopg

COMPANIES = [
    "Analytical Engines Ltd",
    "Cobol Works",
    "Enigma Labs",
    None,
    "Structured Inc",
    None,
    "TeX Typesetting",
    "Bell Research",
    "Apollo Guidance",
    None,
]
MODELS = ["gpt-tech-4o", "gpt-tech-4o-mini", "gpt-tech-o3", "embed-3-large", "whisper-tech"]
SUBJECTS = [
    "Invoice question",
    "API key not working",
    "Rate limit increase",
    "Billing address change",
    "Model latency",
    "Refund request",
    "Account access",
]

DEMO_STAFF_EMAIL = "admin@example.com"
DEMO_STAFF_PASSWORD = "demo-admin-password"  # noqa: S105 - printed demo login, development only
DEMO_OFFICER_EMAIL = "officer@example.com"
DEMO_AUDITOR_EMAIL = "auditor@example.com"


def seed_accounts(n: int, rng: random.Random, now: datetime) -> list[Account]:
    existing = {a.email: a for a in db.session.execute(select(Account)).scalars()}
    created = []
    for i in range(n):
        email = demo_email(i)
        if email in existing:
            continue
        acct = Account(
            email=email,
            name=f"{FIRST[i % len(FIRST)]} {LAST[(i * 7) % len(LAST)]}",
            company=COMPANIES[i % len(COMPANIES)],
            created_at=now - timedelta(days=rng.randint(30, 900)),
            analytics_opt_out=rng.random() < 0.2,
        )
        if i % 9 == 8:  # a few closed accounts, some past the 30-day window
            acct.status = "closed"
            acct.closed_at = now - timedelta(days=rng.choice([5, 45]))
        db.session.add(acct)
        created.append(acct)
    db.session.flush()
    for acct in created:
        for k in range(rng.randint(1, 3)):
            raw = "sk-ct-" + secrets.token_urlsafe(24)
            db.session.add(
                ApiKey(
                    account_id=acct.id,
                    name=["default", "ci", "staging"][k],
                    prefix=raw[:12],
                    key_hash=hashlib.sha256(raw.encode()).hexdigest(),
                    created_at=acct.created_at + timedelta(days=k),
                    last_used_at=now - timedelta(hours=rng.randint(1, 500)),
                    revoked_at=now - timedelta(days=3) if k == 2 else None,
                )
            )
        for m in range(rng.randint(0, 4)):
            db.session.add(
                SupportMessage(
                    email=acct.email,
                    account_id=acct.id,
                    direction="inbound" if m % 2 == 0 else "outbound",
                    subject=rng.choice(SUBJECTS),
                    body=f"Hello, this is message {m + 1} about my account.",
                    sent_at=now - timedelta(days=rng.randint(1, 400)),
                )
            )
    if created:
        # Correspondence from people without an account.
        for j in range(3):
            email = f"prospect{j}@example.org"
            if db.session.execute(select(SupportMessage.id).where(SupportMessage.email == email)).first():
                continue
            db.session.add(
                SupportMessage(
                    email=email,
                    direction="inbound",
                    subject="Pricing question",
                    body="Do you offer discounts for startups?",
                    sent_at=now - timedelta(days=rng.randint(1, 90)),
                )
            )
    db.session.commit()
    return created


def _key_prefixes(account_id: int) -> list[str]:
    return list(db.session.execute(select(ApiKey.prefix).where(ApiKey.account_id == account_id)).scalars())


def usage_rows(
    account_id: int, prefixes: list[str], count: int, rng: random.Random, now: datetime, start_index: int = 0
) -> Iterator[dict[str, Any]]:
    """Yield ``count`` usage rows spread over the last 360 days, oldest first, as a usage log fills
    up: ids and timestamps rise together (which is what a batched deletion meets in production). The
    12-month retention (sweep and export filter) leaves every one of them in place."""
    span = 360 * 86400
    slot = span / max(count, 1)
    start = now - timedelta(seconds=span)
    for i in range(count):
        yield {
            "account_id": account_id,
            "key_prefix": prefixes[i % len(prefixes)],
            "model": MODELS[rng.randrange(len(MODELS))],
            "request_id": f"req_{account_id}_{start_index + i:09d}",
            "prompt_tokens": rng.randint(5, 4000),
            "completion_tokens": rng.randint(1, 2000),
            "created_at": start + timedelta(seconds=slot * (i + rng.random())),
        }


def insert_usage(rows: Iterable[dict[str, Any]], batch: int = 20000) -> int:
    """Bulk insert: COPY on PostgreSQL, executemany elsewhere. Returns rows inserted."""
    engine = db.engines["platform"]
    table = table_of(UsageRecord)
    total = 0
    chunk: list[dict] = []

    def flush() -> None:
        nonlocal total
        if not chunk:
            return
        if engine.dialect.name == "postgresql":
            raw = engine.raw_connection()
            try:
                # The PostgreSQL driver is psycopg 3 (COPY below is its API); the pool types a generic DB-API cursor.
                with (
                    cast("psycopg.Cursor[Any]", raw.cursor()) as cur,
                    cur.copy(
                        "COPY platform_usage (account_id, key_prefix, model, request_id, prompt_tokens, "
                        "completion_tokens, created_at) FROM STDIN"
                    ) as copy,
                ):
                    for r in chunk:
                        copy.write_row(
                            (
                                r["account_id"],
                                r["key_prefix"],
                                r["model"],
                                r["request_id"],
                                r["prompt_tokens"],
                                r["completion_tokens"],
                                r["created_at"],
                            )
                        )
                raw.commit()
            finally:
                raw.close()
        else:
            with engine.begin() as conn:
                conn.execute(insert(table), chunk)
        total += len(chunk)
        chunk.clear()

    for row in rows:
        chunk.append(row)
        if len(chunk) >= batch:
            flush()
    flush()
    return total


def seed_usage(created: list[Account], heavy_rows: int | None, rng: random.Random, now: datetime) -> int:
    inserted = 0
    for acct in created:
        prefixes = _key_prefixes(acct.id)
        inserted += insert_usage(usage_rows(acct.id, prefixes, rng.randint(50, 400), rng, now))
    if heavy_rows:
        heavy = db.session.execute(select(Account).order_by(Account.id).limit(1)).scalar_one_or_none()
        if heavy is not None:
            have = db.session.execute(
                select(func.count()).select_from(UsageRecord).where(UsageRecord.account_id == heavy.id)
            ).scalar_one()
            if heavy_rows > have:
                prefixes = _key_prefixes(heavy.id) or ["sk-ct-demo00"]
                inserted += insert_usage(usage_rows(heavy.id, prefixes, heavy_rows - have, rng, now, have))
    return inserted


def seed_staff() -> list[tuple[str, str, bool]]:
    """Demo staff (admin, officer, auditor) sharing the printed demo password."""
    from app.security import hash_password
    from app.staff.models import Role, StaffUser

    made = []
    for email, role in (
        (DEMO_STAFF_EMAIL, Role.ADMIN),
        (DEMO_OFFICER_EMAIL, Role.OFFICER),
        (DEMO_AUDITOR_EMAIL, Role.AUDITOR),
    ):
        user = db.session.execute(select(StaffUser).where(StaffUser.email == email)).scalar_one_or_none()
        if user is None:
            db.session.add(
                StaffUser(
                    email=email,
                    role=role.value,
                    password_hash=hash_password(DEMO_STAFF_PASSWORD),
                    password_changed_at=datetime.now(UTC),
                )
            )
            made.append((email, role.value, True))
        else:
            made.append((email, role.value, False))
    db.session.commit()
    return made


def seed_demo(accounts: int = 40, heavy_usage_rows: int | None = None, seed: int = 20261127) -> dict:
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    now = datetime.now(UTC).replace(microsecond=0)
    staff = seed_staff()
    created = seed_accounts(accounts, rng, now)
    usage = seed_usage(created, heavy_usage_rows, rng, now)
    result = {"staff": staff, "accounts_created": len(created), "usage_rows_inserted": usage}
    try:
        result["stripe_customers_created"] = seed_stripe()
    except stripe_errors() as exc:  # the demo runs without billing data; say so in one line
        db.session.rollback()
        result["stripe_customers_created"] = 0
        result["warning"] = f"Stripe unreachable, demo billing data not created ({type(exc).__name__})"
    result["demo_requests_created"] = seed_demo_requests(now)
    from app.mailbox.demo import seed_demo_mail

    result["demo_mail_created"] = seed_demo_mail(now)
    return result


def stripe_errors() -> tuple[type[Exception], ...]:
    import stripe

    from app.sources.stripe_billing import BillingError

    return (stripe.StripeError, BillingError)


def demo_subjects(limit: int = 3) -> list[str]:
    """Demo accounts that hold data in every category (keys, usage, support), to try requests with."""
    from sqlalchemy import exists

    stmt = (
        select(Account.email)
        .where(
            exists().where(ApiKey.account_id == Account.id),
            exists().where(UsageRecord.account_id == Account.id),
            exists().where(SupportMessage.account_id == Account.id),
        )
        .order_by(Account.id)
        .limit(limit)
    )
    return list(db.session.execute(stmt).scalars())


# --- Stripe (only when STRIPE_API_KEY is set; localstripe in development) ---------------------------

DEMO_PLAN_ID = "demo-api-pro"


def create_stripe_customer(email: str, name: str, charge_cents: int = 1500) -> str:
    """A Stripe customer with a card, a subscription (so an invoice) and a one-off charge."""
    import stripe

    from app.sources.stripe_billing import setup

    setup()
    cust = stripe.Customer.create(email=email, name=name, metadata={"source": "seed-demo"})
    pm = stripe.PaymentMethod.create(
        type="card", card={"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    )
    stripe.PaymentMethod.attach(pm.id, customer=cust.id)
    stripe.Customer.modify(cust.id, invoice_settings={"default_payment_method": pm.id})
    try:
        stripe.Plan.retrieve(DEMO_PLAN_ID)
    except stripe.InvalidRequestError:
        # localstripe has no Price endpoint: a Plan with an inline product does the same job.
        stripe.Plan.create(id=DEMO_PLAN_ID, amount=2000, currency="usd", interval="month", product={"name": "API Pro"})
    stripe.Subscription.create(customer=cust.id, items=[{"plan": DEMO_PLAN_ID}])
    stripe.Charge.create(amount=charge_cents, currency="usd", customer=cust.id, description="API usage top-up")
    return cust.id


def seed_stripe() -> int:
    """Give every demo account without a Stripe customer one (idempotent)."""
    from flask import current_app

    if not current_app.config.get("STRIPE_API_KEY"):
        return 0
    made = 0
    missing = db.session.execute(
        select(Account).where(Account.stripe_customer_id.is_(None)).order_by(Account.id)
    ).scalars()
    for acct in list(missing):
        acct.stripe_customer_id = create_stripe_customer(acct.email, acct.name)
        db.session.commit()
        made += 1
    return made


def resync_dev_stripe() -> int:
    """For ``flask dev``: localstripe keeps nothing across restarts, so forget customer ids it no longer
    knows and give those accounts new demo customers. Returns how many were (re)created."""
    import stripe

    from app.sources.stripe_billing import setup

    setup()
    for acct in list(db.session.execute(select(Account).where(Account.stripe_customer_id.is_not(None))).scalars()):
        assert acct.stripe_customer_id is not None  # selected for having one
        try:
            stripe.Customer.retrieve(acct.stripe_customer_id)
        except stripe.InvalidRequestError:
            acct.stripe_customer_id = None
    db.session.commit()
    return seed_stripe()
