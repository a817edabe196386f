"""Support correspondence: messages by the subject's email address, with or without an account.

A message on the subject's account whose correspondent is not one of the request's verified addresses was
written by (or to) someone else: it is withheld from the package by default and listed there as withheld
with the reason (GDPR Art. 15(4): the copy must not adversely affect the rights of others). An officer
reviews it on the request's page and may release it (``Subject.released``); the next package includes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_, select

from app.models_base import table_of
from app.platform.models import SupportMessage
from app.sources.base import (
    DELETE_BATCH,
    Progress,
    ResultItem,
    Subject,
    TableSource,
    count_rows,
    delete_in_batches,
    stream_batches,
)
from app.sources.inventory import category


class SupportSource(TableSource):
    key = "support"
    category = category("support_messages")
    model = SupportMessage
    by_account = False  # found by email too

    def _where(self, subject: Subject) -> ColumnElement[bool]:
        # Messages from the subject's addresses, unless they belong to another account (an address that
        # account once had, say): those are shown to staff as history, not taken (app.sources.resolve).
        mine: ColumnElement[bool] = SupportMessage.account_id.is_(None)
        if subject.account_id is not None:
            mine = or_(mine, SupportMessage.account_id == subject.account_id)
        clauses = [and_(func.lower(SupportMessage.email).in_(sorted(subject.emails)), mine)]
        if subject.account_id is not None:
            clauses.append(SupportMessage.account_id == subject.account_id)
        return or_(*clauses)

    def _own(self, subject: Subject) -> ColumnElement[bool]:
        """The subject's own correspondence, or a third party's message an officer released."""
        own = func.lower(SupportMessage.email).in_(sorted(subject.emails))
        released = sorted(subject.released.get(self.category.name, ()))
        return or_(own, SupportMessage.id.in_(released)) if released else own

    def count(self, subject: Subject) -> int:
        return count_rows(select(SupportMessage.id).where(self._where(subject)))

    def batches(self, subject: Subject) -> Iterator[Sequence[Sequence[Any]]]:
        yield from stream_batches(self._export_select(subject).where(self._own(subject)), SupportMessage.id)

    def withheld(self, subject: Subject) -> list[dict[str, Any]]:
        stmt = select(SupportMessage.id, SupportMessage.sent_at, SupportMessage.direction).where(
            self._where(subject), self._retained_now(), not_(self._own(subject))
        )
        out: list[dict[str, Any]] = []
        for batch in stream_batches(stmt, SupportMessage.id):
            for mid, sent_at, direction in batch:
                out.append(
                    {
                        "category": self.category.name,
                        "id": mid,
                        "sent_at": sent_at,
                        "direction": direction,
                        "reason": self.category.withhold_reason,
                    }
                )
        return out

    def withheld_messages(self, subject: Subject) -> list[SupportMessage]:
        """The withheld messages in full, for the officer who reviews them (never for the package)."""
        from app.extensions import db

        stmt = (
            select(SupportMessage)
            .where(self._where(subject), self._retained_now(), not_(self._own(subject)))
            .order_by(SupportMessage.id)
        )
        return list(db.session.execute(stmt).scalars())

    def sweep(self, older_than: datetime, batch: int | None = None) -> int:
        """Retention: delete every support message sent before ``older_than`` (``batch`` rows per
        transaction; ``DELETE_BATCH`` when not given), in one pass like the usage sweep."""
        return delete_in_batches(
            table_of(SupportMessage),
            SupportMessage.id,
            SupportMessage.sent_at < older_than,
            batch or DELETE_BATCH,
            recheck=False,
        )

    def erase(
        self, subject: Subject, progress: Progress | None = None, *, batch: int = DELETE_BATCH
    ) -> list[ResultItem]:
        n = delete_in_batches(table_of(SupportMessage), SupportMessage.id, self._where(subject), batch)
        return [self.result("deleted" if n else "not_found", n)]
