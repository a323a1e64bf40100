"""Keep gRPC's C core from printing its own log lines on stderr for ordinary mistakes."""

from __future__ import annotations

import os


def quiet_grpc_core() -> None:
    """Raise the C core's log threshold to ERROR unless the user chose one.

    Without this grpcio 1.6x+ prints INFO lines such as "ssl_transport_security.cc:2563]
    Handshake failed ... CERTIFICATE_VERIFY_FAILED" on stderr, beside (and before) our own message
    that says what is wrong and how to fix it. The C core reads GRPC_VERBOSITY once, when grpc is
    first imported, so this runs from the packages' __init__ before any of their modules import
    grpc. GRPC_VERBOSITY=INFO (or DEBUG) and GRPC_TRACE still turn the detail back on.
    """
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
