"""API keys: metadata exported, the hash never; erasure revokes every key, then deletes them."""

from __future__ import annotations

from sqlalchemy import ColumnElement, update

from app.models_base import table_of, utcnow
from app.platform.models import ApiKey
from app.sources.base import (
    DELETE_BATCH,
    Progress,
    ResultItem,
    Subject,
    TableSource,
    count_rows,
    delete_in_batches,
    platform_engine,
)
from app.sources.inventory import category


class ApiKeySource(TableSource):
    key = "api_keys"
    category = category("api_keys")
    model = ApiKey  # key_hash is not an inventory field: it is never selected, never leaves

    def _where(self, subject: Subject) -> ColumnElement[bool]:
        return ApiKey.account_id == (subject.account_id if subject.account_id is not None else -1)

    def count(self, subject: Subject) -> int:
        return 0 if subject.account_id is None else count_rows(self._select(subject))

    def erase(
        self, subject: Subject, progress: Progress | None = None, *, batch: int = DELETE_BATCH
    ) -> list[ResultItem]:
        if subject.account_id is None:
            n = 0
        else:
            with platform_engine().begin() as conn:
                conn.execute(
                    update(table_of(ApiKey))
                    .where(self._where(subject), ApiKey.revoked_at.is_(None))
                    .values(revoked_at=utcnow())
                )
            n = delete_in_batches(table_of(ApiKey), ApiKey.id, self._where(subject), batch)
        return [self.result("deleted" if n else "not_found", n)]
