"""Billing held by Stripe, through the official SDK (auto-paginated).

Exported: the customer, card payment methods (brand, last four digits, expiry only), invoices,
charges and subscriptions. Erasure detaches payment methods and deletes the customer (which cancels
its subscriptions); invoices and charges are kept for tax law and listed as kept, their ids recorded
before the customer goes (localstripe, unlike Stripe, 404s on lists for a deleted customer).
Errors are classified: ``BillingTransient`` (connection, rate limit, 5xx: retry later) or
``BillingPermanent`` (a refused request: show it to staff).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import stripe
from flask import current_app

from app.sources.base import Progress, Source, Subject
from app.sources.inventory import category

TIMEOUT_SECONDS = 20
_client_for: tuple | None = None


class BillingError(Exception):
    transient = False


class BillingTransient(BillingError):
    transient = True


class BillingPermanent(BillingError):
    pass


class BillingNotConfigured(BillingError):
    pass


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


def classify(exc: Exception) -> BillingError:
    if isinstance(exc, BillingError):
        return exc
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)):
        return BillingTransient(f"Stripe unreachable or busy: {exc.user_message or exc}")
    if isinstance(exc, stripe.StripeError):
        status = getattr(exc, "http_status", None) or 0
        if status >= 500:
            return BillingTransient(f"Stripe error {status}: {exc.user_message or exc}")
        return BillingPermanent(f"Stripe refused the request ({status}): {exc.user_message or exc}")
    return BillingTransient(f"Stripe call failed: {exc}")


def _is_missing(exc: Exception) -> bool:
    return isinstance(exc, stripe.InvalidRequestError) and (getattr(exc, "http_status", 0) == 404)


def _get(obj, key, default=None):
    try:
        value = obj[key]
    except (KeyError, TypeError):
        return default
    return default if value is None else value


class StripeSource(Source):
    key = "stripe"
    category = category("billing")

    def configured(self) -> bool:
        return configured()

    # --- finding the customer -------------------------------------------------------------------
    def customer_id(self, subject: Subject) -> str | None:
        """The account's stored customer id, else a customer found by the subject's email."""
        setup()
        if subject.stripe_customer_id:
            return subject.stripe_customer_id
        try:
            for email in sorted(subject.emails):
                found = stripe.Customer.list(email=email, limit=1)
                for cust in found.data:
                    if (_get(cust, "email") or "").strip().lower() == email:
                        return cust.id
        except Exception as exc:  # noqa: BLE001 - classified and re-raised
            raise classify(exc) from exc
        return None

    def _customer(self, cid: str):
        try:
            cust = stripe.Customer.retrieve(cid)
        except Exception as exc:  # noqa: BLE001
            if _is_missing(exc):
                return None
            raise classify(exc) from exc
        if _get(cust, "deleted"):
            return None
        return cust

    def _list(self, resource, **params) -> list:
        try:
            return list(resource.list(limit=100, **params).auto_paging_iter())
        except Exception as exc:  # noqa: BLE001
            if _is_missing(exc):
                return []
            raise classify(exc) from exc

    # --- summary and export ---------------------------------------------------------------------
    def counts(self, subject: Subject) -> dict[str, Any]:
        cid = self.customer_id(subject)
        if not cid or self._customer(cid) is None:
            return {"customer": None, "payment_methods": 0, "invoices": 0, "charges": 0, "subscriptions": 0}
        return {
            "customer": cid,
            "payment_methods": len(self._list(stripe.PaymentMethod, customer=cid, type="card")),
            "invoices": len(self._list(stripe.Invoice, customer=cid)),
            "charges": len(self._list(stripe.Charge, customer=cid)),
            "subscriptions": len(self._list(stripe.Subscription, customer=cid, status="all")),
        }

    def count(self, subject: Subject) -> int:
        c = self.counts(subject)
        return (1 if c["customer"] else 0) + sum(v for k, v in c.items() if k != "customer")

    def records(self, subject: Subject, progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        cid = self.customer_id(subject)
        cust = self._customer(cid) if cid else None
        if cust is None:
            return
        yield self.export_row(
            {
                "record_type": "customer",
                "id": cust.id,
                "created": _get(cust, "created"),
                "name": _get(cust, "name"),
                "email": _get(cust, "email"),
                "description": _get(cust, "description"),
            }
        )
        for pm in self._list(stripe.PaymentMethod, customer=cid, type="card"):
            card = _get(pm, "card", {})
            yield self.export_row(
                {
                    "record_type": "payment_method",
                    "id": pm.id,
                    "created": _get(pm, "created"),
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
                    "created": _get(sub, "created"),
                    "status": _get(sub, "status"),
                    "plan": _get(plan, "id") if plan else None,
                    "amount": _get(plan, "amount") if plan else None,
                    "currency": _get(plan, "currency") if plan else None,
                }
            )
        for inv in self._list(stripe.Invoice, customer=cid):
            yield self.export_row(
                {
                    "record_type": "invoice",
                    "id": inv.id,
                    "created": _get(inv, "created"),
                    "status": _get(inv, "status"),
                    "amount": _get(inv, "total", _get(inv, "amount_due")),
                    "currency": _get(inv, "currency"),
                    "number": _get(inv, "number"),
                    "description": _get(inv, "description"),
                }
            )
        for ch in self._list(stripe.Charge, customer=cid):
            yield self.export_row(
                {
                    "record_type": "charge",
                    "id": ch.id,
                    "created": _get(ch, "created"),
                    "status": _get(ch, "status"),
                    "amount": _get(ch, "amount"),
                    "currency": _get(ch, "currency"),
                    "description": _get(ch, "description"),
                }
            )

    # --- erasure ----------------------------------------------------------------------------------
    def plan(self, subject: Subject) -> list[dict[str, Any]]:
        if not configured():
            return [self.plan_item("keep", 0, "Stripe is not configured here, so billing data cannot be checked.")]
        c = self.counts(subject)
        if not c["customer"]:
            return [self.plan_item("delete", 0, "No Stripe customer found for this person.")]
        kept = c["invoices"] + c["charges"]
        return [
            self.plan_item(
                "delete",
                1 + c["payment_methods"] + c["subscriptions"],
                f"Stripe customer {c['customer']}, {c['payment_methods']} payment method(s) and "
                f"{c['subscriptions']} subscription(s) (cancelled) are deleted.",
            ),
            self.plan_item(
                "keep",
                kept,
                f"{c['invoices']} invoice(s) and {c['charges']} charge(s) are kept: tax and accounting law "
                "requires us to keep them (GDPR Art. 17(3)(b)).",
            ),
        ]

    def kept_ids(self, subject: Subject) -> dict[str, list[str]]:
        """Invoice and charge ids to keep; call before ``erase`` (the customer's lists vanish after)."""
        cid = self.customer_id(subject)
        if not cid or self._customer(cid) is None:
            return {"invoices": [], "charges": []}
        return {
            "invoices": [i.id for i in self._list(stripe.Invoice, customer=cid)],
            "charges": [c.id for c in self._list(stripe.Charge, customer=cid)],
        }

    def erase(
        self, subject: Subject, progress: Progress | None = None, kept: dict | None = None
    ) -> list[dict[str, Any]]:
        cid = self.customer_id(subject)
        detached = deleted = 0
        if cid and self._customer(cid) is not None:
            for pm in self._list(stripe.PaymentMethod, customer=cid, type="card"):
                try:
                    stripe.PaymentMethod.detach(pm.id)
                    detached += 1
                except Exception as exc:  # noqa: BLE001
                    if not _is_missing(exc):
                        raise classify(exc) from exc
            try:
                stripe.Customer.delete(cid)
                deleted = 1
            except Exception as exc:  # noqa: BLE001
                if not _is_missing(exc):
                    raise classify(exc) from exc
        kept = kept or {"invoices": [], "charges": []}
        return [
            {
                "category": "billing",
                "action": "deleted",
                "count": deleted + detached,
                "reason": f"Stripe customer ({deleted}) and payment methods ({detached}) deleted.",
            },
            {
                "category": "billing",
                "action": "kept",
                "count": len(kept["invoices"]) + len(kept["charges"]),
                "reason": "Invoices and charges are kept because tax and accounting law requires it "
                "(GDPR Art. 17(3)(b)).",
                "ids": kept["invoices"] + kept["charges"],
            },
        ]

    def correct(self, subject: Subject, field: str, value: str) -> str | None:
        """Update the customer's name or email; None when there is nothing to update."""
        if field not in {"name", "full_name", "email"} or not configured():
            return None
        cid = self.customer_id(subject)
        if not cid or self._customer(cid) is None:
            return None
        key = "email" if field == "email" else "name"
        try:
            stripe.Customer.modify(cid, **{key: value.strip().lower() if key == "email" else value.strip()})
        except Exception as exc:  # noqa: BLE001
            raise classify(exc) from exc
        return f"Stripe customer {key} updated."
