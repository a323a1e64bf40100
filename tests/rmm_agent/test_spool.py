"""The report spool on a real SQLite file: order, bounds, restarts, SIGKILL and a failing disk."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmm_agent.sequence import Sequencer
from rmm_agent.spool import MEMORY_MAX_REPORTS, SPOOL_FILE, Spool
from rmm_agent.state import StateDir
from rmm_proto import agent_pb2


class Clock:
    """A monotonic clock the test moves by hand (the spool's retry timer)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def report(sequence: int, padding: int = 0) -> agent_pb2.Report:
    # Random bytes do not compress: `padding` is (nearly) the bytes the spool stores.
    return agent_pb2.Report(
        sequence=sequence,
        agent_version="t",
        inventory=agent_pb2.Inventory(json=os.urandom(padding)),
    )


def on_disk(spool: Spool) -> bool:
    # A call, not the attribute: the same test expects it to change.
    return spool.on_disk


def sequences(spool: Spool, after: int = 0) -> list[int]:
    return [r.sequence for r in spool.pending(after, limit=100_000)]


def test_reports_come_back_in_order_and_acknowledged_ones_go(tmp_path: Path) -> None:
    spool = Spool(tmp_path / SPOOL_FILE)
    for seq in range(1, 8):
        spool.add(report(seq))
    assert sequences(spool) == [1, 2, 3, 4, 5, 6, 7]
    assert [r.sequence for r in spool.pending(after=2, limit=3)] == [3, 4, 5]
    spool.ack(4)
    assert sequences(spool) == [5, 6, 7]
    assert len(spool) == 3
    assert spool.pending(5, 10)[0].agent_version == "t"  # the whole report, not just its number
    spool.close()
    assert stat.S_IMODE((tmp_path / SPOOL_FILE).stat().st_mode) == 0o600


def test_what_is_spooled_survives_a_restart_and_acks_are_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path / SPOOL_FILE)
    for seq in range(1, 6):
        spool.add(report(seq))
    spool.ack(2)
    spool.close()
    again = Spool(tmp_path / SPOOL_FILE)
    assert sequences(again) == [3, 4, 5]
    assert again.acked == 2 and again.last_sequence == 5
    again.close()


def test_a_sigkilled_process_loses_nothing_it_added(tmp_path: Path) -> None:
    path = tmp_path / SPOOL_FILE
    program = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from rmm_agent.spool import Spool\n"
        "from rmm_proto import agent_pb2\n"
        "spool = Spool(Path(sys.argv[1]))\n"
        "for seq in range(1, 51):\n"
        "    spool.add(agent_pb2.Report(sequence=seq))\n"
        "spool.ack(20)\n"  # written with the next report or within a second: never, here
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", program, str(path)], cwd=Path.cwd())
    assert result.returncode == -9
    spool = Spool(path)
    # Everything not acknowledged is there, in order; acknowledged reports whose deletion had not
    # been written come again, and the server takes them for the duplicates they are.
    kept = sequences(spool)
    assert kept == list(range(kept[0], 51)) and kept[0] <= 21
    spool.close()


def test_the_oldest_go_first_when_the_count_bound_is_reached(tmp_path: Path) -> None:
    spool = Spool(tmp_path / SPOOL_FILE, max_reports=5)
    for seq in range(1, 9):
        spool.add(report(seq))
    assert sequences(spool) == [4, 5, 6, 7, 8]
    assert spool.dropped == 3
    # Acknowledged reports make room: nothing more is dropped.
    spool.ack(8)
    for seq in range(9, 14):
        spool.add(report(seq))
    assert spool.dropped == 3
    spool.close()
    # The count of dropped reports is kept with the spool.
    again = Spool(tmp_path / SPOOL_FILE, max_reports=5)
    assert again.dropped == 3
    assert sequences(again) == [9, 10, 11, 12, 13]
    again.close()


def test_the_byte_bound_drops_the_oldest_too(tmp_path: Path) -> None:
    spool = Spool(tmp_path / SPOOL_FILE, max_bytes=10_000)
    for seq in range(1, 11):
        spool.add(report(seq, padding=3000))  # 3 fit in 10,000 bytes, 4 do not
    assert sequences(spool) == [8, 9, 10]
    assert spool.dropped == 7
    spool.close()


def test_the_dropped_warning_is_logged_once_until_the_server_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rmm_agent.spool")
    spool = Spool(tmp_path / SPOOL_FILE, max_reports=2)
    for seq in range(1, 10):
        spool.add(report(seq))
    full = [r for r in caplog.records if "reached its bound" in r.getMessage()]
    assert len(full) == 1, caplog.text
    assert "raise spool_max_reports" in full[0].getMessage()
    spool.close()


