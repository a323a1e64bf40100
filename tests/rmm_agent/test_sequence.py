"""Report sequence numbers on a real state directory: reserved before use, never given twice."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rmm_agent.sequence import Sequencer, SequenceUnavailable
from rmm_agent.state import SEQUENCE_FILE, StateDir


def start(state: StateDir, counter: int = 0, spool_last: int = 0, block: int = 8) -> Sequencer:
    """What the runner does at start: read sequence.json, resume."""
    return Sequencer(state, counter, spool_last, state.load_sequence(), block=block)


def saved(state: StateDir) -> dict[str, int]:
    data: dict[str, int] = json.loads((state.path / SEQUENCE_FILE).read_text())
    return data


def block_writes(state: StateDir) -> None:
    """Make every write of sequence.json fail, for root too: its temporary name is a directory."""
    (state.path / (SEQUENCE_FILE + ".tmp")).mkdir()


def allow_writes(state: StateDir) -> None:
    (state.path / (SEQUENCE_FILE + ".tmp")).rmdir()


def test_a_block_is_on_disk_before_its_first_number_is_used(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    sequences = start(state)
    assert sequences.next() == 1
    assert saved(state)["reserved"] == 8
    assert [sequences.next() for _ in range(7)] == [2, 3, 4, 5, 6, 7, 8]
    assert saved(state)["reserved"] == 8  # one write a block, not a number
    assert sequences.next() == 9
    assert saved(state)["reserved"] == 16


def test_a_clean_stop_gives_the_rest_of_its_block_back(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    sequences = start(state)
    for _ in range(3):
        sequences.next()
    sequences.close(pending=0, dropped=0)
    again = start(state, counter=3)
    assert again.next() == 4 and again.skipped == 0


def test_after_a_crash_the_counter_on_disk_lagging_no_number_is_given_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding: the disk filled, runtime.json stayed at 7 while reports 8..17 reached the
    server, the agent was SIGKILLed and its next start gave 8..17 again."""
    state = StateDir(tmp_path)
    first = start(state, block=32)
    used = [first.next() for _ in range(17)]
    assert used[-1] == 17
    # SIGKILL: no close(); runtime.json says 7 and the spool held nothing newer.
    caplog.set_level(logging.WARNING)
    second = start(state, counter=7, block=32)
    number = second.next()
    assert number > 17 and number == 33
    assert second.skipped == 32 - 7
    assert "numbers 8..32" in caplog.text and "are skipped" in caplog.text
    # The skip is counted once: a third start after a clean stop adds nothing.
    second.close(pending=0, dropped=0)
    third = start(state, counter=number)
    assert third.next() == number + 1 and third.skipped == 25


def test_a_crash_before_the_first_report_of_a_run_does_not_count_the_skip_twice(
    tmp_path: Path,
) -> None:
    state = StateDir(tmp_path)
    first = start(state)
    first.next()  # reserved 1..8, used 1; then SIGKILL
    second = start(state, counter=1)
    assert second.next() == 9 and second.skipped == 7  # reserved 9..16; SIGKILL again
    third = start(state, counter=1)  # runtime.json never saw 9 (the disk was full, say)
    assert third.next() == 17
    # 2..8 once, then 9..16: 9 was given, but nothing on disk says so; whether the server has it
    # only the server knows, so it is among the skipped (an upper bound on what is missing).
    assert third.skipped == 7 + 8


def test_no_number_is_given_while_the_reservation_cannot_be_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = StateDir(tmp_path)
    sequences = start(state, block=2)
    assert [sequences.next(), sequences.next()] == [1, 2]
    block_writes(state)
    caplog.set_level(logging.WARNING)
    for _ in range(3):
        with pytest.raises(SequenceUnavailable, match=f"cannot reserve .*{SEQUENCE_FILE}"):
            sequences.next()
    assert caplog.text.count("No report is made until then") == 1  # said once
    allow_writes(state)
    assert sequences.next() == 3  # nothing was used while it failed: no gap
    assert "reports resume" in caplog.text


def test_an_unreadable_reservation_assumes_a_whole_block_was_used(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    (tmp_path / SEQUENCE_FILE).write_bytes(b"\0\0\0")  # a power cut during a write
    sequences = start(state, counter=5)
    assert sequences.next() == 5 + 8 + 1
    assert sequences.skipped == 8


def test_an_agent_without_the_file_resumes_after_its_counter_and_spool(tmp_path: Path) -> None:
    """An agent upgraded from a version without sequence.json: no reservation, no gap."""
    state = StateDir(tmp_path)
    assert start(state, counter=40, spool_last=42).next() == 43


def test_numbers_the_server_holds_are_not_given_again_once_it_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A state directory lost (or restored from an old copy) starts again low; the server's
    refusal of a reused number says where its stored reports end."""
    state = StateDir(tmp_path)
    sequences = start(state)
    assert sequences.next() == 1
    caplog.set_level(logging.WARNING)
    sequences.resume_at(5001)
    assert "report numbers resume at 5001" in caplog.text
    assert sequences.next() == 5001 and sequences.skipped == 0  # stored, not skipped
    assert saved(state)["reserved"] >= 5001  # reserved before use, like any number
    sequences.resume_at(10)  # an older refusal arriving late moves nothing back
    assert sequences.next() == 5002
