"""JSON an agent sends (collector info, inventory) is refused at ingest when nested too deep, and
a row stored before that check (or written around it) cannot break a read."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import grpc
import pytest

from rmm_common.boundedjson import MAX_JSON_DEPTH, json_depth, load_json_bounded
from rmm_common.errors import InvalidArgument
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc
from rmm_server.reports import (
    MAX_INFO_CONTAINERS,
    MAX_INVENTORY_CONTAINERS,
    LazyInfo,
    compress,
    inventory_hash,
    readable_json,
    software_changes,
    validate_report,
)
from tests.helpers import ServerProcess, enroll_agent, rmm, rmm_json


def nested(depth: int, leaf: str = "1") -> bytes:
    """A JSON document of `depth` arrays and objects, alternating, around `leaf`."""
    opening = "".join('{"a":' if level % 2 else "[" for level in range(depth))
    closing = "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    return (opening + leaf + closing).encode()


def report(sequence: int, info: bytes = b"{}", inventory: bytes | None = None) -> agent_pb2.Report:
    made = agent_pb2.Report(
        sequence=sequence,
        collected_at=time.time(),
        interval_seconds=30,
        host=agent_pb2.HostFacts(hostname="deep", os="linux"),
    )
    made.collectors.add(name="processes", ok=True, info_json=info)
    if inventory is not None:
        made.inventory.json = inventory
        made.inventory.hash = inventory_hash(inventory)
    return made


def test_depth_is_measured_exactly_and_without_recursion() -> None:
    assert json_depth(json.loads(nested(MAX_JSON_DEPTH))) == MAX_JSON_DEPTH
    assert json_depth(5) == 0 and json_depth([]) == 1
    deep: list[object] = []
    for _ in range(100_000):  # far past the interpreter's recursion limit
        deep = [deep]
    assert json_depth(deep) == 100_001


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 200_000])
def test_deep_info_and_inventory_are_refused_at_ingest(depth: int) -> None:
    document = nested(depth)
    with pytest.raises(InvalidArgument) as info:
        validate_report(report(1, info=document))
    if depth <= MAX_INFO_CONTAINERS:
        assert str(info.value).startswith("report 1, collector 'processes': info_json nests arrays")
        assert f"at most {MAX_JSON_DEPTH} levels are accepted" in str(info.value)
    else:  # more arrays than a report may bring at all: refused before it is decoded
        assert f"info_json holds over {MAX_INFO_CONTAINERS:,} arrays and objects" in str(info.value)
    with pytest.raises(InvalidArgument) as inventory:
        validate_report(report(1, inventory=document))
    if depth <= MAX_INVENTORY_CONTAINERS:
        assert "report 1: inventory.json nests arrays and objects" in str(inventory.value)
    else:
        assert f"inventory.json holds {depth:,} arrays and objects" in str(inventory.value)


def test_depth_within_the_limit_and_brackets_in_strings_pass() -> None:
    validate_report(report(1, info=nested(MAX_JSON_DEPTH), inventory=nested(MAX_JSON_DEPTH)))
    # Brackets inside strings are text, not nesting.
    # (Fewer than the report's limit on '[' and '{', which counts those in strings too.)
    text = json.dumps({"cmdline": "[" * 5_000, "list": [{"x": "{" * 100}] * 40}).encode()
    validate_report(report(1, info=text))
    validate_report(report(1, info=b"not json at all"))  # shown as such by readers


def test_inventory_over_its_size_limit_is_refused() -> None:
    big = json.dumps({"software": "x" * (8 * 1024 * 1024)}).encode()
    with pytest.raises(InvalidArgument, match=r"inventory\.json is 8388624 bytes; at most 8388608"):
        validate_report(report(1, inventory=big))


def test_stored_deep_documents_read_as_placeholders() -> None:
    deep = nested(100_000)
    assert "nested too deeply" in load_json_bounded(deep, "x")["error"]
    assert "nests 40 levels deep" in load_json_bounded(nested(40), "x")["error"]
    assert json.loads(readable_json(deep, "the stored inventory"))["error"].startswith(
        "the stored inventory is nested too deeply"
    )
    assert readable_json(b'{"a": [1]}', "x") == b'{"a": [1]}'
    stored = report(1, info=deep)
    assert "nested too deeply" in LazyInfo(stored)["processes"]["error"]
    # A software diff against a stored deep inventory is no change, not a crash.
    assert software_changes(deep, b'{"software": {"packages": [{"name": "a"}]}}') == ((), ())


def test_a_stored_deep_row_does_not_break_get_agent_cli_or_the_stream(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Rows written straight into the database, as an older server stored them: GetAgent,
    `rmm agents show` (text and JSON) and the agent's next report with an inventory work."""
    agent_id = enroll_agent(server, tmp_path / "agent")
    credential = json.loads((tmp_path / "agent" / "identity.json").read_text())["credential"]
    channel = grpc.insecure_channel(server.grpc_address)
    try:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        metadata = bearer_metadata(credential)
        inventory = b'{"software": {"packages": [{"name": "a", "version": "1"}]}}'
        (ack,) = stub.StreamReports(
            iter([report(1, inventory=inventory)]), metadata=metadata, timeout=30
        )
        assert not ack.rejected
        deep = nested(100_000)
        with sqlite3.connect(server.data_dir / "rmm.sqlite3", timeout=30) as db:
            db.execute(
                "UPDATE reports SET body = ? WHERE agent_id = ? AND sequence = 1",
                (compress(report(1, info=deep).SerializeToString()), agent_id),
            )
            db.execute("UPDATE agents SET inventory = ? WHERE id = ?", (compress(deep), agent_id))

        shown = rmm_json(server, "agents", "show", agent_id)
        assert "is nested too deeply to decode" in shown["info"]["processes"]["error"]
        assert "the stored inventory is nested too deeply" in shown["inventory"]["error"]
        text = rmm(server, "agents", "show", agent_id)
        assert agent_id in text.stdout and "Traceback" not in text.stderr

        # The stream goes on: the next inventory is compared with the stored one.
        newer = b'{"software": {"packages": [{"name": "b", "version": "2"}]}}'
        (ack,) = stub.StreamReports(
            iter([report(2, inventory=newer)]), metadata=metadata, timeout=30
        )
        assert not ack.rejected and ack.sequence == 2
        # And a deep document sent now is refused by name, the stream still answering.
        acks = list(
            stub.StreamReports(
                iter([report(3, info=deep), report(4)]), metadata=metadata, timeout=30
            )
        )
        assert "info_json holds over" in acks[0].rejected  # 100,000 arrays: over the limit
        assert not acks[1].rejected
        assert rmm_json(server, "agents", "show", agent_id)["last_sequence"] == 4
    finally:
        channel.close()