def test_a_writer_and_a_sender_thread_share_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path / SPOOL_FILE)
    received: list[int] = []
    done = threading.Event()

    def send() -> None:
        sent = 0
        while not (done.is_set() and not spool.pending(sent, 1)):
            with spool.changed:
                batch = spool.pending(sent, 7)
                if not batch:
                    spool.changed.wait(0.5)
                    continue
            for item in batch:
                received.append(item.sequence)
                sent = item.sequence
                spool.ack(item.sequence)

    sender = threading.Thread(target=send)
    sender.start()
    for seq in range(1, 501):
        spool.add(report(seq))
    done.set()
    spool.wake()
    sender.join(10)
    assert received == list(range(1, 501))
    assert len(spool) == 0
    spool.close()


# --- a failing disk -------------------------------------------------------------------------


def test_no_directory_where_the_spool_should_be_falls_back_to_memory_and_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A regular file where the state directory should be: no user, root included, can create a
    # file under it (ENOTDIR).
    state = tmp_path / "state"
    state.write_text("not a directory")
    clock = Clock()
    spool = Spool(state / SPOOL_FILE, retry_seconds=60, monotonic=clock)
    assert not on_disk(spool)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert str(state / SPOOL_FILE) in errors[0] and "writable directory" in errors[0]

    for seq in range(1, 6):
        spool.add(report(seq))
    spool.ack(1)
    assert sequences(spool) == [2, 3, 4, 5]

    # Still broken at the next try: no new error line, nothing lost.
    clock.now += 61
    spool.add(report(6))
    assert not on_disk(spool)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1

    # Fixed: the next report after the retry time moves everything to disk.
    state.unlink()
    state.mkdir()
    clock.now += 61
    spool.add(report(7))
    assert on_disk(spool)
    assert "works again" in caplog.text
    assert sequences(spool) == [2, 3, 4, 5, 6, 7]
    spool.close()
    again = Spool(state / SPOOL_FILE)
    assert sequences(again) == [2, 3, 4, 5, 6, 7] and again.acked == 1
    again.close()


