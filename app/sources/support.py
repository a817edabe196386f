"""Support correspondence: messages by the subject's email address, with or without an account."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import func, or_, select

from app.platform.models import SupportMessage
from app.sources.base import Progress, Source, Subject, count_rows, delete_in_batches, stream_batches
from app.sources.inventory import category


class SupportSource(Source):
    key = "support"
    category = category("support_messages")

    def _where(self, subject: Subject):
        clauses = [func.lower(SupportMessage.email).in_(sorted(subject.emails))]
        if subject.account_id is not None:
            clauses.append(SupportMessage.account_id == subject.account_id)
        return or_(*clauses)

    def _select(self, subject: Subject):
        return select(*[getattr(SupportMessage, f) for f in self.category.fields]).where(self._where(subject))

    def count(self, subject: Subject) -> int:
        return count_rows(select(SupportMessage.id).where(self._where(subject)))

    def batches(self, subject: Subject) -> Iterator[Sequence[Sequence[Any]]]:
        # The select's columns are the inventory's fields, in order.
        yield from stream_batches(self._select(subject), SupportMessage.id)

    def erase(self, subject: Subject, progress: Progress | None = None) -> list[dict[str, Any]]:
        n = delete_in_batches(SupportMessage.__table__, SupportMessage.id, self._where(subject))
        return [
            {"category": "support_messages", "action": "deleted", "count": n, "reason": self.category.erasure_reason}
        ]
