"""Erasure across every source, following the plan staff approved; resumable after a crash.

``state`` is a small dict the caller persists after each step (``checkpoint``): the account id and the
Stripe ids found at the start (customers, live subscriptions, payment methods to act on; invoices and
charges to keep), the counts before anything was deleted, each finished category's result, and which
categories are done. A re-run with the same state skips what is done and reports the original results,
so a crash halfway through neither fails the re-run nor changes the report. The retention sweep uses
the same code for closed accounts (without a request, so without persisted state).

The report's items are what each source found and did (``Source.result``): deleted, anonymised, kept
(with the reason), not found, not checked. Whatever a subject reads about the deletion is rendered from
these items alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NotRequired, TypedDict

from app.extensions import db
from app.models_base import utcnow
from app.sources import BY_KEY, INVENTORY, SOURCES, Subject, find_subject
from app.sources.base import DELETE_BATCH, ResultItem, Source, StripeStep
from app.sources.inventory import BY_NAME
from app.sources.stripe_billing import configured as stripe_configured

Checkpoint = Callable[[dict[str, Any]], None]
# Actions after which something about the person is gone or still held (not "we found nothing").
ACTED = frozenset({"deleted", "anonymised", "kept"})


class ReportItem(TypedDict):
    """One item of the completion report (``DsrRequest.report["items"]``), per category: what was found
    and done (``action``: deleted, anonymised, kept, not_found, not_checked, not_held). Billing's items
    carry Stripe's confirmed ``steps``, or the kept records' ``ids`` with ``retained``."""

    category: str
    title: str
    action: str
    count: int | None
    reason: str
    steps: NotRequired[list[StripeStep]]
    ids: NotRequired[list[str]]
    retained: NotRequired[bool]


def plan_actions(plan: Any) -> dict[str, set[str]]:
    """category -> actions, from a stored plan (a list of items, or ``{"items": [...]}``)."""
    items = plan.get("items", []) if isinstance(plan, dict) else (plan or [])
    actions: dict[str, set[str]] = {}
    for item in items:
        if isinstance(item, dict) and item.get("category") and not item.get("unchecked"):
            actions.setdefault(str(item["category"]), set()).add(str(item.get("action", "")))
    return actions


def plan_counts(plan: Any) -> dict[str, int]:
    """category -> rows the approved plan said it would delete or anonymise (table sources)."""
    items = plan.get("items", []) if isinstance(plan, dict) else (plan or [])
    counts: dict[str, int] = {}
    for item in items:
        if isinstance(item, dict) and item.get("action") in ("delete", "anonymise") and item.get("source") != "stripe":
            counts[str(item["category"])] = counts.get(str(item["category"]), 0) + int(item.get("count") or 0)
    return counts


def drift(plan: Any, before: dict[str, int]) -> dict[str, list[int]]:
    """Categories where the job found more or fewer rows than the plan staff approved."""
    planned = plan_counts(plan)
    return {
        name: [planned[name], before.get(name, 0)]
        for name in sorted(planned)
        if name in before and planned[name] != before.get(name, 0)
    }


def outcome_of(items: list[ReportItem]) -> str:
    """``no_data`` when nothing was found anywhere, else ``completed``."""
    return "completed" if any(i.get("action") in ACTED for i in items) else "no_data"


def erase_everything(
    subject: Subject | str,
    *,
    plan: Any = None,
    state: dict[str, Any] | None = None,
    checkpoint: Checkpoint | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    batch: int = DELETE_BATCH,
    account_id: int | None = None,
) -> dict[str, Any]:
    """Erase the subject's data; returns the completion report (``items`` per category, ``outcome``).

    It commits the caller's session first (what it read to find the subject must not stay open across
    the platform work), and ``checkpoint`` commits after each step: callers stage nothing they might
    want rolled back.
    """
    state = dict(state or {})
    save = checkpoint or (lambda _s: None)
    if isinstance(subject, str):
        subject = find_subject(subject, account_id=state.get("account_id", account_id))
    # What the session read to find the request and the subject ends here: the counts and deletions
    # below run on their own connections, and a read transaction left open idled across them (2.4 s
    # for a 1M-row subject on PostgreSQL), holding its snapshot (on SQLite, its read lock) meanwhile.
    db.session.commit()
    if "before" not in state:
        state["account_id"] = subject.account_id
        state["before"] = {s.category.name: s.count(subject) for s in SOURCES if s.key != "stripe"}
        state["done"] = []
        state["results"] = {}
        save(state)
    subject = Subject(
        email=subject.email,
        account_id=state.get("account_id"),
        account_email=subject.account_email,
        stripe_customer_id=subject.stripe_customer_id,
        extra_emails=set(subject.extra_emails),
        stripe_customer_ids=set(subject.stripe_customer_ids),
    )
    actions = plan_actions(plan)
    total = sum(state["before"].values()) or 1
    done_rows = sum(state["before"].get(c, 0) for c in state["done"])
    items: list[ReportItem] = []

    for source in SOURCES:
        name = source.category.name
        wanted = actions.get(name)
        if source.key == "stripe" and not stripe_configured():
            items.append(_item("billing", "not_checked", None, "Stripe is not configured on this installation."))
            continue
        if wanted is not None and not (wanted & {"delete", "anonymise"}):
            found = state["before"].get(name)
            if found == 0:
                items.append(_item(name, "not_found", 0, source.result("not_found", 0)["reason"]))
            else:
                items.append(_item(name, "kept", found, "Kept as shown in the approved plan."))
            continue
        if source.key == "stripe":
            items.extend(_stripe(subject, state, save))
            continue
        if name not in state["done"]:
            base = done_rows

            def tick(n: int, base: int = base, name: str = name) -> None:
                if progress:
                    progress(base + n, total, f"deleting {name}")

            # The job's batch size is for the usage logs (possibly millions of rows); the other
            # sources delete theirs in DELETE_BATCH rows per transaction.
            if source.key == "usage":
                result = source.erase(subject, tick, batch=batch)
            else:
                result = source.erase(subject, tick)
            state["results"] = {**state.get("results", {}), name: _settle(source, result, state["before"].get(name, 0))}
            state["done"] = [*state["done"], name]
            done_rows += state["before"].get(name, 0)
            save(state)
        for found in state["results"].get(name, []):
            items.append(_item(name, found["action"], found.get("count"), found["reason"]))

    for cat in INVENTORY:
        if not cat.source:
            items.append(_item(cat.name, "not_held", None, cat.erasure_reason))
    return {"completed_at": utcnow().isoformat(), "items": items, "state": state, "outcome": outcome_of(items)}


def _settle(source: Source, result: list[ResultItem], before: int) -> list[ResultItem]:
    """A re-run after a crash deletes only what was left: report what there was at the start."""
    settled = []
    for item in result:
        if item["action"] in ("deleted", "not_found") and before > (item.get("count") or 0):
            item = {**item, "action": "deleted", "count": before, "reason": source.category.erasure_reason}
        settled.append(item)
    return settled


def _stripe(subject: Subject, state: dict[str, Any], save: Checkpoint) -> list[ReportItem]:
    source = BY_KEY["stripe"]
    if "stripe_targets" not in state:
        state["stripe_targets"] = source.targets(subject)
        save(state)
    targets = state["stripe_targets"]
    if "billing" not in state["done"]:
        state["stripe_steps"] = source.erase_targets(targets)
        state["done"] = [*state["done"], "billing"]
        save(state)
    items = []
    for item in source.report_items(targets, state.get("stripe_steps", [])):
        items.append(
            _item(
                "billing",
                item["action"],
                item.get("count"),
                item["reason"],
                steps=item.get("steps"),
                ids=item.get("ids"),
                retained=item.get("retained"),
            )
        )
    return items


def _item(
    category: str,
    action: str,
    count: int | None,
    reason: str,
    *,
    steps: list[StripeStep] | None = None,
    ids: list[str] | None = None,
    retained: bool | None = None,
) -> ReportItem:
    """One report item; the optional keys are present only when given (in this order)."""
    cat = BY_NAME.get(category)
    item: ReportItem = {
        "category": category,
        "title": cat.title if cat else category,
        "action": action,
        "count": count,
        "reason": reason,
    }
    if steps is not None:
        item["steps"] = steps
    if ids is not None:
        item["ids"] = ids
    if retained is not None:
        item["retained"] = retained
    return item
