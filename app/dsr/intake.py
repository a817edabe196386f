"""Staff intake: a request that reached us by email, letter, phone or an agent, entered by an officer
with the real date it was received (its deadline runs from that date, which is never in the future).

Identity is either checked by the usual emailed link, or recorded as verified another way (the method and
the evidence on the request, the fact and the officer in the audit trail)."""

from __future__ import annotations

from datetime import datetime

from app.audit import Actor, record_event
from app.dsr import services
from app.dsr.models import CorrectionItem, DsrRequest
from app.dsr.portal import receipt, send_verification
from app.dsr.services import ActionError
from app.dsr.states import RequestStatus
from app.extensions import db
from app.mailbox.services import attach_to_request, get_item
from app.models_base import utcnow

CHANNELS = ("email", "letter", "phone", "web", "api", "agent")


def staff_intake(
    actor: Actor,
    *,
    request_type: str,
    email: str,
    full_name: str,
    jurisdiction: str,
    channel: str,
    received_at: datetime,
    details: str = "",
    verification: str = "link",
    verification_method: str = "",
    verification_evidence: str = "",
    corrections: list[tuple[str, str]] | None = None,
    inbound_mail_id: int | None = None,
) -> DsrRequest:
    now = utcnow()
    if channel not in CHANNELS:
        raise ActionError("Choose how the request reached us.")
    if received_at > now:
        raise ActionError("The date received cannot be in the future.")
    if verification not in ("link", "verified"):
        raise ActionError("Choose how the subject's identity is verified.")
    if verification == "verified" and not (verification_method.strip() and verification_evidence.strip()):
        raise ActionError("Say how the identity was verified and what the evidence is.")
    if inbound_mail_id is not None:
        item = get_item(inbound_mail_id)
        if item is not None and received_at > item.received_at:
            # The deadline runs from the day the mail reached us: a later date would lengthen it.
            raise ActionError(
                f"The mail reached us on {item.received_at:%Y-%m-%d %H:%M} UTC: the request was received then "
                "(or earlier), not later."
            )
    dsr = DsrRequest(
        request_type=request_type,
        status=RequestStatus.UNVERIFIED.value,
        email=email,
        full_name=full_name,
        jurisdiction=jurisdiction,
        details=details or "",
        channel=channel,
        received_at=received_at,
    )
    for field, value in corrections or []:
        dsr.corrections.append(CorrectionItem(field=field, proposed_value=value))
    db.session.add(dsr)
    db.session.flush()
    if inbound_mail_id is not None:
        attach_to_request(inbound_mail_id, dsr, actor)
    record_event(
        "request.entered_by_staff",
        actor,
        dsr=dsr,
        public=True,
        message="We received your request and entered it for you.",
        data={
            "channel": channel,
            "received_at": received_at.isoformat(),
            "verification": verification,
            "inbound_mail_id": inbound_mail_id,
        },
    )
    if verification == "link":
        send_verification(dsr)
        return dsr
    dsr.verification_method = verification_method.strip()[:200]
    dsr.verification_evidence = verification_evidence.strip()[:2000]
    dsr = services.transition(dsr, RequestStatus.PENDING_REVIEW, actor, reason_code="verified_by_staff")
    record_event("request.identity_verified_by_staff", actor, dsr=dsr, data={"channel": channel})
    receipt(dsr)
    return dsr
