"""What the agent keeps on disk: its identity (credential) and its running counters."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rmm_common.errors import ConfigError
from rmm_common.files import write_private

IDENTITY_FILE = "identity.json"
CLIENT_KEY_FILE = "client.key"
RUNTIME_FILE = "runtime.json"
# The report sequence reservation (rmm_agent/sequence.py). A file of its own, not fields of
# runtime.json: an agent rolled back to an older version reads runtime.json, which refuses
# unknown fields.
SEQUENCE_FILE = "sequence.json"

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Identity:
    """Who this agent is to its server, written once at enrollment."""

    agent_id: str
    credential: str
    server: str
    client: str
    site: str
    tags: list[str] = field(default_factory=list)
    insecure: bool = False
    ca_cert_pem: str = ""
    enrolled_at: float = 0.0
    # The server's Ed25519 command key (hex), pinned at enrollment: only commands it signed run.
    command_public_key: str = ""
    # Mutual TLS: the certificate the server issued for this agent's key (client.key beside this
    # file) and the port on the same host where the agent calls with it; empty and 0 without.
    client_cert_pem: str = ""
    mtls_port: int = 0


@dataclass(slots=True)
class Runtime:
    """Counters that must survive restarts."""

    sequence: int = 0
    inventory_acked_hash: str = ""


@dataclass(slots=True)
class SequenceRecord:
    """What sequence.json holds: how far report numbers are reserved, and how they were used."""

    # Every number up to here may have been given to a report: a start never gives them again.
    reserved: int = 0
    # Every number up to here was given to a report or counted in `skipped`.
    accounted: int = 0
    # Numbers skipped at starts after an unclean stop, since enrollment (Report.skipped_sequences).
    skipped: int = 0
    # At the last report: reports waiting in the spool, and its dropped count. If the spool file
    # is found damaged at the next start, these say how many reports were lost with it.
    spool_pending: int = 0
    spool_dropped: int = 0


class StateDir:
    """The agent's state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def ensure(self) -> None:
        """Create the directory, private to the agent's user."""
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create the state directory {self.path}: {exc}") from exc

    @property
    def identity_path(self) -> Path:
        return self.path / IDENTITY_FILE

    def has_identity(self) -> bool:
        """Say whether this agent has enrolled already."""
        return self.identity_path.exists()

    def save_identity(self, identity: Identity) -> None:
        """Store the identity (mode 0600) atomically and durably: after a credential rotation
        the server soon refuses the old one, so a power cut must not bring it back."""
        self.ensure()
        try:
            write_private(self.identity_path, json.dumps(asdict(identity), indent=2).encode())
            if os.name != "nt":  # the rename itself is durable once the directory is synced
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise ConfigError(f"cannot write {self.identity_path}: {exc}") from exc

    def load_identity(self) -> Identity:
        """Read the identity, or raise ConfigError saying how to get one."""
        data = self._read_json(self.identity_path)
        if data is None:
            raise ConfigError(
                f"{self.identity_path} does not exist: enroll first with "
                f"`rmm-agent enroll --server HOST:PORT --token TOKEN --state-dir {self.path}`"
            )
        try:
            return Identity(**data)
        except TypeError as exc:
            raise ConfigError(f"{self.identity_path} is not an agent identity: {exc}") from exc

    def save_client_key(self, key_pem: bytes) -> None:
        """Store the agent's TLS client key (mode 0600); it never leaves the host."""
        self.ensure()
        path = self.path / CLIENT_KEY_FILE
        try:
            write_private(path, key_pem)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc}") from exc

    def load_client_key(self) -> bytes:
        """Read the agent's TLS client key, or raise ConfigError saying how to get one."""
        path = self.path / CLIENT_KEY_FILE
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the TLS client key {path} ({exc.strerror}): restore it or enroll "
                f"again with `rmm-agent enroll --force --state-dir {self.path} ...`"
            ) from exc

    def load_runtime(self) -> Runtime:
        """Read the counters (zero on a new agent)."""
        data = self._read_json(self.path / RUNTIME_FILE)
        if data is None:
            return Runtime()
        try:
            return Runtime(**data)
        except TypeError as exc:
            raise ConfigError(f"{self.path / RUNTIME_FILE} is damaged: {exc}") from exc

    def save_runtime(self, runtime: Runtime) -> None:
        """Store the counters, atomically (the old file or the new one, never half of either).

        Written after every report, without fsync: a number is never reused because of
        sequence.json's reservation (rmm_agent/sequence.py, synced once a block), not this file;
        a power cut that loses its last write costs at most an inventory sent again. The fsync
        cost about 0.5 ms of CPU a cycle (bench/README.md, agent_footprint).
        """
        # Plain strings and descriptor calls, no pathlib or file object, fchmod rather than
        # chmod by path: 175 -> 115 us a report (measured), and it is written at every report.
        path = os.path.join(self.path, RUNTIME_FILE)
        tmp = path + ".tmp"
        data = memoryview(json.dumps(asdict(runtime)).encode())
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                while data:
                    data = data[os.write(fd, data) :]
                os.fchmod(fd, 0o600)  # an existing .tmp keeps its mode through O_CREAT
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @property
    def sequence_path(self) -> Path:
        return self.path / SEQUENCE_FILE

    def load_sequence(self) -> SequenceRecord | None:
        """Read sequence.json: a default record when there is none (a new agent, or one that
        predates the file), None when it exists but cannot be read (the caller assumes the most
        that can have been reserved)."""
        path = self.sequence_path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            known = {k: int(v) for k, v in data.items() if k in SequenceRecord.__slots__}
            return SequenceRecord(**known)
        except FileNotFoundError:
            return SequenceRecord()
        except (OSError, ValueError, TypeError) as exc:
            log.warning("cannot read %s (%s): assuming a whole block of numbers used", path, exc)
            return None

    def save_sequence(self, record: SequenceRecord, durable: bool) -> None:
        """Write sequence.json; `durable`: with fsync of the file and the directory (a
        reservation must be on disk before a number it covers is used), else a plain atomic
        replace (the per-report hints, for which a crash costs only precision)."""
        data = json.dumps(asdict(record)).encode()
        path = self.sequence_path
        if durable:
            write_private(path, data)
            if os.name != "nt":
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            return
        tmp = path.with_name(path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @staticmethod
    def _read_json(path: Path) -> Any:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); restore it or re-enroll") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} does not hold a JSON object; restore it or re-enroll")
        return data
