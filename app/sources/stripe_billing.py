"""Billing held by Stripe, through the official SDK (auto-paginated).

Exported: the customer (with its addresses), card payment methods (billing details, brand, last four digits
and expiry; no fingerprint or other secret), subscriptions, invoices with their lines, and charges, with
amounts in currency units and times in UTC. Erasure acts on the ids recorded before it starts (so a re-run
after a crash finishes the same work): it cancels each live subscription explicitly, detaches each payment
method and deletes each customer, and reads every step back from Stripe; a step Stripe does not confirm fails
the job rather than being reported as done. Invoices and charges are kept for tax law and listed as kept, with
what they contain, the obligation and the period from the inventory (``Category.retained``). Only Stripe's own
errors are caught, and classified: ``BillingTransient`` (connection, rate limit, 5xx: retry later) or
``BillingPermanent`` (a refused request: show it to staff); anything else is a bug and surfaces at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypedDict

import stripe
from flask import current_app

from app.sources.base import (
    DELETE_BATCH,
    BaseSource,
    PlanItem,
    Progress,
    ResultItem,
    StripeStep,
    Subject,
    platform_engine,
)
from app.sources.inventory import category

TIMEOUT_SECONDS = 20
# Subscription statuses that have ended: nothing is billed any more.
ENDED = frozenset({"canceled", "incomplete_expired"})
_client_for: tuple | None = None


class BillingError(Exception):
    transient = False


class BillingTransient(BillingError):
    transient = True


class BillingPermanent(BillingError):
    pass


class BillingNotConfigured(BillingError):
    pass


class StripeTargets(TypedDict):
    """The Stripe ids an erasure acts on (customers, live subscriptions, payment methods) and keeps
    (invoices, charges), recorded before it starts (``StripeSource.targets``; kept in the job's state)."""

    customers: list[str]
    subscriptions: list[str]
    payment_methods: list[str]
    invoices: list[str]
    charges: list[str]


# A Stripe object as the SDK returns it (a dict-like ``StripeObject``), or a plain dict inside one: read
# with ``_get``, which tolerates a missing key, None and either kind.
StripeObj = Any


def configured() -> bool:
    return bool(current_app.config.get("STRIPE_API_KEY"))


def setup(timeout: float = TIMEOUT_SECONDS) -> None:
    """Point the SDK at the configured Stripe (or localstripe)."""
    global _client_for
    if not configured():
        raise BillingNotConfigured("Stripe is not configured (STRIPE_API_KEY is unset).")
    stripe.api_key = current_app.config["STRIPE_API_KEY"]
    stripe.api_base = current_app.config.get("STRIPE_API_BASE") or "https://api.stripe.com"
    stripe.max_network_retries = 0
    if _client_for != (timeout,):
        stripe.default_http_client = stripe.new_default_http_client(timeout=timeout)
        _client_for = (timeout,)


def classify(exc: stripe.StripeError) -> BillingError:
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)):
        return BillingTransient(f"Stripe unreachable or busy: {exc.user_message or exc}")
    status = getattr(exc, "http_status", None) or 0
    if status >= 500 or isinstance(exc, stripe.APIError) and not status:
        return BillingTransient(f"Stripe error {status}: {exc.user_message or exc}")
    return BillingPermanent(f"Stripe refused the request ({status}): {exc.user_message or exc}")


def _is_missing(exc: stripe.StripeError) -> bool:
    return isinstance(exc, stripe.InvalidRequestError) and (getattr(exc, "http_status", 0) == 404)


def _cancelled(sub: StripeObj) -> bool:
    return sub is None or _get(sub, "status") in ENDED


def _detached(pm: StripeObj) -> bool:
    return pm is None or not _get(pm, "customer")


def _deleted(cust: StripeObj) -> bool:
    return cust is None or bool(_get(cust, "deleted"))


def _held_by_other_accounts(customer_ids: list[str], account_id: int | None) -> set[str]:
    """Which of these customers another platform account holds: read on a connection of its own, so
    no session transaction stays open across the Stripe calls that follow."""
    from sqlalchemy import select

    from app.platform.models import Account

    if not customer_ids:
        return set()
    stmt = select(Account.stripe_customer_id).where(Account.stripe_customer_id.in_(customer_ids))
    if account_id is not None:
        stmt = stmt.where(Account.id != account_id)
    with platform_engine().connect() as conn:
        return {cid for cid in conn.execute(stmt).scalars() if cid is not None}  # in_() matches no NULL


