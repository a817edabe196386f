"""Releasing an access package: the link goes out at once, or (``ACCESS_REVIEW_BEFORE_RELEASE``) after an
officer previewed the package (README and file list) on the request's page and released it.

Records withheld by default (another person's data, GDPR Art. 15(4)) are listed in the package; an officer
reads them on the request's page and may release one: it is recorded (``ReleasedRecord``, audited) and the
package is built again with it, before the link goes out. Statuses change only through
``services.transition``.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from app.audit import Actor, record_event
from app.dsr import services
from app.dsr.models import DsrRequest, Export, ReleasedRecord
from app.dsr.services import ActionError
from app.dsr.states import RequestStatus, RequestType
from app.exports import store
from app.extensions import db
from app.mail import queue_mail
from app.models_base import utcnow

S = RequestStatus
# While the package may still change: before approval, and while it waits for release.
RELEASABLE = frozenset({S.PENDING_REVIEW.value, S.ON_HOLD.value, S.AWAITING_RELEASE.value})


def review_required() -> bool:
    return bool(current_app.config.get("ACCESS_REVIEW_BEFORE_RELEASE"))


def held_export(dsr: DsrRequest) -> Export | None:
    """The package waiting for an officer's release, if any."""
    return db.session.execute(
        select(Export).where(Export.request_id == dsr.id, Export.status == "review").order_by(Export.id.desc()).limit(1)
    ).scalar_one_or_none()


def hold_for_review(
    dsr: DsrRequest, export: Export, actor: Actor, rows: int, staff: list[str], withheld: int = 0
) -> DsrRequest:
    """The package is built: keep it for an officer instead of sending the link, and tell ``staff``.
    The caller commits."""
    export.status = "review"
    export.completed_at = utcnow()
    dsr.progress_rows = rows
    locked = services.transition(dsr, S.AWAITING_RELEASE, actor, data={"export_id": export.id, "rows": rows})
    locked.progress_note = "waiting for an officer to release the package"
    for to in staff:
        queue_mail(
            to,
            "fulfil_staff_review",
            f"Access package to release: {locked.reference}",
            dsr=locked,
            rows=rows,
            withheld=withheld,
        )
    return locked


def deliver(dsr: DsrRequest, export: Export, actor: Actor, rows: int) -> DsrRequest:
    """Issue the download link, email it and complete the request. The caller commits."""
    cfg = current_app.config
    now = utcnow()
    dsr = services.lock_request(dsr.id)
    export.status = "ready"
    export.completed_at = export.completed_at or now
    export.expires_at = now + timedelta(days=cfg["DOWNLOAD_DAYS"])
    raw = services.issue_token(
        dsr,
        "download",
        lifetime=timedelta(days=cfg["DOWNLOAD_DAYS"]),
        max_uses=cfg["DOWNLOAD_MAX"],
        export_id=export.id,
    )
    assert dsr.email is not None  # a request is minimised only once closed; this one is being answered
    queue_mail(
        dsr.email,
        "fulfil_export_ready",
        f"Your data is ready to download ({dsr.reference})",
        dsr=dsr,
        download_url=f"{cfg['PORTAL_BASE_URL']}/download/{raw}",
        expires_at=export.expires_at,
        max_uses=cfg["DOWNLOAD_MAX"],
    )
    dsr.progress_rows = rows
    return services.transition(dsr, S.COMPLETED, actor, data={"export_id": export.id, "rows": rows})


def release_package(dsr: DsrRequest, actor: Actor) -> DsrRequest:
    """An officer released the held package: the subject gets the link. A held package whose file is gone
    (purged by the subject's erasure, lost from disk) is built again instead: ``awaiting_release`` has no
    retry, so refusing here would leave the request open, and overdue, for good."""
    if dsr.status != S.AWAITING_RELEASE.value:
        raise ActionError("Only a package waiting for release can be released.")
    export = held_export(dsr)
    if export is None or store.current().size(export.filename) is None:
        if export is not None:
            export.status = "superseded"
        return services.transition(dsr, S.APPROVED, actor, reason_code="rebuild_missing_package")
    record_event("export.released", actor, dsr=dsr, data={"export_id": export.id})
    return deliver(dsr, export, actor, dsr.progress_rows or 0)


def release_record(dsr: DsrRequest, actor: Actor, category: str, record_id: int) -> DsrRequest:
    """Release one withheld record to the subject; a held package is built again with it."""
    from app.sources import EXPORTERS
    from app.sources.resolve import resolve_subject

    if dsr.request_type != RequestType.ACCESS.value or dsr.status not in RELEASABLE:
        raise ActionError("Withheld records can be released only before the package's link goes out.")
    source = EXPORTERS.get(category)
    subject = resolve_subject(dsr).subject
    if source is None or record_id not in {w["id"] for w in source.withheld(subject)}:
        raise ActionError("That record is not withheld from this request's package.")
    db.session.add(ReleasedRecord(request_id=dsr.id, category=category, record_id=record_id, released_by_id=actor.id))
    record_event("export.record_released", actor, dsr=dsr, data={"category": category, "record_id": record_id})
    if dsr.status == S.AWAITING_RELEASE.value:
        export = held_export(dsr)
        if export is not None:
            store.delete(export.filename)
            export.status = "superseded"
        return services.transition(dsr, S.APPROVED, actor, reason_code="rebuild_with_released_record")
    return dsr


def withheld_for_review(dsr: DsrRequest) -> list[dict]:
    """What the package withholds (or would) from this request, in full, for the officer who decides."""
    from app.sources import EXPORTERS
    from app.sources.resolve import resolve_subject

    if dsr.request_type != RequestType.ACCESS.value or dsr.minimised_at is not None:
        return []
    from app.sources.support import SupportSource

    subject = resolve_subject(dsr).subject
    support = EXPORTERS["support_messages"]
    assert isinstance(support, SupportSource)
    return [
        {
            "category": "support_messages",
            "id": m.id,
            "sent_at": m.sent_at,
            "direction": m.direction,
            "email": m.email,
            "subject": m.subject,
            "body": m.body,
        }
        for m in support.withheld_messages(subject)
    ]
