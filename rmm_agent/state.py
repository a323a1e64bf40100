"""What the agent keeps on disk: its identity (credential) and its running counters."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rmm_common.errors import ConfigError
from rmm_common.files import write_private

IDENTITY_FILE = "identity.json"
CLIENT_KEY_FILE = "client.key"
RUNTIME_FILE = "runtime.json"


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
        """Store the counters durably (a sequence number is never reused)."""
        write_private(self.path / RUNTIME_FILE, json.dumps(asdict(runtime)).encode())

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
