"""RowText: an agent's `rmm agents list --output json` row with its two time-dependent values put
in at listing time is the text json.dumps writes for agent_row, whatever the row holds."""

from __future__ import annotations

import json
import math

import pytest

from rmm_common.agent_rows import RowText, agent_row
from rmm_proto import operator_pb2

SUMMARIES = [
    operator_pb2.AgentSummary(
        id="a" * 32,
        hostname='quo"te\\back/slash ünï 日本 \U0001d518 \u2028 \x7f',
        client="acme",
        site="hq",
        tags=["web", "db", "ünï", 'a"b'],
        os="linux",
        os_name="Debian",
        os_version="12",
        enrolled_at=1.0,
        last_seen=1_796_000_000.123456,
        online=True,
        interval_seconds=30,
        cpu_usage_ratio=0.1 + 0.2,
        memory_used_ratio=math.nan,
        disk_used_ratio_max=1e-300,
        disk_used_ratio_max_mountpoint="/",
        uptime_seconds=math.inf,
        collector_errors=2**32 - 1,
        last_sequence=2**64 - 1,
        agent_version="1.0",
    ),
    operator_pb2.AgentSummary(id="b", client="c", site="s", revoked_at=5.5, enrolled_at=3),
    operator_pb2.AgentSummary(id="c", client="c", site="s", tags=["only"], last_seen=7.0),
]


@pytest.mark.parametrize("summary", SUMMARIES, ids=["odd", "revoked-never-seen", "plain"])
@pytest.mark.parametrize("online", [True, False])
def test_row_text_is_json_dumps_of_agent_row(
    summary: operator_pb2.AgentSummary, online: bool
) -> None:
    now = 1_796_000_123.987
    listed = operator_pb2.AgentSummary()
    listed.CopyFrom(summary)
    listed.online = online
    expected = json.dumps([agent_row(listed, now)], indent=2, sort_keys=True, allow_nan=False)
    assert "[\n" + RowText.of(summary).text(online, now) + "\n]" == expected
