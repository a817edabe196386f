"""What officers do to a request: one POST endpoint per request plus bulk actions on the queue.

Views parse the form, call one service in ``app.dsr.services`` (which alone changes a status and
writes the audit event and any email to the subject in the same transaction), commit, flash and
redirect (POST/redirect/GET). A refused action (wrong state, missing reason) is a flash, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flask import flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select

from app.admin.auth import safe_next
from app.admin.guard import bp, requires
from app.admin.limits import MAX_BULK, MAX_TEXT
from app.admin.views import get_request_or_404, staff_choices, status_label
from app.audit import Actor
from app.dsr import approval, identifiers, packages, services
from app.dsr.actions import available_actions, refusal
from app.dsr.models import DsrRequest
from app.dsr.services import ActionError, TransitionError
from app.dsr.states import RequestType
from app.extensions import db

# A submitted form (``request.form``): the fields an action reads.
Form = Mapping[str, str]


def _text(form: Form, name: str) -> str:
    return (form.get(name) or "").strip()[:MAX_TEXT]


def _approve(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    locked = approval.approve(
        dsr, actor, confirm_reference=_text(form, "confirm_reference"), decision_text=_text(form, "decision_text")
    )
    if locked.status != "approved":
        return "Your approval is recorded. A second officer must approve this deletion before anything is erased."
    return "Approved: fulfilment will start shortly."


def _deny(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    services.staff_deny(dsr, actor, _text(form, "reason"), _text(form, "reason_text"))
    return "Denied. The subject was emailed the reason."


def _hold(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    services.hold(dsr, actor, _text(form, "reason"))
    return "Put on hold. The deadline still runs."


def _resume(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    services.resume(dsr, actor)
    return "Back in review."


def _extend(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    locked = services.staff_extend(dsr, actor, _text(form, "reason"))
    return f"Deadline extended to {locked.due_at:%d %B %Y}. The subject was told why."


def _assign(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    raw = _text(form, "assignee")
    if raw in ("", "none"):
        services.assign(dsr, actor, None)
        return "Unassigned."
    allowed = {s.id: s for s in staff_choices()}
    if not raw.isdecimal() or int(raw) not in allowed:
        raise ActionError("Choose an active officer or admin.")
    services.assign(dsr, actor, int(raw))
    return f"Assigned to {allowed[int(raw)].email}."


def _note(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    services.add_note(dsr, actor, _text(form, "note"))
    return "Note added."


def _retry(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    services.retry(dsr, actor)
    return "Retrying: fulfilment will start again shortly."


def _cancel(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    services.staff_cancel(dsr, actor, _text(form, "reason"))
    return "Cancelled."


def _request_info(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    identity = form.get("identity") in ("1", "y", "on")
    locked = services.request_info(dsr, actor, _text(form, "message"), identity=identity)
    paused = " The deadline is paused until they answer." if locked.hold_pauses_clock else " The deadline still runs."
    return "The subject was emailed your question; the request is on hold until they answer." + paused


def _message(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    services.message_subject(dsr, actor, _text(form, "message"))
    return "Your message was sent to the subject."


def _add_identifier(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    ident = identifiers.add_identifier(
        dsr, actor, _text(form, "kind"), _text(form, "value"), _text(form, "method"), _text(form, "justification")
    )
    if ident.status == "verified":
        return "Identifier added and confirmed; the plan and the job will use it."
    return f"We emailed {ident.value} a link; the address is used only once it confirms."


def _remove_identifier(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    raw = _text(form, "identifier_id")
    if not raw.isdecimal() or len(raw) > 9:
        raise ActionError("That identifier does not exist.")
    identifiers.remove_identifier(dsr, actor, int(raw))
    return "Identifier removed."


def _decide_item(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    raw = _text(form, "item_id")
    if not raw.isdecimal() or len(raw) > 9:
        raise ActionError("That proposed change does not exist.")
    decision = _text(form, "decision")
    item = services.decide_correction(dsr, actor, int(raw), decision, _text(form, "reject_reason"))
    if decision == "approved" and item.field == "email" and not item.confirmed_at:
        return "Accepted. The new address was emailed a link: it is applied only once it confirms."
    return f"Proposed change {decision}."


def _release_package(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    if packages.release_package(dsr, actor).status == "approved":
        return "The package file was missing: it is being built again; it waits for your release again."
    return "Released: the subject was emailed the download link."


def _release_record(dsr: DsrRequest, actor: Actor, form: Form) -> str:
    category, raw = _text(form, "category"), _text(form, "record_id")
    if not raw.isdecimal() or len(raw) > 18:
        raise ActionError("That record is not withheld from this request's package.")
    locked = packages.release_record(dsr, actor, category, int(raw))
    if locked.status == "approved":
        return "Released: the package is being built again with this record; it waits for your release again."
    return "Released: the package will include this record."


ACTIONS: dict[str, Callable[[DsrRequest, Actor, Form], str]] = {
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
    "message": _message,
    "decide_item": _decide_item,
    "add_identifier": _add_identifier,
    "remove_identifier": _remove_identifier,
    "release_package": _release_package,
    "release_record": _release_record,
}


def run_action(dsr: DsrRequest, action: str, form: Form) -> tuple[bool, str]:
    handler = ACTIONS.get(action)
    if handler is None:
        return False, "Unknown action."
    if action not in available_actions(dsr, current_user):
        return False, refusal(dsr, action, status_label(dsr.status).lower())
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
def request_action(reference: str) -> ResponseReturnValue:
    dsr = get_request_or_404(reference)
    ok, message = run_action(dsr, (request.form.get("action") or "").strip(), request.form)
    flash(message, "success" if ok else "error")
    return redirect(url_for("admin.request_detail", reference=dsr.reference), code=303)


def _all_matching(return_to: str) -> list[str]:
    """The references of every request the queue's filters (carried in ``return_to``) match, at most
    ``MAX_BULK``, in the queue's order."""
    from urllib.parse import parse_qsl, urlsplit

    from werkzeug.datastructures import MultiDict

    from app.admin.queries import SORTS, QueueFilters, queue_statement
    from app.models_base import utcnow

    args: MultiDict[str, str] = MultiDict(parse_qsl(urlsplit(return_to).query))
    filters = QueueFilters.parse(args, me_id=current_user.id)
    stmt = queue_statement(filters, utcnow()).order_by(*SORTS[filters.sort], DsrRequest.id).limit(MAX_BULK)
    return [d.reference for d in db.session.execute(stmt).scalars()]


