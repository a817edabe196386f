"""Migrations: upgrade from empty, downgrade to base, upgrade again, and no drift (``flask db check``)."""

from __future__ import annotations

from flask_migrate import check, downgrade, upgrade
from sqlalchemy import inspect

from app.extensions import db


def table_names() -> set[str]:
    names: set[str] = set()
    for engine in db.engines.values():
        names |= set(inspect(engine).get_table_names())
    return names


def test_migrations_round_trip_without_drift(app):
    upgrade()
    assert {"dsr_request", "audit_event", "platform_usage", "platform_account"} <= table_names()
    downgrade(revision="base")
    assert table_names() <= {"alembic_version", "alembic_version_platform"}
    upgrade()
    assert {"dsr_request", "token", "staff_user", "platform_api_key"} <= table_names()
    check()  # raises if models and schema differ


def test_audit_table_refuses_update_and_delete_on_postgresql(app):
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    if db.engine.dialect.name != "postgresql":
        pytest.skip("the append-only trigger exists on PostgreSQL (TEST_DATABASE_URL)")
    from app.audit import Actor, record_event

    record_event("test.event", Actor.system())
    db.session.commit()
    for stmt in ("UPDATE audit_event SET event = 'x'", "DELETE FROM audit_event"):
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text(stmt))
        db.session.rollback()
