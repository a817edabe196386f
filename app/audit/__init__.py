"""The append-only audit trail.

``record_event`` adds an event to the caller's session, so it commits or rolls back with the change it
describes. There is no update or delete path in the code; on PostgreSQL a trigger refuses both.
Events carry the request id and reference but never the subject's email or name, so the trail can
outlive the 24-month purge of request records.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import has_request_context
from flask import request as http_request

from app.audit.models import AuditEvent
from app.extensions import db

if TYPE_CHECKING:
    from app.dsr.models import DsrRequest
    from app.staff.models import StaffUser


@dataclass(frozen=True)
class Actor:
    kind: str  # "subject", "staff" or "system"
    id: int | None = None
    label: str = ""

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls("system", None, label)

    @classmethod
    def subject(cls) -> Actor:
        return cls("subject", None, "subject")

    @classmethod
    def staff(cls, user: StaffUser) -> Actor:
        return cls("staff", user.id, user.email)

    @classmethod
    def anonymous(cls) -> Actor:
        """Someone not signed in (a failed sign-in for an unknown address): never what they typed."""
        return cls("anonymous", None, "unknown address")


def _client_ip() -> str | None:
    """The client's address as an address, or nothing (a proxy header is input, and the column is 45 wide)."""
    try:
        return str(ipaddress.ip_address(http_request.remote_addr or ""))
    except ValueError:
        return None


def record_event(
    event: str,
    actor: Actor,
    *,
    dsr: DsrRequest | None = None,
    public: bool = False,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one audit event to the current transaction. ``public`` events show on the status page."""
    ip = _client_ip() if has_request_context() and actor.kind in ("staff", "anonymous") else None
    ev = AuditEvent(
        event=event,
        actor_type=actor.kind,
        actor_id=actor.id,
        actor_label=(actor.label or "")[:254],
        request_id=getattr(dsr, "id", None),
        request_reference=getattr(dsr, "reference", None),
        public=public,
        message=(message or "")[:1000],
        data=data or {},
        ip=ip,
    )
    db.session.add(ev)
    return ev
