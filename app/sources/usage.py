"""API usage logs: possibly millions of rows per account; streamed out, deleted in batches."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement

from app.models_base import table_of
from app.platform.models import UsageRecord
from app.sources.base import (
    DELETE_BATCH,
    Progress,
    ResultItem,
    Subject,
    TableSource,
    count_in_pieces,
    delete_in_batches,
)
from app.sources.inventory import category


class UsageSource(TableSource):
    key = "usage"
    category = category("usage_logs")
    model = UsageRecord
    retention_config = "USAGE_RETENTION_DAYS"

    def _where(self, subject: Subject) -> ColumnElement[bool]:
        return UsageRecord.account_id == (subject.account_id if subject.account_id is not None else -1)

    def count(self, subject: Subject) -> int:
        """In time-bounded pieces: a heavy account's log is millions of rows (``count_in_pieces``)."""
        return 0 if subject.account_id is None else count_in_pieces(UsageRecord.id, self._where(subject))

    def erase(self, subject: Subject, progress: Progress | None = None, batch: int = DELETE_BATCH) -> list[ResultItem]:
        n = 0
        if subject.account_id is not None:
            n = delete_in_batches(table_of(UsageRecord), UsageRecord.id, self._where(subject), batch, progress)
        return [self.result("deleted" if n else "not_found", n)]

    def sweep(self, older_than: datetime, batch: int = DELETE_BATCH) -> int:
        """Retention: delete every usage row created before ``older_than``, walking ``created_at``'s index,
        in one pass (a row committed behind the walk is backdated; the next daily run takes it)."""
        where = UsageRecord.created_at < older_than
        return delete_in_batches(
            table_of(UsageRecord), UsageRecord.id, where, batch, key=UsageRecord.created_at, recheck=False
        )
