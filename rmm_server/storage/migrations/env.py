"""Alembic's environment: runs on the connection rmm_server.storage.migrate hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from rmm_server.storage import schema
from rmm_server.storage.migrate import compare_options

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "rmm migrations run on a connection from rmm_server.storage.migrate "
        "(`rmm-server migrate`), not from the alembic command line"
    )
context.configure(
    connection=connection,
    target_metadata=schema.metadata,
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    **compare_options(),
)
with context.begin_transaction():
    context.run_migrations()