def retained_summary() -> str:
    """What the kept billing records contain, why and for how long, from the inventory."""
    return " ".join(r.sentence() for r in category("billing").retained)


# Currencies whose amounts Stripe gives in whole units (no minor unit): stripe.com/docs/currencies.
ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()  # noqa: SIM905 - a list to read
)
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def money(minor: int | None, currency: str | None) -> Decimal | None:
    """Stripe's amount in the currency's smallest unit as an amount in its units (2000 usd: 20.00)."""
    if minor is None:
        return None
    cur = (currency or "").lower()
    places = 0 if cur in ZERO_DECIMAL else 3 if cur in THREE_DECIMAL else 2
    return (Decimal(int(minor)) / (10**places)).quantize(Decimal(1).scaleb(-places))


def currency_code(currency: str | None) -> str | None:
    return currency.upper() if currency else None


def when(epoch: int | None) -> datetime | None:
    """A Stripe time (Unix seconds) as an aware UTC datetime."""
    return datetime.fromtimestamp(int(epoch), UTC) if epoch else None


def address_line(address: StripeObj) -> str | None:
    """A Stripe address as one line: street, postcode and city, state, country."""
    if not address:
        return None
    parts = [_get(address, k) for k in ("line1", "line2")]
    parts.append(" ".join(p for p in (_get(address, "postal_code"), _get(address, "city")) if p))
    parts += [_get(address, "state"), _get(address, "country")]
    line = ", ".join(p for p in parts if p)
    return line or None


def _get(obj: StripeObj, key: str, default: Any = None) -> Any:
    try:
        value = obj[key]
    except (KeyError, TypeError):
        return default
    return default if value is None else value


