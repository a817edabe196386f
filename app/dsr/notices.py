"""The sentences a subject reads about what was done, built from the recorded results alone.

A deletion report line exists for each item a source returned (deleted, anonymised, kept, not found,
not checked); a correction line for each proposed field with its decision, its result, and the reason
staff gave for a rejection. Nothing here adds a claim the results do not hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from app.dsr.law import Law
from app.sources.account import FIELD_LABELS

if TYPE_CHECKING:
    from app.dsr.models import CorrectionItem


def deletion_lines(items: list[dict[str, Any]], law: Law) -> list[str]:
    lines = []
    for item in items:
        title, action, count, reason = item.get("title"), item.get("action"), item.get("count"), item.get("reason")
        if action == "deleted":
            lines.append(f"{title}: deleted ({count}). {reason}")
        elif action == "anonymised":
            lines.append(f"{title}: anonymised ({count}). {reason}")
        elif action == "kept":
            lines.append(f"{title}: kept ({count}). {reason}")
        elif action == "not_found":
            lines.append(f"{title}: {reason}")
        elif action == "not_checked":
            lines.append(f"{title}: not checked. {reason}")
        elif action == "not_held":
            lines.append(f"{title}: {reason}")
    return lines


def deletion_context(items: list[dict[str, Any]], law: Law) -> dict[str, Any]:
    return {
        "report_lines": deletion_lines(items, law),
        "kept_any": any(i.get("action") == "kept" for i in items),
        "stripe_deleted": any(i.get("category") == "billing" and i.get("action") == "deleted" for i in items),
    }


def correction_lines(corrections: Iterable[CorrectionItem]) -> list[str]:
    lines = []
    for item in corrections:
        label = FIELD_LABELS.get(item.field, item.field)
        if item.decision == "approved":
            before = f" (it was {item.current_value})" if item.current_value else ""
            lines.append(f"{label}: {item.result or 'updated'} The new value is {item.proposed_value}{before}.")
        elif item.decision == "rejected":
            lines.append(f"{label}: not changed to {item.proposed_value}, because: {item.reject_reason or 'no reason'}")
        else:
            lines.append(f"{label}: not decided")
    return lines


def correction_context(corrections: Iterable[CorrectionItem]) -> dict[str, Any]:
    corrections = list(corrections)
    return {
        "correction_lines": correction_lines(corrections),
        "rejected": any(c.decision == "rejected" for c in corrections),
        "applied_any": any(c.decision == "approved" for c in corrections),
    }
