"""Start a shared PostgreSQL test database from none of the app's tables.

Whatever an earlier run (another branch, an interrupted session, the previous chaos run) left there,
a version stamp this checkout does not know would stop ``upgrade``, and old rows would be judged as
this run's. Only the app's own tables, its version tables and its trigger function are dropped,
nothing else in the database.
"""

from __future__ import annotations

import importlib

from sqlalchemy import create_engine, text


def drop_app_tables(url: str) -> None:
    from app.extensions import db

    importlib.import_module("app.models")  # every model registered on db.metadatas
    names = [t.name for md in db.metadatas.values() for t in md.sorted_tables]
    names += ["alembic_version", "alembic_version_platform"]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for name in names:
                conn.execute(text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
            conn.execute(text("DROP FUNCTION IF EXISTS audit_event_append_only() CASCADE"))
    finally:
        engine.dispose()
