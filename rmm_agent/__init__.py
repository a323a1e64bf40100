"""The RMM agent: collects a managed host's health and reports it to the server."""

# The release, one constant shared with the server and the CLI; named here too because the
# agent's modules, tests/packaging and the self-update test read it as rmm_agent.__version__.
from rmm_common import __version__
from rmm_common.grpclog import quiet_grpc_core

__all__ = ["__version__"]

# Before any module of this package imports grpc: see quiet_grpc_core.
quiet_grpc_core()
