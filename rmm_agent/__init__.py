"""The RMM agent: collects a managed host's health and reports it to the server."""

from rmm_common.grpclog import quiet_grpc_core

# Before any module of this package imports grpc: see quiet_grpc_core.
quiet_grpc_core()

# Kept in step with pyproject.toml by tests/packaging; a constant, because reading the installed
# metadata at start-up costs the agent about 1 MB of memory and 40 ms on every host.
__version__ = "0.1.0"