@bp.route("/requests/bulk", methods=["POST"])
@requires("officer")
def bulk_action() -> ResponseReturnValue:
    action = (request.form.get("action") or "").strip()
    back = safe_next(request.form.get("return_to")) or url_for("admin.queue")
    refs = [r.strip().upper() for r in request.form.getlist("ref") if r and len(r) <= 20][:MAX_BULK]
    if request.form.get("all_matching") == "1":
        refs = _all_matching(back)
    if action not in ("approve", "deny"):
        flash("Choose approve or deny for the selected requests.", "error")
        return redirect(back, code=303)
    if not refs:
        flash("Select at least one request.", "error")
        return redirect(back, code=303)
    found = db.session.execute(select(DsrRequest).where(DsrRequest.reference.in_(refs))).scalars().all()
    done: list[str] = []
    refused: list[str] = []
    for dsr in sorted(found, key=lambda d: d.reference):
        if action == "approve" and dsr.request_type == RequestType.DELETION.value:
            # Nothing irreversible happens in bulk: each deletion is approved on its own page, with its plan.
            refused.append(f"{dsr.reference}: deletions are approved one by one, on the request's page, with its plan")
            continue
        ok, message = run_action(dsr, action, request.form)
        (done if ok else refused).append(dsr.reference if ok else f"{dsr.reference}: {message}")
    if done:
        flash(
            f"{ {'approve': 'Approved', 'deny': 'Denied'}[action] } {len(done)} request(s): {', '.join(done)}.",
            "success",
        )
    for line in refused[:20]:
        flash(line, "error")
    return redirect(back, code=303)
