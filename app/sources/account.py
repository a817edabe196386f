"""The platform account: found by its (normalised) email; exported, corrected, deleted last."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select

from app.platform.models import Account
from app.sources.base import Progress, Source, Subject, count_rows, delete_in_batches, normalise_email, stream_rows
from app.sources.inventory import category

CORRECTABLE = {"name": "name", "full_name": "name", "email": "email", "company": "company"}


class CorrectionRefused(Exception):
    """A correction that cannot be applied; the message is shown to the subject and staff."""


class AccountSource(Source):
    key = "account"
    category = category("account")

    def _select(self, subject: Subject):
        return select(*[getattr(Account, f) for f in self.category.fields]).where(
            Account.id == (subject.account_id if subject.account_id is not None else -1)
        )

    def count(self, subject: Subject) -> int:
        return 0 if subject.account_id is None else count_rows(self._select(subject))

    def records(self, subject: Subject, progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        if subject.account_id is None:
            return
        for row in stream_rows(self._select(subject), Account.id):
            yield self.export_row(row)

    def erase(self, subject: Subject, progress: Progress | None = None) -> list[dict[str, Any]]:
        n = 0
        if subject.account_id is not None:
            n = delete_in_batches(Account.__table__, Account.id, Account.id == subject.account_id)
        return [{"category": "account", "action": "deleted", "count": n, "reason": self.category.erasure_reason}]

    def correct(self, subject: Subject, field: str, value: str) -> str:
        """Apply one approved field; returns a short result, raises ``CorrectionRefused``."""
        from app.extensions import db

        column = CORRECTABLE.get(field)
        if column is None:
            raise CorrectionRefused(f"The account has no correctable field called {field!r}.")
        if subject.account_id is None:
            raise CorrectionRefused("No platform account uses this email address.")
        acct = db.session.get(Account, subject.account_id)
        value = (value or "").strip()
        if column == "email":
            value = normalise_email(value)
            if "@" not in value or len(value) > 254:
                raise CorrectionRefused("The new email address is not valid.")
            clash = db.session.execute(
                select(Account.id).where(func.lower(Account.email) == value, Account.id != acct.id)
            ).first()
            if clash:
                raise CorrectionRefused("Not applied: that email address is already used by another account.")
        elif column == "name" and not value:
            raise CorrectionRefused("The name cannot be empty.")
        setattr(acct, column, value[:200] if column != "email" else value)
        if column == "email":
            subject.account_email = value
            subject.extra_emails.add(value)
        return f"Account {column} updated."
