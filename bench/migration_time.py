"""Time the schema migration from an empty database to head, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.migration_time [--runs 5] [--pg postgresql://...]

Each run migrates a new SQLite file and a new PostgreSQL database (created from template0 and
dropped afterwards, on the server --pg names: default postgres@127.0.0.1:5432/test); prints
median, min and max per database.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from rmm_server.storage.migrate import engine_url, upgrade
from rmm_server.storage.store import create_store_engine


def timed(url: str) -> float:
    engine = create_store_engine(url)
    try:
        started = time.perf_counter()
        upgrade(engine)
        return time.perf_counter() - started
    finally:
        engine.dispose()


def sqlite_run() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return timed(f"sqlite:///{Path(tmp) / 'rmm.sqlite3'}")


def postgres_run(admin_url: str) -> Callable[[], float]:
    def run() -> float:
        admin = create_engine(
            engine_url(admin_url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
        )
        name = f"rmm_bench_{secrets.token_hex(6)}"
        try:
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name} TEMPLATE template0"))
            try:
                url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
                return timed(url)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        finally:
            admin.dispose()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    sqlite_run()  # imports and the revision scripts loaded once, outside the timings
    for label, run in (("sqlite", sqlite_run), ("postgresql", postgres_run(args.pg))):
        times = [run() for _ in range(args.runs)]
        print(
            f"{label}: empty -> head median {statistics.median(times):.3f}s "
            f"min {min(times):.3f}s max {max(times):.3f}s ({args.runs} runs)"
        )


if __name__ == "__main__":
    main()