class StripeSource(BaseSource):
    key = "stripe"
    category = category("billing")

    def configured(self) -> bool:
        return configured()

    # --- finding the customer -------------------------------------------------------------------
    def customer_ids(self, subject: Subject) -> list[str]:
        """The account's stored customer, those staff verified, and every customer whose email is one of
        the subject's verified addresses, except a customer another platform account holds (an address
        can be a shared billing mailbox: that customer is someone else's). Deleted customers are left out."""
        found = list(subject.customer_ids)
        found += [cid for cid in self._by_email(subject) if cid not in found]
        others = _held_by_other_accounts(found, subject.account_id)
        return [cid for cid in found if cid not in others and self._customer(cid) is not None]

    def foreign_customers(self, subject: Subject) -> list[str]:
        """Customers with one of the subject's addresses that another platform account holds: shown to
        staff, never touched."""
        return sorted(_held_by_other_accounts(self._by_email(subject), subject.account_id))

    def _by_email(self, subject: Subject) -> list[str]:
        """Customers whose email is exactly one of the subject's verified addresses."""
        setup()
        found: list[str] = []
        try:
            for email in sorted(subject.emails):
                for cust in stripe.Customer.list(email=email, limit=100).auto_paging_iter():
                    if (_get(cust, "email") or "").strip().lower() == email and cust.id not in found:
                        found.append(cust.id)
        except stripe.StripeError as exc:
            raise classify(exc) from exc
        return found

    def customer_id(self, subject: Subject) -> str | None:
        ids = self.customer_ids(subject)
        return ids[0] if ids else None

    def _customer(self, cid: str) -> StripeObj | None:
        try:
            cust = stripe.Customer.retrieve(cid)
        except stripe.StripeError as exc:
            if _is_missing(exc):
                return None
            raise classify(exc) from exc
        if _get(cust, "deleted"):
            return None
        return cust

    def _list(self, resource: Any, **params: Any) -> list[StripeObj]:
        try:
            return list(resource.list(limit=100, **params).auto_paging_iter())
        except stripe.StripeError as exc:
            if _is_missing(exc):
                return []
            raise classify(exc) from exc

    # --- summary and export ---------------------------------------------------------------------
    def counts(self, subject: Subject) -> dict[str, Any]:
        ids = self.customer_ids(subject)
        out: dict[str, Any] = {
            "customer": ids[0] if ids else None,
            "customers": ids,
            "payment_methods": 0,
            "invoices": 0,
            "charges": 0,
            "subscriptions": 0,
            "live_subscriptions": 0,
        }
        for cid in ids:
            subs = self._list(stripe.Subscription, customer=cid, status="all")
            out["payment_methods"] += len(self._list(stripe.PaymentMethod, customer=cid, type="card"))
            out["invoices"] += len(self._list(stripe.Invoice, customer=cid))
            out["charges"] += len(self._list(stripe.Charge, customer=cid))
            out["subscriptions"] += len(subs)
            out["live_subscriptions"] += sum(1 for sub in subs if _get(sub, "status") not in ENDED)
        return out

    def count(self, subject: Subject) -> int:
        c = self.counts(subject)
        return len(c["customers"]) + c["payment_methods"] + c["invoices"] + c["charges"] + c["subscriptions"]

    def records(self, subject: Subject, progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        for cid in self.customer_ids(subject):
            cust = self._customer(cid)
            if cust is not None:
                yield from self._customer_records(cid, cust)

    def _customer_records(self, cid: str, cust: StripeObj) -> Iterator[dict[str, Any]]:
        """Every record Stripe holds about the person that is theirs to see, with amounts in currency units
        and times as UTC datetimes; payment methods carry no secret (no fingerprint, no full number)."""
        yield self.export_row(
            {
                "record_type": "customer",
                "id": cust.id,
                "created": when(_get(cust, "created")),
                "name": _get(cust, "name"),
                "email": _get(cust, "email"),
                "phone": _get(cust, "phone"),
                "address": address_line(_get(cust, "address")),
                "description": _get(cust, "description"),
            }
        )
        shipping = _get(cust, "shipping")
        if shipping:
            yield self.export_row(
                {
                    "record_type": "shipping_address",
                    "id": cust.id,
                    "name": _get(shipping, "name"),
                    "phone": _get(shipping, "phone"),
                    "address": address_line(_get(shipping, "address")),
                }
            )
        for pm in self._list(stripe.PaymentMethod, customer=cid, type="card"):
            card = _get(pm, "card", {})
            billing = _get(pm, "billing_details", {})
            yield self.export_row(
                {
                    "record_type": "payment_method",
                    "id": pm.id,
                    "created": when(_get(pm, "created")),
                    "name": _get(billing, "name"),
                    "email": _get(billing, "email"),
                    "phone": _get(billing, "phone"),
                    "address": address_line(_get(billing, "address")),
                    "brand": _get(card, "brand"),
                    "last4": _get(card, "last4"),
                    "exp_month": _get(card, "exp_month"),
                    "exp_year": _get(card, "exp_year"),
                }
            )
        for sub in self._list(stripe.Subscription, customer=cid, status="all"):
            items = _get(_get(sub, "items", {}), "data", []) or []
            plan = _get(items[0], "plan") if items else None
            yield self.export_row(
                {
                    "record_type": "subscription",
                    "id": sub.id,
                    "created": when(_get(sub, "created")),
                    "status": _get(sub, "status"),
                    "plan": (_get(plan, "nickname") or _get(plan, "id")) if plan else None,
                    "amount": money(_get(plan, "amount"), _get(plan, "currency")) if plan else None,
                    "currency": currency_code(_get(plan, "currency")) if plan else None,
                    "quantity": _get(items[0], "quantity") if items else None,
                    "period_start": when(_get(sub, "current_period_start")),
                    "period_end": when(_get(sub, "current_period_end")),
                }
            )
        for inv in self._list(stripe.Invoice, customer=cid):
            cur = _get(inv, "currency")
            yield self.export_row(
                {
                    "record_type": "invoice",
                    "id": inv.id,
                    "created": when(_get(inv, "created")),
                    "name": _get(inv, "customer_name"),
                    "email": _get(inv, "customer_email"),
                    "phone": _get(inv, "customer_phone"),
                    "address": address_line(_get(inv, "customer_address")),
                    "status": _get(inv, "status"),
                    "amount": money(_get(inv, "total", _get(inv, "amount_due")), cur),
                    "currency": currency_code(cur),
                    "number": _get(inv, "number"),
                    "description": _get(inv, "description"),
                    "period_start": when(_get(inv, "period_start")),
                    "period_end": when(_get(inv, "period_end")),
                }
            )
            for line in self._invoice_lines(inv):
                period = _get(line, "period", {})
                price = _get(line, "price") or _get(line, "plan")
                lcur = _get(line, "currency", cur)
                yield self.export_row(
                    {
                        "record_type": "invoice_line",
                        "id": _get(line, "id"),
                        "parent": inv.id,
                        "description": _get(line, "description"),
                        "amount": money(_get(line, "amount"), lcur),
                        "currency": currency_code(lcur),
                        "quantity": _get(line, "quantity"),
                        "plan": (_get(price, "nickname") or _get(price, "id")) if price else None,
                        "period_start": when(_get(period, "start")),
                        "period_end": when(_get(period, "end")),
                    }
                )
        for ch in self._list(stripe.Charge, customer=cid):
            billing = _get(ch, "billing_details", {})
            card = _get(_get(ch, "payment_method_details", {}), "card", {})
            yield self.export_row(
                {
                    "record_type": "charge",
                    "id": ch.id,
                    "created": when(_get(ch, "created")),
                    "name": _get(billing, "name"),
                    "email": _get(billing, "email") or _get(ch, "receipt_email"),
                    "phone": _get(billing, "phone"),
                    "address": address_line(_get(billing, "address")),
                    "status": _get(ch, "status"),
                    "amount": money(_get(ch, "amount"), _get(ch, "currency")),
                    "currency": currency_code(_get(ch, "currency")),
                    "description": _get(ch, "description"),
                    "brand": _get(card, "brand"),
                    "last4": _get(card, "last4"),
                    "exp_month": _get(card, "exp_month"),
                    "exp_year": _get(card, "exp_year"),
                    "parent": _get(ch, "invoice"),
                }
            )

    def _invoice_lines(self, inv: StripeObj) -> list[StripeObj]:
        """An invoice's lines: those it came with, then the rest of the list from Stripe when it has more."""
        lines = _get(inv, "lines", {})
        data = list(_get(lines, "data", []) or [])
        if _get(lines, "has_more", False):
            try:
                data = list(stripe.Invoice.list_lines(inv.id, limit=100).auto_paging_iter())
            except stripe.StripeError as exc:
                raise classify(exc) from exc
        return data

    # --- erasure ----------------------------------------------------------------------------------
    def plan(self, subject: Subject) -> list[PlanItem]:
        if not configured():
            return [self.plan_item("keep", 0, "Stripe is not configured here, so billing data cannot be checked.")]
        c = self.counts(subject)
        if not c["customers"]:
            return [self.plan_item("delete", 0, "No Stripe customer found for this person.")]
        kept = c["invoices"] + c["charges"]
        return [
            self.plan_item(
                "delete",
                len(c["customers"]) + c["payment_methods"] + c["live_subscriptions"],
                f"Stripe customer(s) {', '.join(c['customers'])}: {c['live_subscriptions']} live subscription(s) "
                f"cancelled, {c['payment_methods']} payment method(s) detached, then the customer deleted.",
            ),
            self.plan_item(
                "keep",
                kept,
                f"{c['invoices']} invoice(s) and {c['charges']} charge(s) are kept: {retained_summary()}",
            ),
        ]

    def targets(self, subject: Subject) -> StripeTargets:
        """Everything erasure will act on and keep, by id; recorded before it starts (the customer's
        lists vanish once it is deleted)."""
        out: StripeTargets = {
            "customers": [],
            "subscriptions": [],
            "payment_methods": [],
            "invoices": [],
            "charges": [],
        }
        for cid in self.customer_ids(subject):
            out["customers"].append(cid)
            out["subscriptions"] += [
                sub.id
                for sub in self._list(stripe.Subscription, customer=cid, status="all")
                if _get(sub, "status") not in ENDED
            ]
            out["payment_methods"] += [pm.id for pm in self._list(stripe.PaymentMethod, customer=cid, type="card")]
            out["invoices"] += [i.id for i in self._list(stripe.Invoice, customer=cid)]
            out["charges"] += [c.id for c in self._list(stripe.Charge, customer=cid)]
        return out

    def kept_ids(self, subject: Subject) -> dict[str, list[str]]:
        t = self.targets(subject)
        return {"invoices": t["invoices"], "charges": t["charges"]}

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except stripe.StripeError as exc:
            if _is_missing(exc):
                return None
            raise classify(exc) from exc

    def erase_targets(self, targets: StripeTargets) -> list[StripeStep]:
        """Cancel, detach, delete, each by id and idempotently, then read every step back. Returns the
        steps with what Stripe confirmed; raises ``BillingPermanent`` when Stripe does not confirm one."""
        setup()  # a resumed run comes here with the recorded ids, without looking the customer up again
        for sid in targets["subscriptions"]:
            sub = self._call(stripe.Subscription.retrieve, sid)
            if sub is not None and _get(sub, "status") not in ENDED:
                self._call(stripe.Subscription.cancel, sid)
        for pid in targets["payment_methods"]:
            pm = self._call(stripe.PaymentMethod.retrieve, pid)
            if pm is not None and _get(pm, "customer"):
                self._call(stripe.PaymentMethod.detach, pid)
        for cid in targets["customers"]:
            if self._customer(cid) is not None:
                self._call(stripe.Customer.delete, cid)
        steps = [
            self._verify("subscriptions_cancelled", targets["subscriptions"], stripe.Subscription, _cancelled),
            self._verify("payment_methods_detached", targets["payment_methods"], stripe.PaymentMethod, _detached),
            self._verify("customer_deleted", targets["customers"], stripe.Customer, _deleted),
        ]
        unconfirmed = [s["step"] for s in steps if not s["verified"]]
        if unconfirmed:
            raise BillingPermanent(f"Stripe did not confirm: {', '.join(unconfirmed)}; nothing is reported as done.")
        return steps

    def _verify(self, step: str, ids: list[str], resource: Any, done: Callable[[StripeObj], bool]) -> StripeStep:
        confirmed = 0
        for oid in ids:
            obj = self._call(resource.retrieve, oid)
            confirmed += bool(done(obj))
        return {"step": step, "count": len(ids), "verified": confirmed == len(ids)}

    def erase(
        self, subject: Subject, progress: Progress | None = None, *, batch: int = DELETE_BATCH
    ) -> list[ResultItem]:
        targets = self.targets(subject)
        if not targets["customers"]:
            return [self.result("not_found", 0, "We found no billing customer at Stripe for this person.")]
        steps = self.erase_targets(targets)
        return self.report_items(targets, steps)

    def report_items(self, targets: StripeTargets, steps: list[StripeStep]) -> list[ResultItem]:
        if not targets["customers"]:
            return [self.result("not_found", 0, "We found no billing customer at Stripe for this person.")]
        by = {s["step"]: s["count"] for s in steps}
        items = [
            self.result(
                "deleted",
                sum(by.values()),
                f"Subscriptions cancelled ({by.get('subscriptions_cancelled', 0)}), payment methods removed "
                f"({by.get('payment_methods_detached', 0)}) and the customer record deleted "
                f"({by.get('customer_deleted', 0)}) at Stripe, each confirmed by Stripe.",
                steps=steps,
            )
        ]
        kept = targets["invoices"] + targets["charges"]
        if kept:
            items.append(
                self.result(
                    "kept",
                    len(kept),
                    f"{len(targets['invoices'])} invoice(s) and {len(targets['charges'])} charge(s) kept at "
                    f"Stripe. {retained_summary()}",
                    ids=kept,
                    retained=True,
                )
            )
        return items

    def correct(self, subject: Subject, field: str, value: str | None) -> str | None:
        """Update the customer's name or email; None when there is nothing to update (no value: the
        account refuses an empty name or email before this is asked)."""
        if field not in {"name", "full_name", "email"} or value is None or not configured():
            return None
        cid = self.customer_id(subject)
        if not cid or self._customer(cid) is None:
            return None
        key = "email" if field == "email" else "name"
        try:
            if key == "email":
                stripe.Customer.modify(cid, email=value.strip().lower())
            else:
                stripe.Customer.modify(cid, name=value.strip())
        except stripe.StripeError as exc:
            raise classify(exc) from exc
        return f"Stripe customer {key} updated."
