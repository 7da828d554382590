"""Alembic environment: runs on the connection the caller hands over (see store/migrate.py)."""

from __future__ import annotations

from alembic import context

from hypereal.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through `hypereal migrate`, which supplies the connection.")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
