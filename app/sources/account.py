"""The platform account: found by its (normalised) email; exported, corrected, deleted last."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, select, update

from app.models_base import table_of
from app.platform.models import Account
from app.sources.base import (
    DELETE_BATCH,
    Progress,
    ResultItem,
    Subject,
    TableSource,
    count_rows,
    delete_in_batches,
    normalise_email,
    platform_engine,
)
from app.sources.inventory import category

# The account fields a subject may ask to correct, in the order the form offers them, and the words every
# page, mail and staff view uses for each (the one list: app.portal.forms, app.dsr.notices, the templates).
CORRECTABLE_FIELDS = {"name": "Name", "email": "Email address", "company": "Company"}
# The account column behind each field; ``full_name`` is the name as earlier requests recorded the field.
CORRECTABLE = {**{field: field for field in CORRECTABLE_FIELDS}, "full_name": "name"}
FIELD_LABELS = {**CORRECTABLE_FIELDS, "full_name": CORRECTABLE_FIELDS["name"]}


class CorrectionRefused(Exception):
    """A correction that cannot be applied; the message is shown to the subject and staff."""


class AccountSource(TableSource):
    key = "account"
    category = category("account")
    model = Account

    def _where(self, subject: Subject) -> ColumnElement[bool]:
        return Account.id == (subject.account_id if subject.account_id is not None else -1)

    def count(self, subject: Subject) -> int:
        return 0 if subject.account_id is None else count_rows(self._select(subject))

    def erase(
        self, subject: Subject, progress: Progress | None = None, *, batch: int = DELETE_BATCH
    ) -> list[ResultItem]:
        """Delete the account; anonymise it instead if the approved plan kept rows that need it."""
        from app.platform.models import ApiKey, SupportMessage

        if subject.account_id is None:
            return [self.result("not_found", 0, "We found no account for this address.")]
        with platform_engine().begin() as conn:
            # Messages kept by the plan stay, no longer linked to an account.
            conn.execute(
                update(table_of(SupportMessage))
                .where(SupportMessage.account_id == subject.account_id)
                .values(account_id=None)
            )
            keys_left = conn.execute(select(ApiKey.id).where(ApiKey.account_id == subject.account_id).limit(1)).first()
            if keys_left:
                n = conn.execute(
                    update(table_of(Account))
                    .where(Account.id == subject.account_id)
                    .values(
                        email=f"erased-{subject.account_id}@invalid",
                        name="Erased account",
                        company=None,
                        stripe_customer_id=None,
                        status="closed",
                    )
                ).rowcount
                why = "Anonymised, not deleted: the approved plan keeps its API keys."
                return [self.result("anonymised", n, why)]
        n = delete_in_batches(table_of(Account), Account.id, Account.id == subject.account_id, batch)
        return [self.result("deleted" if n else "not_found", n, None if n else "We found no account for this address.")]

    def set_opt_out(self, subject: Subject) -> bool:
        """Opt the account out of analytics (and of any sale or sharing); True once read back as set."""
        with platform_engine().begin() as conn:
            conn.execute(
                update(table_of(Account)).where(Account.id == subject.account_id).values(analytics_opt_out=True)
            )
            value = conn.execute(select(Account.analytics_opt_out).where(Account.id == subject.account_id)).scalar()
        return bool(value)

    def correct(self, subject: Subject, field: str, value: str | None) -> str:
        """Apply one approved field (own transaction); returns a short result, raises ``CorrectionRefused``."""
        column = CORRECTABLE.get(field)
        if column is None:
            raise CorrectionRefused(f"The account has no correctable field called {field!r}.")
        if subject.account_id is None:
            raise CorrectionRefused("No platform account uses this email address.")
        value = (value or "").strip()
        if column == "email":
            value = normalise_email(value)
            if "@" not in value or len(value) > 254:
                raise CorrectionRefused("The new email address is not valid.")
        elif not value and column == "name":
            raise CorrectionRefused("The name cannot be empty.")
        else:
            value = value[:200]
        with platform_engine().begin() as conn:
            if column == "email":
                clash = conn.execute(
                    select(Account.id).where(func.lower(Account.email) == value, Account.id != subject.account_id)
                ).first()
                if clash:
                    raise CorrectionRefused("Not applied: that email address is already used by another account.")
            conn.execute(
                update(table_of(Account)).where(Account.id == subject.account_id).values({column: value or None})
            )
        if column == "email":
            subject.account_email = value
            subject.extra_emails.add(value)
        return f"Account {column} updated."
