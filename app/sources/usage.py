"""API usage logs: possibly millions of rows per account; streamed out, deleted in batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app.platform.models import UsageRecord
from app.sources.base import (
    DELETE_BATCH,
    Progress,
    Source,
    Subject,
    count_rows,
    delete_in_batches,
    stream_batches,
)
from app.sources.inventory import category


class UsageSource(Source):
    key = "usage"
    category = category("usage_logs")

    def _where(self, subject: Subject):
        return UsageRecord.account_id == (subject.account_id if subject.account_id is not None else -1)

    def _select(self, subject: Subject):
        return select(*[getattr(UsageRecord, f) for f in self.category.fields]).where(self._where(subject))

    def count(self, subject: Subject) -> int:
        return 0 if subject.account_id is None else count_rows(select(UsageRecord.id).where(self._where(subject)))

    def batches(self, subject: Subject) -> Iterator[Sequence[Sequence[Any]]]:
        # The select's columns are the inventory's fields, in order.
        if subject.account_id is None:
            return
        yield from stream_batches(self._select(subject), UsageRecord.id)

    def erase(
        self, subject: Subject, progress: Progress | None = None, batch: int = DELETE_BATCH
    ) -> list[dict[str, Any]]:
        n = 0
        if subject.account_id is not None:
            n = delete_in_batches(UsageRecord.__table__, UsageRecord.id, self._where(subject), batch, progress)
        return [{"category": "usage_logs", "action": "deleted", "count": n, "reason": self.category.erasure_reason}]

    def sweep(self, older_than: datetime, batch: int = DELETE_BATCH) -> int:
        """Retention: delete every usage row created before ``older_than``."""
        return delete_in_batches(UsageRecord.__table__, UsageRecord.id, UsageRecord.created_at < older_than, batch)
