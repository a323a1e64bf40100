"""A request the server refuses for an operator's argument names the flag the operator typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import ServerProcess, enroll_agent, rmm


@pytest.mark.linux
def test_an_expiry_out_of_range_names_the_flag(server: ServerProcess, tmp_path: Path) -> None:
    agent_id = enroll_agent(server, tmp_path / "agent")
    refused = rmm(
        server, "run", "--target", agent_id, "--command", "true", "--queue-offline",
        "--expires", "60d", "--detach", check=False,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "the command would expire after 60d (--expires): keep it between 1s and 30d" in (
        refused.stderr
    )
