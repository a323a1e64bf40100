"""The server's command key: every command an agent runs is signed with it (Ed25519).

The private key lives in the data directory (mode 0600) and is created on first start; agents pin
its public half at enrollment, so a stolen operator token or a forged message on the wire cannot
make an agent run anything the server did not issue.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rmm_common.errors import ConfigError
from rmm_common.files import write_private
from rmm_proto import commands_pb2

log = logging.getLogger(__name__)
KEY_FILE = "command-signing.key"


class CommandSigner:
    """Sign serialized commands with the server's Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def load_or_create(cls, data_dir: Path) -> CommandSigner:
        """Read the key from `data_dir`, creating it (mode 0600) on the first start."""
        path = data_dir / KEY_FILE
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_private(path, pem)
            log.info("created the command signing key %s", path)
            return cls(key)
        except OSError as exc:
            raise ConfigError(f"cannot read the command signing key {path}: {exc}") from exc
        try:
            loaded = serialization.load_pem_private_key(pem, password=None)
        except ValueError as exc:
            raise ConfigError(
                f"{path} is not a PEM private key ({exc}); restore it from a backup — a new key "
                "means every agent must enroll again"
            ) from exc
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ConfigError(f"{path} holds a {type(loaded).__name__}, not an Ed25519 key")
        return cls(loaded)

    def sign(self, command: commands_pb2.Command) -> commands_pb2.SignedCommand:
        """Serialize `command` once and sign exactly those bytes."""
        payload = command.SerializeToString(deterministic=True)
        return commands_pb2.SignedCommand(command=payload, signature=self._key.sign(payload))

    def sign_payload(self, payload: bytes) -> bytes:
        """Sign bytes that are not a command (an audit checkpoint). The caller starts them
        with a context no `Command` parses as, so the signature cannot pass for a command's."""
        return self._key.sign(payload)
