"""/metrics fragments rendered with the report's shape keys (line heads once per shape and
agent labels) are the fragments rendered sample by sample, whatever the values, cuts and labels."""

from __future__ import annotations

import math
import random
import time

from rmm_proto import agent_pb2, common_pb2
from rmm_server.exposition import ExportBudget, render_agent_fragments
from rmm_server.report_shapes import ReportShapes
from rmm_server.storage import AgentRecord


def record(client: str = 'ac"me') -> AgentRecord:
    return AgentRecord(
        id="a1",
        credential_hash="h",
        client=client,
        site="hq",
        enrolled_at=0,
        hostname="host-a1",
        interval_seconds=30,
    )


def report(sequence: int, rng: random.Random, mounts: int) -> agent_pb2.Report:
    values = [0.0, -0.0, 1.0, 0.25, 1e20, math.nan, math.inf, -math.inf, 3.0]
    disks = agent_pb2.CollectorResult(name="disks", ok=True, duration_seconds=0.002)
    for index in range(mounts):
        disks.samples.append(
            common_pb2.Sample(
                name="disk_usage_ratio",
                value=rng.choice(values),
                labels={"mountpoint": f"/m{index}", "device": 'sd"a\\'},
            )
        )
    cpu = agent_pb2.CollectorResult(name="cpu", ok=rng.random() < 0.8, duration_seconds=0.001)
    cpu.samples.append(common_pb2.Sample(name="cpu_usage_ratio", value=rng.choice(values)))
    return agent_pb2.Report(
        sequence=sequence,
        collected_at=time.time(),
        interval_seconds=30,
        collectors=[disks, cpu],
        dropped_reports=sequence % 3,
    )


def test_fragments_from_shape_keys_are_the_fragments_sample_by_sample() -> None:
    rng = random.Random(16)
    shapes = ReportShapes()
    for sequence in range(1, 400):
        agent = record(client=rng.choice(['ac"me', "other"]))  # its labels change now and then
        sent = report(sequence, rng, mounts=rng.choice([3, 3, 3, 5]))  # its shape too
        series = shapes.validate(agent.id, sent)
        shape = shapes.shape_of(agent.id)
        assert shape is not None
        budget = rng.choice(
            [None, ExportBudget(max_series=4, max_bytes=10**9), ExportBudget(10**6, 400)]
        )
        with_keys = render_agent_fragments(agent, sent, series, budget, shape.keys)
        alone = render_agent_fragments(agent, sent, series, budget)
        assert with_keys == alone, sequence
