"""A burst of new calls, as when a fleet reconnects at once, is served, none ended by gRPC core.

gRPC core holds new calls until the Python server takes them (one at a time, on its event loop)
and by default ends those beyond 1,000 waiting at random and all beyond 3,000, as CANCELLED or
"INTERNAL: Internal error from Core". Against a real server, 5,000 calls opened at once over 50
connections (how 1,700 agents reconnecting open their streams) lost a third to two thirds of
them that way before rmm_server/listeners.py let every admitted agent's calls wait.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import grpc
import grpc.aio

from rmm_common.tokens import bearer_metadata
from rmm_proto import operator_pb2, operator_pb2_grpc
from rmm_server.listeners import DescriptorBudget, grpc_listener_options, pending_calls
from tests.helpers import ServerProcess, free_port

CONNECTIONS = 50
CALLS_PER_CONNECTION = 100  # the server's max_concurrent_streams: all of them open at once


async def burst(address: str, token: str) -> Counter[str]:
    """Open every call at once; count how each ended."""
    options = [("grpc.use_local_subchannel_pool", 1)]  # a TCP connection each, as agents
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(CONNECTIONS)]
    outcomes: Counter[str] = Counter()
    try:
        await asyncio.gather(*(channel.channel_ready() for channel in channels))

        async def call(channel: grpc.aio.Channel) -> None:
            stub = operator_pb2_grpc.OperatorServiceStub(channel)
            try:
                await stub.ListOperators(
                    operator_pb2.ListOperatorsRequest(),
                    metadata=bearer_metadata(token),
                    timeout=120,
                )
            except grpc.aio.AioRpcError as error:
                outcomes[f"{error.code().name}: {error.details()}"] += 1
            else:
                outcomes["ok"] += 1

        await asyncio.gather(
            *(call(channel) for channel in channels for _ in range(CALLS_PER_CONNECTION))
        )
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    return outcomes


def test_a_burst_of_5000_calls_is_served_whole(tmp_path: Path) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--operator-rate", "off"],
    ).start()
    try:
        outcomes = asyncio.run(burst(server.grpc_address, server.admin_token))
    finally:
        server.stop()
    assert outcomes == Counter({"ok": CONNECTIONS * CALLS_PER_CONNECTION}), outcomes


def test_every_admitted_agent_may_have_its_calls_waiting() -> None:
    budget = DescriptorBudget.for_limit(20_000)
    options = dict(grpc_listener_options(budget))
    assert options["grpc.server.max_pending_requests"] == pending_calls(budget)
    assert options["grpc.server.max_pending_requests_hard_limit"] == pending_calls(budget)
    assert pending_calls(budget) >= 3 * budget.grpc_connections
    # A small budget keeps at least gRPC's own hard limit.
    assert pending_calls(DescriptorBudget.for_limit(256)) == 3_000
