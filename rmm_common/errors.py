"""One error hierarchy for every package; the gRPC edge and the CLI map it to codes."""

from __future__ import annotations


class RmmError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(RmmError):
    """A configuration file or option is wrong."""


class InvalidArgument(RmmError):
    """A request or message carries a value that is not acceptable."""


class NotFound(RmmError):
    """The named thing does not exist."""


class AlreadyExists(RmmError):
    """The thing to create exists already."""


class Unauthenticated(RmmError):
    """No credential, or one that is wrong, expired or revoked."""


class PermissionDenied(RmmError):
    """The caller is known but may not do this."""


class PolicyError(RmmError):
    """A policy file is wrong; `errors` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} policy error(s):\n" + "\n".join(errors))
        self.errors = list(errors)


class StorageError(RmmError):
    """The database failed or is unreachable."""


class Unavailable(RmmError):
    """The server cannot serve this now (it is stopping); the caller retries, here or elsewhere."""
