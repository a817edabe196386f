"""The person's own requests to us (earlier requests and their outcomes): a category of its own.

Read from the portal's database, not the platform's: requests whose email is one of the subject's
verified addresses, and minimised ones whose keyed email hash matches one (their email is gone). Export
only: the records of requests are kept for the CCPA's record-keeping period and minimised by the daily
job, never erased by a deletion (``Category.erasure`` is ``keep``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Select, func, or_, select

from app.extensions import db
from app.sources.base import CHUNK, DELETE_BATCH, BaseSource, Progress, ResultItem, Subject
from app.sources.inventory import category


class RequestHistorySource(BaseSource):
    key = "requests"
    category = category("requests")

    def _select(self, subject: Subject) -> Select[*tuple[Any, ...]]:
        from app.dsr.models import DsrRequest
        from app.hashing import email_hash

        emails = sorted(subject.emails)
        hashes = sorted(h for h in (email_hash(e) for e in emails) if h)
        cols = [getattr(DsrRequest, f) for f in self.category.fields]
        where = or_(func.lower(DsrRequest.email).in_(emails), DsrRequest.email_hash.in_(hashes))
        return select(*cols).where(where, DsrRequest.demo.is_(False)).order_by(DsrRequest.received_at, DsrRequest.id)

    def count(self, subject: Subject) -> int:
        if not subject.emails:
            return 0
        return int(db.session.execute(select(func.count()).select_from(self._select(subject).subquery())).scalar_one())

    def batches(self, subject: Subject) -> Iterator[Sequence[Sequence[Any]]]:
        if not subject.emails:
            return
        rows = [tuple(r) for r in db.session.execute(self._select(subject))]
        for start in range(0, len(rows), CHUNK):
            yield rows[start : start + CHUNK]

    def erase(
        self, subject: Subject, progress: Progress | None = None, *, batch: int = DELETE_BATCH
    ) -> list[ResultItem]:
        return [self.result("kept", self.count(subject))]
