"""Alembic environment: uses the connection handed in by faceapi.adapters.store.migrate, or
builds one from FACEAPI_* settings when Alembic is run by hand."""

from __future__ import annotations

from alembic import context

from faceapi.adapters.store.db import make_engine
from faceapi.adapters.store.tables import metadata
from faceapi.config import Settings

config = context.config


def run_migrations_offline() -> None:
    context.configure(url=Settings.from_env().resolved_database_url, target_metadata=metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                          transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(Settings.from_env().resolved_database_url)
    try:
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=metadata, render_as_batch=True,
                              transactional_ddl=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
