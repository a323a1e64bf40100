"""Alembic migrations of the server's database, shipped with the code (see
rmm_server/storage/migrate.py, which configures Alembic without an alembic.ini)."""
