"""Every connector in ``app.sources`` satisfies the ``Source`` protocol, and the items sources build keep
the exact shape stored as JSON in a request's plan and report.

The annotated assignments below are checked by mypy (``make lint`` type-checks this file too); the
tests check the same at run time: each registered connector is an instance of the runtime-checkable
protocol, and each of its methods accepts the protocol's parameters by the same names and kinds.
"""

from __future__ import annotations

import inspect
import typing

import pytest

from app.sources import BY_CATEGORY, BY_KEY, EXPORTERS, SOURCES, Connectors, Source
from app.sources.account import AccountSource
from app.sources.api_keys import ApiKeySource
from app.sources.base import StripeStep
from app.sources.requests import RequestHistorySource
from app.sources.stripe_billing import StripeSource, StripeTargets
from app.sources.support import SupportSource
from app.sources.usage import UsageSource

# Static check (mypy): each connector class is assignable to the protocol.
_checked: tuple[Source, ...] = (
    UsageSource(),
    ApiKeySource(),
    SupportSource(),
    StripeSource(),
    AccountSource(),
    RequestHistorySource(),
)

CONNECTORS = {type(s): s for s in (*SOURCES, *EXPORTERS.values())}
PROTOCOL_METHODS = sorted(name for name, value in vars(Source).items() if callable(value) and not name.startswith("_"))


def test_registries_hold_every_connector() -> None:
    assert set(CONNECTORS) == {type(s) for s in _checked}
    assert BY_KEY == {s.key: s for s in SOURCES}
    assert list(BY_KEY) == [s.key for s in SOURCES]  # the erasure order
    assert BY_CATEGORY == {s.category.name: s for s in SOURCES}
    hints = typing.get_type_hints(Connectors)
    assert list(hints) == list(BY_KEY)
    for key, cls in hints.items():
        assert type(BY_KEY[key]) is cls  # type: ignore[literal-required]


@pytest.mark.parametrize("source", list(CONNECTORS.values()), ids=lambda s: type(s).__name__)
def test_connector_satisfies_the_protocol(source: Source) -> None:
    assert isinstance(source, Source)
    assert isinstance(source.key, str) and source.key
    assert source.category.source == source.key


@pytest.mark.parametrize("source", list(CONNECTORS.values()), ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("method", PROTOCOL_METHODS)
def test_connector_method_accepts_the_protocol_call(source: Source, method: str) -> None:
    """Whatever a caller may pass through the protocol (positionally or by keyword) the connector accepts."""
    expected = inspect.signature(getattr(Source, method))
    actual = inspect.signature(getattr(source, method))
    params = list(expected.parameters.values())[1:]  # without self
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    keyword = {p.name: p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    actual.bind(*positional)  # required ones positionally, as callers do
    actual.bind(**keyword)  # every one by name
    for p in params:
        if p.default is not p.empty:
            assert actual.parameters[p.name].default == p.default, f"{method}({p.name}) default differs"


def test_plan_and_result_items_keep_their_stored_shape() -> None:
    usage = BY_KEY["usage"]
    assert usage.plan_item("delete", 3, "why") == {
        "category": "usage_logs",
        "source": "usage",
        "action": "delete",
        "count": 3,
        "reason": "why",
    }
    assert list(usage.plan_item("keep", 0, "why", unchecked=True)) == [
        "category",
        "source",
        "action",
        "count",
        "reason",
        "unchecked",
    ]
    assert usage.result("not_found", 0)["reason"].startswith("We found none")
    assert list(usage.result("deleted", 2)) == ["category", "source", "action", "count", "reason"]
    stripe = BY_KEY["stripe"]
    steps: list[StripeStep] = [{"step": "customer_deleted", "count": 1, "verified": True}]
    targets: StripeTargets = {
        "customers": ["cus_1"],
        "subscriptions": [],
        "payment_methods": [],
        "invoices": ["in_1"],
        "charges": [],
    }
    deleted, kept = stripe.report_items(targets, steps)
    assert list(deleted) == ["category", "source", "action", "count", "reason", "steps"]
    assert deleted["steps"] == steps
    assert list(kept) == ["category", "source", "action", "count", "reason", "ids", "retained"]
    assert kept["ids"] == ["in_1"] and kept["retained"] is True
