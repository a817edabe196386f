"""Approving a request for fulfilment: what staff's "approve" does, whichever view calls it.

A deletion is approved only with its reference typed back, for exactly one account (identifiers that
match two accounts are refused until staff remove the wrong one), and with the dry-run plan staff saw
stored on the request (``services.approve`` records it and, with ``DELETION_REQUIRES_SECOND_APPROVER``,
waits for a second officer).
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from app.audit import Actor
from app.dsr import services
from app.dsr.models import DsrRequest
from app.dsr.services import ActionError
from app.dsr.states import RequestType
from app.sources import Subject
from app.sources.resolve import resolve_subject


def erasure_plan_for(subject: Subject) -> list[dict[str, Any]] | None:
    """The dry-run erasure plan for ``subject`` as staff see it; None when it cannot be computed (a source
    unreachable): then nothing may be approved on it."""
    from app.sources import erasure_plan

    try:
        plan = erasure_plan(subject)
    except Exception:  # noqa: BLE001 - any failure means no plan, and the approval waits
        current_app.logger.exception("erasure_plan failed")
        return None
    return [dict(item) for item in plan] if plan is not None else None


def approve(dsr: DsrRequest, actor: Actor, *, confirm_reference: str | None, decision_text: str | None) -> DsrRequest:
    """Approve ``dsr`` (the caller commits); raises ``ActionError`` with a sentence for staff."""
    plan = None
    if dsr.request_type == RequestType.DELETION.value:
        if (confirm_reference or "").upper() != dsr.reference:
            raise ActionError(
                f"Nothing was erased. To approve this deletion, type the reference {dsr.reference} in the box "
                "to confirm you have read the plan."
            )
        resolution = resolve_subject(dsr)
        if resolution.conflict:
            raise ActionError(
                "The identifiers match more than one account ("
                + ", ".join(str(a) for a in resolution.conflict)
                + "): remove the wrong identifier before approving."
            )
        plan = erasure_plan_for(resolution.subject)
        if plan is None:
            raise ActionError("The deletion plan could not be computed, so the request cannot be approved yet.")
    return services.approve(dsr, actor, plan=plan, confirm_reference=confirm_reference, decision_text=decision_text)
