"""runtime.json, written at every report: replaced whole, private, the old one kept on failure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from rmm_agent.state import Runtime, StateDir


def test_runtime_is_replaced_whole_and_private_even_over_a_leftover_tmp(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    leftover = tmp_path / "runtime.json.tmp"  # a crash between writing it and the rename
    leftover.write_text("{half")
    leftover.chmod(0o644)
    state.save_runtime(Runtime(sequence=7, inventory_acked_hash="ab" * 32))
    assert state.load_runtime() == Runtime(sequence=7, inventory_acked_hash="ab" * 32)
    assert stat.S_IMODE((tmp_path / "runtime.json").stat().st_mode) == 0o600
    assert not leftover.exists()
    state.save_runtime(Runtime(sequence=8))
    assert state.load_runtime().sequence == 8


def test_a_failed_save_raises_and_leaves_the_old_file(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.save_runtime(Runtime(sequence=3))
    (tmp_path / "runtime.json.tmp").mkdir()  # the temporary name cannot be opened as a file
    with pytest.raises(OSError):
        state.save_runtime(Runtime(sequence=4))
    assert state.load_runtime().sequence == 3
