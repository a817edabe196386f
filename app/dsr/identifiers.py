"""Identifiers staff add to a request to find its subject (see ``app.sources.resolve``).

An added email is used only once it has confirmed a link sent to it (``method`` = ``link``), or once a
staff member has recorded why it is the subject's (``method`` = ``staff``); an account id or a Stripe
customer id needs that recorded reason. The audit trail records who added and confirmed what, by id and
method; the reason itself lives on the identifier and goes when the request is minimised.
"""

from __future__ import annotations

import re
from datetime import timedelta

from flask import current_app

from app.audit import Actor, record_event
from app.dsr import services
from app.dsr.models import DsrRequest, RequestIdentifier
from app.dsr.portal import TYPE_LABELS
from app.dsr.services import ActionError
from app.dsr.states import OPEN
from app.extensions import db
from app.mail import queue_mail
from app.models_base import utcnow

KINDS = {"email": "Email address", "account_id": "Platform account id", "stripe_customer_id": "Stripe customer id"}
STRIPE_ID = re.compile(r"^cus_[A-Za-z0-9]{6,60}$")


def _clean_value(kind: str, value: str) -> str:
    value = (value or "").strip()
    if kind == "email":
        from email_validator import EmailNotValidError

        from app.portal.forms import check_email

        try:
            return check_email(value)
        except EmailNotValidError:
            raise ActionError("Enter a valid email address.") from None
    if kind == "account_id":
        if not value.isdecimal() or not 0 < int(value) < 2**31:
            raise ActionError("An account id is a whole number.")
        return str(int(value))
    if kind == "stripe_customer_id":
        if not STRIPE_ID.match(value):
            raise ActionError("A Stripe customer id looks like cus_ followed by letters and digits.")
        return value
    raise ActionError("Choose what kind of identifier this is.")


def add_identifier(
    dsr: DsrRequest, actor: Actor, kind: str, value: str, method: str, justification: str = ""
) -> RequestIdentifier:
    locked = services.lock_request(dsr.id)
    if locked.status not in {s.value for s in OPEN} or locked.status in ("approved", "in_progress"):
        raise ActionError("Identifiers can be added while the request is open and not yet being carried out.")
    if kind not in KINDS:
        raise ActionError("Choose what kind of identifier this is.")
    value = _clean_value(kind, value)
    justification = (justification or "").strip()
    if method == "link" and kind != "email":
        raise ActionError("Only an email address can confirm itself by a link; record why this one is the subject's.")
    if method not in ("link", "staff"):
        raise ActionError("Choose how the identifier is confirmed.")
    if method == "staff" and not justification:
        raise ActionError("Give the reason you are sure this identifier is the subject's; it is kept in the record.")
    if any(i.kind == kind and i.value == value for i in locked.identifiers) or (
        kind == "email" and value == (locked.email or "").lower()
    ):
        raise ActionError("The request has this identifier already.")
    ident = RequestIdentifier(
        request_id=locked.id,
        kind=kind,
        value=value,
        method=method,
        justification=justification[:2000] or None,
        status="verified" if method == "staff" else "pending",
        added_by_id=actor.id if actor.kind == "staff" else None,
        verified_at=utcnow() if method == "staff" else None,
    )
    db.session.add(ident)
    db.session.flush()
    record_event(
        "request.identifier_added", actor, dsr=locked, data={"identifier_id": ident.id, "kind": kind, "method": method}
    )
    if method == "staff":
        record_event(
            "request.identifier_confirmed",
            actor,
            dsr=locked,
            data={"identifier_id": ident.id, "kind": kind, "method": "staff"},
        )
    else:
        hours = current_app.config["VERIFY_TOKEN_HOURS"]
        raw = services.issue_token(
            locked, "identifier", lifetime=timedelta(hours=hours), max_uses=1, identifier_id=ident.id
        )
        queue_mail(
            value,
            "identifier_verify",
            "Confirm this email address for a privacy request",
            dsr=locked,
            verified=False,
            link=f"{current_app.config['PORTAL_BASE_URL']}/identifiers/{raw}",
            hours=hours,
            type_label=TYPE_LABELS.get(locked.request_type, locked.request_type),
        )
    if locked.request_type == "deletion" and locked.plan:
        locked.plan = None  # a first approval's stored plan no longer matches the identifiers
        locked.first_approved_by_id = None
        locked.first_approved_at = None
    return ident


def remove_identifier(dsr: DsrRequest, actor: Actor, identifier_id: int) -> None:
    locked = services.lock_request(dsr.id)
    ident = db.session.get(RequestIdentifier, identifier_id) if 0 < identifier_id < 2**31 else None
    if ident is None or ident.request_id != locked.id:
        raise ActionError("That identifier does not belong to this request.")
    if locked.status in ("approved", "in_progress"):
        raise ActionError("The request is being carried out; its identifiers can no longer change.")
    db.session.delete(ident)
    record_event("request.identifier_removed", actor, dsr=locked, data={"identifier_id": identifier_id})
