"""Jobs behind the portal's resend and lookup forms (see ``app.portal.lookup``)."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from app.audit import Actor, record_event
from app.dsr import services
from app.dsr.models import DsrRequest
from app.dsr.portal import TYPE_LABELS, send_verification
from app.dsr.states import OPEN, RequestStatus
from app.extensions import db
from app.mail import queue_mail
from app.models_base import utcnow
from workers.context import job

S = RequestStatus


@job
def send_links(kind: str, digest: str) -> str:
    if kind == "verify":
        return _resend_verification(digest)
    if kind == "status":
        return _status_links(digest)
    return "unknown kind"


def _resend_verification(digest: str) -> str:
    cutoff = utcnow() - timedelta(days=current_app.config["UNVERIFIED_EXPIRY_DAYS"])
    dsr = db.session.execute(
        select(DsrRequest)
        .where(
            DsrRequest.email_hash == digest,
            DsrRequest.status == S.UNVERIFIED.value,
            DsrRequest.received_at > cutoff,
        )
        .order_by(DsrRequest.received_at.desc(), DsrRequest.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if dsr is None:
        return "nothing to resend"
    send_verification(dsr)
    record_event("request.verification_resent", Actor.subject(), dsr=dsr)
    db.session.commit()
    return "resent"


def _status_links(digest: str) -> str:
    found = list(
        db.session.execute(
            select(DsrRequest)
            .where(
                DsrRequest.email_hash == digest,
                DsrRequest.status.in_([s.value for s in OPEN if s is not S.UNVERIFIED]),
                DsrRequest.email.is_not(None),
            )
            .order_by(DsrRequest.received_at)
        ).scalars()
    )
    if not found:
        return "no open requests"
    links = []
    for dsr in found:
        raw = services.issue_token(dsr, "status", lifetime=services.status_link_lifetime())
        links.append((dsr, services.status_url(dsr, raw)))
        record_event("request.status_link_resent", Actor.subject(), dsr=dsr)
    first = found[0]
    assert first.email is not None  # the query keeps requests that still have an address
    queue_mail(
        first.email,
        "lookup_links",
        "Links to your privacy requests",
        dsr=first,
        lines=[(d.reference, TYPE_LABELS.get(d.request_type, d.request_type), url) for d, url in links],
    )
    db.session.commit()
    return f"{len(links)} link(s) sent"