def test_memory_fallback_is_bounded_and_counts_what_it_drops(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("")
    clock = Clock()
    spool = Spool(state / SPOOL_FILE, monotonic=clock)
    for seq in range(1, MEMORY_MAX_REPORTS + 11):
        spool.add(report(seq))
    assert len(spool) == MEMORY_MAX_REPORTS
    assert spool.dropped == 10
    assert sequences(spool)[0] == 11
    state.unlink()
    state.mkdir()
    clock.now += 3600
    spool.add(report(MEMORY_MAX_REPORTS + 11))
    assert on_disk(spool)
    spool.close()
    # Drops counted while the disk failed are written once it works.
    again = Spool(state / SPOOL_FILE)
    assert again.dropped == 10
    again.close()


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """Make `paths` unwritable even for root (ext4/xfs `chattr +i`), or skip the test."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr is not installed")
    names = [str(p) for p in paths]
    result = subprocess.run([chattr, "+i", *names], capture_output=True, text=True)
    if result.returncode != 0:
        subprocess.run([chattr, "-i", *names], capture_output=True)
        pytest.skip(f"cannot make files immutable here: {result.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", *names], check=True)


def test_a_spool_that_turns_read_only_keeps_reports_in_memory_until_it_is_writable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    clock = Clock()
    spool = Spool(state / SPOOL_FILE, retry_seconds=30, monotonic=clock)
    for seq in range(1, 4):
        spool.add(report(seq))
    files = sorted(state.iterdir())
    with immutable(state, *files):
        # Root too is refused: the write fails for real (EPERM), the spool does not.
        with pytest.raises(PermissionError):
            (state / "probe").write_text("x")
        for seq in range(4, 7):
            spool.add(report(seq, padding=50_000))
        assert not on_disk(spool)
        assert sequences(spool) == [1, 2, 3, 4, 5, 6]
        error = next(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
        assert str(state / SPOOL_FILE) in error and "writable" in error
        clock.now += 31
        spool.add(report(7))  # the retry fails while the files are immutable
        assert not on_disk(spool)
    clock.now += 31
    spool.add(report(8))
    assert on_disk(spool)
    spool.close()
    again = Spool(state / SPOOL_FILE)
    assert sequences(again) == [1, 2, 3, 4, 5, 6, 7, 8]
    again.close()


def test_a_read_only_spool_at_start_is_said_and_survived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    first = Spool(state / SPOOL_FILE)
    first.add(report(1))
    first.close()
    files = sorted(state.iterdir())
    with immutable(state, *files):
        spool = Spool(state / SPOOL_FILE)
        assert not on_disk(spool)
        assert "cannot open the report spool" in caplog.text
        spool.add(report(2))
        assert sequences(spool) == [2]  # the file's report waits there until it can be read
        spool.close()
    again = Spool(state / SPOOL_FILE)
    assert sequences(again) == [1]
    again.close()


def test_a_full_disk_falls_back_to_memory_and_moves_back_when_there_is_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    spool = Spool(tmp_path / SPOOL_FILE, retry_seconds=10, monotonic=clock)
    spool.add(report(1))
    # The file may not grow past its current size: SQLite answers SQLITE_FULL, as on a full disk.
    assert spool._db is not None
    (pages,) = spool._db.execute("PRAGMA page_count").fetchone()
    spool._db.execute(f"PRAGMA max_page_count = {pages}")
    for seq in range(2, 12):
        spool.add(report(seq, padding=4000))
    assert not on_disk(spool)
    error = next(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert "full" in error and "free space" in error and str(tmp_path) in error
    assert sequences(spool) == list(range(1, 12))
    # The next try opens a new connection, which has no page limit: "the disk has room again".
    clock.now += 11
    spool.add(report(12))
    assert on_disk(spool)
    spool.close()
    again = Spool(tmp_path / SPOOL_FILE)
    assert sequences(again) == list(range(1, 13))
    again.close()


def test_a_damaged_spool_is_moved_aside_and_a_new_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / SPOOL_FILE
    path.write_bytes(b"this is not an SQLite database, it is " + os.urandom(8000))
    spool = Spool(path)
    assert on_disk(spool)
    aside = tmp_path / (SPOOL_FILE + ".corrupt")
    assert aside.exists()
    message = next(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert str(path) in message and str(aside) in message
    spool.add(report(1))
    assert sequences(spool) == [1]
    spool.close()


def test_an_unreadable_report_is_dropped_and_counted_not_resent_forever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / SPOOL_FILE
    spool = Spool(path)
    for seq in (1, 2, 3):
        spool.add(report(seq))
    spool.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE reports SET body = ? WHERE sequence = 2", (b"not zlib",))
    db.commit()
    db.close()
    spool = Spool(path)
    assert sequences(spool) == [1, 3]
    assert spool.dropped == 1
    assert f"report 2 in the spool {path} cannot be read" in caplog.text
    spool.close()
    again = Spool(path)
    assert sequences(again) == [1, 3] and again.dropped == 1
    again.close()


def test_a_second_process_cannot_use_a_spool_in_use(tmp_path: Path) -> None:
    spool = Spool(tmp_path / SPOOL_FILE)
    spool.add(report(1))
    other = sqlite3.connect(tmp_path / SPOOL_FILE, timeout=0.1)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("SELECT COUNT(*) FROM reports").fetchone()
    other.close()
    spool.close()


def test_a_spool_damaged_at_start_counts_what_it_held_as_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What the damaged file held is known from outside it (sequence.json, written after each
    report): those reports are lost and counted, so the server sees the loss."""
    state = StateDir(tmp_path)
    sequences = Sequencer(state, 0, 0, state.load_sequence())
    spool = Spool(tmp_path / SPOOL_FILE, max_reports=3)
    for _ in range(5):  # two dropped by the bound, three waiting
        spool.add(report(sequences.next()))
        sequences.note_spool(spool.pending_estimate, spool.dropped)
    spool.close()
    assert spool.dropped == 2
    (tmp_path / SPOOL_FILE).write_bytes(
        b"this is not an SQLite database, it is " + os.urandom(8000)
    )
    recorded = state.load_sequence()
    assert recorded is not None
    again = Spool(
        tmp_path / SPOOL_FILE,
        max_reports=3,
        damaged_hint=(recorded.spool_pending, recorded.spool_dropped),
    )
    assert again.dropped == 2 + 3
    assert "3 could not be and are lost (counted in dropped_reports, 5 in all)" in caplog.text
    again.close()
    assert Spool(tmp_path / SPOOL_FILE).dropped == 5  # kept in the new file


def test_a_drained_spool_still_knows_the_newest_sequence_it_had(tmp_path: Path) -> None:
    """With every row acknowledged and deleted, the acknowledged point still bounds the
    counter: a lost runtime.json must not bring back numbers the server holds."""
    spool = Spool(tmp_path / SPOOL_FILE)
    for seq in (1, 2, 3):
        spool.add(report(seq))
    spool.ack(3)
    spool.close()
    again = Spool(tmp_path / SPOOL_FILE)
    assert len(again) == 0 and again.last_sequence == 3
    again.close()


def test_a_report_evicted_while_on_its_way_is_not_dropped_once_it_is_acknowledged(
    tmp_path: Path,
) -> None:
    # The race seen end to end: the spool is full, the sender has read the oldest reports for
    # the stream, the next report evicts one of them, then the server's acknowledgement for it
    # arrives: the server stored it, so it is not dropped.
    spool = Spool(tmp_path / SPOOL_FILE, max_reports=3)
    for seq in range(1, 4):
        spool.add(report(seq))
    with spool.changed:  # what the runner's sender does under the lock as it reads a batch
        sending = spool.pending(0, 64)
        spool.mark_sent(sending[-1].sequence)
    assert [r.sequence for r in sending] == [1, 2, 3]
    spool.add(report(4))  # evicts 1, which is on its way
    spool.add(report(5))  # evicts 2, likewise
    assert sequences(spool) == [3, 4, 5]
    assert spool.dropped == 0
    spool.ack(1)
    spool.ack(2)
    assert spool.dropped == 0
    spool.stream_ended()  # nothing of those is left in doubt
    assert spool.dropped == 0
    spool.close()
    again = Spool(tmp_path / SPOOL_FILE, max_reports=3)
    assert again.dropped == 0
    again.close()


def test_a_report_evicted_while_on_its_way_and_never_acknowledged_is_dropped_once(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / SPOOL_FILE, max_reports=2)
    for seq in range(1, 3):
        spool.add(report(seq))
    with spool.changed:
        spool.mark_sent(spool.pending(0, 64)[-1].sequence)  # 1 and 2 go on the stream
    spool.add(report(3))  # evicts 1 (sent)
    spool.add(report(4))  # evicts 2 (sent)
    spool.add(report(5))  # evicts 3 (never sent): dropped at once
    assert spool.dropped == 1
    spool.ack(1)  # the server stored 1; the stream breaks before 2 is acknowledged
    spool.stream_ended()
    assert spool.dropped == 2
    spool.stream_ended()  # a second end counts nothing twice
    spool.ack(2)  # a late word on a dead stream cannot happen, and would change nothing
    assert spool.dropped == 2
    assert sequences(spool) == [4, 5]
    spool.close()
    again = Spool(tmp_path / SPOOL_FILE, max_reports=2)
    assert again.dropped == 2
    again.close()


def test_reports_in_doubt_count_as_dropped_after_a_crash(tmp_path: Path) -> None:
    # Evicted while on their way, then the process dies before an acknowledgement or the end of
    # the stream: the file counts them, so a SIGKILL never hides a lost report.
    spool = Spool(tmp_path / SPOOL_FILE, max_reports=2)
    for seq in range(1, 3):
        spool.add(report(seq))
    with spool.changed:
        spool.mark_sent(2)
    spool.add(report(3))
    spool.add(report(4))
    assert spool.dropped == 0
    # The file as a SIGKILL leaves it: the connection goes without close() writing anything.
    assert spool._db is not None
    spool._db.close()
    spool._db = None
    again = Spool(tmp_path / SPOOL_FILE, max_reports=2)
    assert again.dropped == 2
    assert sequences(again) == [3, 4]
    again.close()


def test_a_new_stream_sends_afresh_so_an_eviction_then_counts_at_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / SPOOL_FILE, max_reports=2)
    spool.add(report(1))
    spool.add(report(2))
    with spool.changed:
        spool.mark_sent(2)
    spool.stream_ended()  # 1 and 2 stay in the spool and go again on the next stream
    assert spool.dropped == 0
    spool.add(report(3))  # evicts 1, not on any stream now
    assert spool.dropped == 1
    spool.close()


def test_in_memory_a_report_evicted_on_its_way_waits_for_its_acknowledgement(
    tmp_path: Path,
) -> None:
    (tmp_path / "file").write_text("")
    spool = Spool(tmp_path / "file" / SPOOL_FILE, max_reports=2)  # no directory: memory
    assert not on_disk(spool)
    spool.add(report(1))
    spool.add(report(2))
    with spool.changed:
        spool.mark_sent(2)
    spool.add(report(3))
    spool.add(report(4))
    assert spool.dropped == 0
    spool.ack(1)
    spool.stream_ended()
    assert spool.dropped == 1
    spool.close()
