"""What officers do to a request: one POST endpoint per request plus bulk actions on the queue.

Views parse the form, call one service in ``app.dsr.services`` (which alone changes a status and
writes the audit event and any email to the subject in the same transaction), commit, flash and
redirect (POST/redirect/GET). A refused action (wrong state, missing reason) is a flash, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import flash, redirect, request, url_for
from flask_login import current_user
from sqlalchemy import select

from app.admin.auth import safe_next
from app.admin.guard import bp, requires
from app.admin.views import erasure_plan_for, get_request_or_404, staff_choices, status_label
from app.audit import Actor
from app.dsr import services
from app.dsr.models import DsrRequest
from app.dsr.services import ActionError, TransitionError
from app.dsr.states import RequestType
from app.extensions import db

MAX_TEXT = 2000
MAX_BULK = 200


def _text(form, name: str) -> str:
    return (form.get(name) or "").strip()[:MAX_TEXT]


def _approve(dsr: DsrRequest, actor: Actor, form) -> str:
    plan = None
    if dsr.request_type == RequestType.DELETION.value:
        plan = erasure_plan_for(dsr.email)
        if plan is None:
            raise ActionError("The deletion plan could not be computed, so the request cannot be approved yet.")
    services.approve(dsr, actor, plan=plan)
    return "Approved: fulfilment will start shortly."


def _deny(dsr: DsrRequest, actor: Actor, form) -> str:
    services.staff_deny(dsr, actor, _text(form, "reason"), _text(form, "reason_text"))
    return "Denied. The subject was emailed the reason."


def _hold(dsr: DsrRequest, actor: Actor, form) -> str:
    services.hold(dsr, actor, _text(form, "reason"), pauses_clock=form.get("pause_clock") in ("1", "y", "on"))
    return "Put on hold."


def _resume(dsr: DsrRequest, actor: Actor, form) -> str:
    services.resume(dsr, actor)
    return "Back in review."


def _extend(dsr: DsrRequest, actor: Actor, form) -> str:
    locked = services.staff_extend(dsr, actor, _text(form, "reason"))
    return f"Deadline extended to {locked.due_at:%d %B %Y}. The subject was told why."


def _assign(dsr: DsrRequest, actor: Actor, form) -> str:
    raw = _text(form, "assignee")
    if raw in ("", "none"):
        services.assign(dsr, actor, None)
        return "Unassigned."
    allowed = {s.id: s for s in staff_choices()}
    if not raw.isdigit() or int(raw) not in allowed:
        raise ActionError("Choose an active officer or admin.")
    services.assign(dsr, actor, int(raw))
    return f"Assigned to {allowed[int(raw)].email}."


def _note(dsr: DsrRequest, actor: Actor, form) -> str:
    services.add_note(dsr, actor, _text(form, "note"))
    return "Note added."


def _retry(dsr: DsrRequest, actor: Actor, form) -> str:
    services.retry(dsr, actor)
    return "Retrying: fulfilment will start again shortly."


def _cancel(dsr: DsrRequest, actor: Actor, form) -> str:
    services.staff_cancel(dsr, actor, _text(form, "reason"))
    return "Cancelled."


def _request_info(dsr: DsrRequest, actor: Actor, form) -> str:
    services.request_info(dsr, actor, _text(form, "message"))
    return "The subject was emailed your question; the request is on hold until they answer."


def _decide_item(dsr: DsrRequest, actor: Actor, form) -> str:
    raw = _text(form, "item_id")
    if not raw.isdigit():
        raise ActionError("That proposed change does not exist.")
    decision = _text(form, "decision")
    services.decide_correction(dsr, actor, int(raw), decision)
    return f"Proposed change {decision}."


ACTIONS: dict[str, Callable[[DsrRequest, Actor, object], str]] = {
    "approve": _approve,
    "deny": _deny,
    "hold": _hold,
    "resume": _resume,
    "extend": _extend,
    "assign": _assign,
    "note": _note,
    "retry": _retry,
    "cancel": _cancel,
    "request_info": _request_info,
    "decide_item": _decide_item,
}


def run_action(dsr: DsrRequest, action: str, form) -> tuple[bool, str]:
    handler = ACTIONS.get(action)
    if handler is None:
        return False, "Unknown action."
    actor = Actor.staff(current_user)
    try:
        message = handler(dsr, actor, form)
        db.session.commit()
        return True, message
    except TransitionError as exc:
        db.session.rollback()
        return False, f"Cannot {action.replace('_', ' ')} a request that is {status_label(exc.current).lower()}."
    except ActionError as exc:
        db.session.rollback()
        return False, str(exc)


@bp.route("/requests/<reference>/action", methods=["POST"])
@requires("officer")
def request_action(reference: str):
    dsr = get_request_or_404(reference)
    ok, message = run_action(dsr, (request.form.get("action") or "").strip(), request.form)
    flash(message, "success" if ok else "error")
    return redirect(url_for("admin.request_detail", reference=dsr.reference), code=303)


@bp.route("/requests/bulk", methods=["POST"])
@requires("officer")
def bulk_action():
    action = (request.form.get("action") or "").strip()
    back = safe_next(request.form.get("return_to")) or url_for("admin.queue")
    refs = [r.strip().upper() for r in request.form.getlist("ref") if r and len(r) <= 20][:MAX_BULK]
    if action not in ("approve", "deny"):
        flash("Choose approve or deny for the selected requests.", "error")
        return redirect(back, code=303)
    if not refs:
        flash("Select at least one request.", "error")
        return redirect(back, code=303)
    found = db.session.execute(select(DsrRequest).where(DsrRequest.reference.in_(refs))).scalars().all()
    done, refused = [], []
    for dsr in sorted(found, key=lambda d: d.reference):
        ok, message = run_action(dsr, action, request.form)
        (done if ok else refused).append(f"{dsr.reference}: {message}" if not ok else dsr.reference)
    if done:
        flash(
            f"{ {'approve': 'Approved', 'deny': 'Denied'}[action] } {len(done)} request(s): {', '.join(done)}.",
            "success",
        )
    for line in refused[:20]:
        flash(line, "error")
    return redirect(back, code=303)
