"""`rmm-server audit verify`: check the audit chain and the signed checkpoints straight from the
data directory and the database, with no server running (it may be down, or not trusted)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from rmm_common.errors import ConfigError
from rmm_server.audit import AuditLog, VerifyResult
from rmm_server.audit_checkpoints import key_fingerprint, load_public_key, read_directory
from rmm_server.storage.audit import AuditStore
from rmm_server.storage.store import Store, create_store_engine, sqlite_url


def verify_offline(
    data_dir: Path, db_url: str | None, given: Sequence[Path] = ()
) -> tuple[VerifyResult, str]:
    """Verify the chain in the database against every checkpoint file in `data_dir` and the
    files `given`; return the result and the signing key's fingerprint.

    Nothing is written: no schema migration, no checkpoint, no key created.
    """
    public_key = load_public_key(data_dir)
    if db_url is None:
        if not (data_dir / "rmm.sqlite3").is_file():
            raise ConfigError(
                f"no database at {data_dir / 'rmm.sqlite3'}: give the server's --db URL when it "
                "uses PostgreSQL"
            )
        db_url = sqlite_url(data_dir)
    extra: list[tuple[str, list[str]]] = []
    for path in given:
        try:
            extra.append((str(path), path.read_text(errors="replace").splitlines()))
        except OSError as exc:
            raise ConfigError(f"cannot read the checkpoint file {path}: {exc}") from exc
    engine = create_store_engine(db_url)
    try:
        found = read_directory(data_dir, public_key, extra=extra)
        result = AuditLog(AuditStore(Store(engine))).verify(found=found)
    finally:
        engine.dispose()
    return result, key_fingerprint(public_key)


def report(result: VerifyResult, key: str) -> tuple[list[str], list[str]]:
    """Return the lines to print and the problems (each printed after BROKEN:)."""
    lines: list[str] = []
    problems: list[str] = []
    if result.problem is None:
        span = f" (seqs {result.first_seq}..{result.last_seq})" if result.entries else ""
        archived = (
            f"; seqs 1..{result.archived_through} are archived" if result.archived_through else ""
        )
        lines.append(f"database: ok, {result.entries} entries{span}{archived}")
        if result.entries:
            lines.append(f"head: {result.last_seq}:{result.last_hash}")
    else:
        problems.append(f"database: {result.problem_text}")
    problems.extend(f"checkpoints: {text}" for text in result.checkpoint_problems)
    newest = result.newest_checkpoint
    if newest is None:
        lines.append(f"checkpoints: none found (signing key {key[:16]}...)")
    elif not result.checkpoint_problems:
        written = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(newest.at))
        lines.append(
            f"checkpoints: ok, {result.checkpoints} signed checkpoints match the chain, the newest "
            f"seq {newest.seq} of {written} (key {key[:16]}...)"
        )
    return lines, problems
