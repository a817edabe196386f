"""What a staff member may do with a request now: one decision, used by the action endpoint (which
refuses anything not listed), the detail template (which shows only these) and the bulk actions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.dsr.states import OPEN, RequestStatus

if TYPE_CHECKING:
    from app.dsr.models import DsrRequest

S = RequestStatus
REVIEW = frozenset({S.PENDING_REVIEW.value, S.ON_HOLD.value})
VERIFIED_OPEN = frozenset(s.value for s in OPEN if s is not S.UNVERIFIED)


def available_actions(dsr: DsrRequest, user: object) -> frozenset[str]:
    if user is None or not getattr(user, "can_act", False) or dsr.minimised_at is not None:
        return frozenset()
    status = dsr.status
    actions = {"assign", "note"}
    if status in REVIEW:
        actions |= {"approve", "deny", "request_info", "decide_item", "add_identifier", "remove_identifier"}
    if status == S.PENDING_REVIEW.value:
        actions.add("hold")
    if status == S.ON_HOLD.value:
        actions.add("resume")
    if status == S.FAILED.value:
        actions.add("retry")
    if status in REVIEW | {S.FAILED.value}:
        actions.add("cancel")
    if dsr.request_type == "access" and status in REVIEW | {S.AWAITING_RELEASE.value}:
        actions.add("release_record")  # a withheld record (another person's data), before the link goes out
    if status == S.AWAITING_RELEASE.value:
        actions.add("release_package")
    if status in VERIFIED_OPEN:
        actions.add("message")
        if dsr.extended_at is None and dsr.due_at is not None:
            actions.add("extend")  # the service refuses it, with the reason, once the deadline has passed
    return frozenset(actions)


REFUSALS = {
    "extend": "This request was already extended once; the law allows one extension.",
    "decide_item": "Proposed changes can only be decided while the request is under review.",
    "retry": "Only a failed request can be retried.",
}


def refusal(dsr: DsrRequest, action: str, status_label: str) -> str:
    """Why ``action`` is not available for ``dsr`` now, in words an officer can act on."""
    if action == "extend" and dsr.extended_at is not None:
        return REFUSALS["extend"]
    if action in ("decide_item", "retry"):
        return f"Cannot {action.replace('_', ' ')} a request that is {status_label}: {REFUSALS[action]}"
    return f"Cannot {action.replace('_', ' ')} a request that is {status_label}."
