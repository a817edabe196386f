"""Alembic environment for two databases: the portal's (default bind) and the platform's ("platform").

Each bind keeps its own version table (``alembic_version`` / ``alembic_version_platform``) so both
may live in one database (the default) or in two. They are migrated one after the other, each in its
own transaction (SQLite allows one writer per file), and autogenerate compares each bind only with
its own tables, so ``flask db check`` sees no false drift when both share a database.
"""

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

config = context.config
if config.config_file_name and not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db
bind_names = list((current_app.config.get("SQLALCHEMY_BINDS") or {}).keys())
VERSION_TABLES = {"": "alembic_version", **{name: f"alembic_version_{name}" for name in bind_names}}


def get_engine(bind_key=None):
    return target_db.engines.get(bind_key or None)


def get_metadata(bind):
    return target_db.metadatas[bind or None]


def include_name_for(bind):
    own = set(get_metadata(bind).tables)

    def include_name(name, type_, parent_names):
        if type_ == "table":
            return name in own
        return True

    return include_name


def run_migrations_offline():
    for name in ["", *bind_names]:
        url = get_engine(name).url.render_as_string(hide_password=False)
        with open(f"{name or 'default'}.sql", "w") as buffer:
            context.configure(
                url=url,
                output_buffer=buffer,
                target_metadata=get_metadata(name),
                literal_binds=True,
                version_table=VERSION_TABLES[name],
            )
            with context.begin_transaction():
                context.run_migrations(engine_name=name)


def run_migrations_online():
    def process_revision_directives(context_, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if all(ops.is_empty() for ops in script.upgrade_ops_list):
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)

    for name in ["", *bind_names]:
        logger.info("Migrating database %s", name or "<default>")
        with get_engine(name).connect() as connection:
            context.configure(
                connection=connection,
                upgrade_token=f"{name}_upgrades",
                downgrade_token=f"{name}_downgrades",
                target_metadata=get_metadata(name),
                version_table=VERSION_TABLES[name],
                include_name=include_name_for(name),
                **conf_args,
            )
            with context.begin_transaction():
                context.run_migrations(engine_name=name)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
