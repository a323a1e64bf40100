"""The HTTP listener's TLS context, from the certificate and key the gRPC port serves."""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

from rmm_server.tls import ServerTls


def http_ssl_context(server_tls: ServerTls) -> ssl.SSLContext:
    """Return a server-side TLS context serving `server_tls`'s chain and key (TLS 1.2 and up)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # ssl loads a chain and key only from files: write them to a private directory for the
    # moment it takes, and remove them (the key stays where the server keeps it anyway).
    with tempfile.TemporaryDirectory(prefix="rmm-http-tls-") as folder:
        chain, key = Path(folder) / "chain.pem", Path(folder) / "key.pem"
        for path, data in ((chain, server_tls.chain_pem), (key, server_tls.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(chain, key)
    return context
