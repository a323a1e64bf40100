"""`rmm-agent launch` as a person runs it: its errors come out through the agent's entry point."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import agent_cmd


def test_launch_outside_an_archive_says_how_and_exits_2(tmp_path: Path) -> None:
    result = agent_cmd("launch", "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 2
    assert result.stderr.startswith("rmm-agent: `rmm-agent launch` installs the archive it runs")
    assert not (tmp_path / "state").exists()


def test_launch_into_an_unwritable_state_dir_exits_2(tmp_path: Path) -> None:
    archive = tmp_path / "rmm-agent.pyz"
    archive.write_bytes(b"not used")
    state = tmp_path / "state"
    state.mkdir()
    (state / "agent").write_text("a file where the launcher's directory goes")
    result = agent_cmd("launch", "--state-dir", str(state), "--archive", str(archive))
    assert result.returncode == 2
    assert result.stderr.startswith(f"rmm-agent: cannot install the agent into {state}/agent:")
