"""Column helpers shared by the models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, DateTime, Integer, Table
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.orm import DeclarativeBase
    from sqlalchemy.sql.type_api import _ResultProcessorType

    class Model(DeclarativeBase):
        """What ``db.Model`` is to a type checker (Flask-SQLAlchemy builds it at run time)."""

else:
    from app.extensions import db

    Model = db.Model

# BIGINT primary keys autoincrement on PostgreSQL; SQLite only autoincrements INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE touched (``Session.execute`` types every result as ``Result``)."""
    assert isinstance(result, CursorResult)
    return result.rowcount


def table_of(model: type[Model]) -> Table:
    """A model's ``Table``, for Core statements (``__table__`` is typed as any ``FromClause``)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: object) -> _ResultProcessorType[datetime] | None:
        generic = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or generic is None:
            return generic
        parse = datetime.fromisoformat

        def process(value: Any) -> datetime | None:
            # SQLite keeps naive UTC text: read it as UTC in one C call (what ``generic`` does, parse
            # then ``replace(tzinfo=UTC)``, costs five times more, and exports read millions of these).
            if type(value) is str:
                try:
                    parsed = parse(value + "+00:00")
                except ValueError:  # not plain naive ISO text (an offset already?): the general path
                    parsed = None
                if parsed is not None and parsed.tzinfo is not None:  # a bare date drops the offset
                    return parsed
            return generic(value)

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
