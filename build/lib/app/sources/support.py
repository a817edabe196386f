"""Support correspondence: messages by the subject's email address, with or without an account."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, or_, select

from app.platform.models import SupportMessage
from app.sources.base import Progress, Subject, TableSource, count_rows, delete_in_batches
from app.sources.inventory import category


class SupportSource(TableSource):
    key = "support"
    category = category("support_messages")
    model = SupportMessage
    by_account = False  # found by email too

    def _where(self, subject: Subject):
        # Messages from the subject's addresses, unless they belong to another account (an address that
        # account once had, say): those are shown to staff as history, not taken (app.sources.resolve).
        mine = SupportMessage.account_id.is_(None)
        if subject.account_id is not None:
            mine = or_(mine, SupportMessage.account_id == subject.account_id)
        clauses = [and_(func.lower(SupportMessage.email).in_(sorted(subject.emails)), mine)]
        if subject.account_id is not None:
            clauses.append(SupportMessage.account_id == subject.account_id)
        return or_(*clauses)

    def count(self, subject: Subject) -> int:
        return count_rows(select(SupportMessage.id).where(self._where(subject)))

    def erase(self, subject: Subject, progress: Progress | None = None) -> list[dict[str, Any]]:
        n = delete_in_batches(SupportMessage.__table__, SupportMessage.id, self._where(subject))
        return [self.result("deleted" if n else "not_found", n)]
