"""The `rmm` command line: operate the RMM server."""

from rmm_common.grpclog import quiet_grpc_core

# Before any module of this package imports grpc: see quiet_grpc_core.
quiet_grpc_core()
