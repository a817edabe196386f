"""Erasure across every source, following the plan staff approved; resumable after a crash.

``state`` is a small dict the caller persists after each step (``checkpoint``): the account id and
Stripe customer found at the start, the counts before anything was deleted, the Stripe invoices and
charges to keep (recorded before the customer is deleted), and which categories are done. A re-run
with the same state skips what is done and reports the original counts, so a crash halfway through
neither fails the re-run nor changes the report. The retention sweep uses the same code for closed
accounts (without a request, so without persisted state).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.models_base import utcnow
from app.sources import BY_KEY, INVENTORY, SOURCES, Subject, find_subject
from app.sources.base import DELETE_BATCH
from app.sources.inventory import BY_NAME
from app.sources.stripe_billing import configured as stripe_configured

Checkpoint = Callable[[dict[str, Any]], None]


def plan_actions(plan: Any) -> dict[str, set[str]]:
    """category -> actions, from a stored plan (a list of items, or ``{"items": [...]}``)."""
    items = plan.get("items", []) if isinstance(plan, dict) else (plan or [])
    actions: dict[str, set[str]] = {}
    for item in items:
        if isinstance(item, dict) and item.get("category") and not item.get("unchecked"):
            actions.setdefault(str(item["category"]), set()).add(str(item.get("action", "")))
    return actions


def erase_everything(
    email: str,
    *,
    plan: Any = None,
    state: dict[str, Any] | None = None,
    checkpoint: Checkpoint | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    batch: int = DELETE_BATCH,
    account_id: int | None = None,
) -> dict[str, Any]:
    """Erase the subject's data; returns the completion report (``items`` per category)."""
    state = dict(state or {})
    save = checkpoint or (lambda _s: None)
    subject = find_subject(email, account_id=state.get("account_id", account_id))
    if "before" not in state:
        state["account_id"] = subject.account_id
        state["stripe_customer_id"] = subject.stripe_customer_id
        state["before"] = {s.category.name: s.count(subject) for s in SOURCES if s.key != "stripe"}
        state["done"] = []
        save(state)
    subject = Subject(
        email=subject.email,
        account_id=state.get("account_id"),
        account_email=subject.account_email,
        stripe_customer_id=state.get("stripe_customer_id") or subject.stripe_customer_id,
    )
    actions = plan_actions(plan)
    total = sum(state["before"].values()) or 1
    done_rows = sum(state["before"].get(c, 0) for c in state["done"])
    items: list[dict[str, Any]] = []

    for source in SOURCES:
        name = source.category.name
        wanted = actions.get(name)
        if source.key == "stripe" and not stripe_configured():
            items.append(_item("billing", "not checked", None, "Stripe is not configured on this installation."))
            continue
        if wanted is not None and not (wanted & {"delete", "anonymise"}):
            items.append(_item(name, "kept", 0, "Kept as shown in the approved plan."))
            continue
        if source.key == "stripe":
            items.extend(_stripe(subject, state, save))
            continue
        if name not in state["done"]:
            base = done_rows

            def tick(n: int, base: int = base, name: str = name) -> None:
                if progress:
                    progress(base + n, total, f"deleting {name}")

            if source.key == "usage":
                result = source.erase(subject, tick, batch=batch)
            else:
                result = source.erase(subject, tick)
            if result and result[0].get("action") != "deleted":
                state["outcome"] = {**state.get("outcome", {}), name: [result[0]["action"], result[0]["reason"]]}
            state["done"] = [*state["done"], name]
            done_rows += state["before"].get(name, 0)
            save(state)
        action, reason = state.get("outcome", {}).get(name, ["deleted", source.category.erasure_reason])
        items.append(_item(name, action, state["before"].get(name, 0), reason))

    for cat in INVENTORY:
        if not cat.source:
            items.append(_item(cat.name, "not held", None, cat.erasure_reason))
    return {"completed_at": utcnow().isoformat(), "items": items, "state": state}


def _stripe(subject: Subject, state: dict[str, Any], save: Checkpoint) -> list[dict[str, Any]]:
    source = BY_KEY["stripe"]
    if "stripe_kept" not in state:
        state["stripe_kept"] = source.kept_ids(subject)
        state["stripe_before"] = (
            source.count(subject) - len(state["stripe_kept"]["invoices"]) - len(state["stripe_kept"]["charges"])
        )
        save(state)
    if "billing" not in state["done"]:
        source.erase(subject, kept=state["stripe_kept"])
        state["done"] = [*state["done"], "billing"]
        save(state)
    kept = state["stripe_kept"]
    items = [
        _item(
            "billing",
            "deleted",
            state.get("stripe_before", 0),
            "Stripe customer record and payment methods deleted; subscriptions cancelled.",
        )
    ]
    n_kept = len(kept["invoices"]) + len(kept["charges"])
    if n_kept:
        items.append(
            _item(
                "billing",
                "kept",
                n_kept,
                f"{len(kept['invoices'])} invoice(s) and {len(kept['charges'])} charge(s) kept at Stripe: tax and "
                "accounting law requires us to keep them (GDPR Art. 17(3)(b)).",
                ids=kept["invoices"] + kept["charges"],
            )
        )
    return items


def _item(category: str, action: str, count: int | None, reason: str, **extra) -> dict[str, Any]:
    cat = BY_NAME.get(category)
    return {
        "category": category,
        "title": cat.title if cat else category,
        "action": action,
        "count": count,
        "reason": reason,
        **extra,
    }
