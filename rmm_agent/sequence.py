"""Report sequence numbers: each given once, across crashes, full disks and lost counters.

The server stores each (agent, sequence) once, so a number given to two reports loses the second.
runtime.json's counter alone cannot prevent that: it is written after the number is taken, and
while the disk is full the write fails and the agent goes on in memory (rmm_agent/spool.py); a
SIGKILL then brings back an old counter. So numbers are reserved ahead, in blocks, in
sequence.json, written with fsync *before* any number of the block is used (one fsync a block, not
a report). A start resumes above the reservation; if the previous run did not stop cleanly, the
numbers between its last recorded report and the reservation may or may not have been used (in
memory, while the disk failed), so they are skipped and counted (`Report.skipped_sequences`), never
given again. A clean stop gives the unused rest of its block back, so it leaves no gap. When a new
block cannot be written (the disk is still full) no number is given: the agent stops making
reports, says so once, and tries again at every interval.
"""

from __future__ import annotations

import logging

from rmm_agent.state import SequenceRecord, StateDir

log = logging.getLogger(__name__)

# Numbers reserved at a time: at 30 s an interval, two hours of reports while the disk is full
# before the agent must pause; also the most a SIGKILL can skip.
SEQUENCE_BLOCK = 256


class SequenceUnavailable(Exception):
    """No number can be given without risking reuse: the reservation cannot be written."""


class Sequencer:
    """Give report sequence numbers, each at most once."""

    def __init__(
        self,
        state: StateDir,
        counter: int,
        spool_last: int,
        saved: SequenceRecord | None,
        block: int = SEQUENCE_BLOCK,
    ) -> None:
        """`counter`: runtime.json's sequence; `spool_last`: the newest number in the spool;
        `saved`: what state.load_sequence() read (None: the file is unreadable)."""
        if block < 1:
            raise ValueError("a sequence block holds at least one number")
        self.state = state
        self.block = block
        known = max(counter, spool_last)
        if saved is None:
            # Unreadable: a reservation never reaches past the counter by more than a block.
            saved = SequenceRecord(reserved=known + block, accounted=known)
        known = max(known, saved.accounted)
        self.skipped = saved.skipped
        if saved.reserved > known:
            gap = saved.reserved - known
            self.skipped += gap
            log.warning(
                "the agent did not stop cleanly: report sequence numbers %d..%d, reserved in %s, "
                "are skipped (%d in all since enrollment) and never given again; the server sees "
                "them as skipped_sequences, not as lost reports",
                known + 1,
                saved.reserved,
                state.sequence_path,
                self.skipped,
            )
            known = saved.reserved
        self.last = known
        # What sequence.json holds now: numbers up to `last` are spent, none is reserved ahead.
        self.reserved = known
        self.spool_pending = saved.spool_pending
        self.spool_dropped = saved.spool_dropped
        self._paused = False
        log.info("report sequence numbers resume at %d", self.last + 1)

    def next(self) -> int:
        """Return the next number, reserving a block first when needed; raise
        SequenceUnavailable when the reservation cannot be written."""
        number = self.last + 1
        if number > self.reserved:
            self._write(reserved=number - 1 + self.block)
        self.last = number
        if self._paused:
            self._paused = False
            log.warning("report sequence numbers can be reserved again: reports resume")
        return number

    def resume_at(self, number: int) -> None:
        """Give no number below `number` again: the server holds reports up to it that this
        agent's state does not know of (restored, lost or copied). Not skipped: they are stored."""
        if number - 1 <= self.last:
            return
        log.warning(
            "the server holds reports of this agent up to sequence %d that its state in %s does "
            "not know of (restored from a copy, lost, or copied to another host): report "
            "numbers resume at %d",
            number - 1,
            self.state.path,
            number,
        )
        self.last = number - 1

    def note_spool(self, pending: int, dropped: int) -> None:
        """Record after each report what the spool holds (not synced: a hint for a start that
        finds the spool damaged); a failure is ignored, the reservation is not at stake."""
        if (pending, dropped) == (self.spool_pending, self.spool_dropped):
            return  # the steady state (one report waiting for its acknowledgement): no write
        self.spool_pending, self.spool_dropped = pending, dropped
        try:
            self.state.save_sequence(self._record(self.reserved), durable=False)
        except OSError as exc:
            log.debug("cannot update %s: %s", self.state.sequence_path, exc)

    def close(self, pending: int, dropped: int) -> None:
        """Give back the unused rest of the block (a clean stop leaves no gap)."""
        self.spool_pending, self.spool_dropped = pending, dropped
        try:
            self._write(reserved=self.last)
        except SequenceUnavailable as exc:
            log.warning("%s; the next start skips the unused numbers", exc)

    def _record(self, reserved: int) -> SequenceRecord:
        return SequenceRecord(
            reserved=reserved,
            accounted=self.last,
            skipped=self.skipped,
            spool_pending=self.spool_pending,
            spool_dropped=self.spool_dropped,
        )

    def _write(self, reserved: int) -> None:
        record = self._record(reserved)
        try:
            self.state.save_sequence(record, durable=True)
        except OSError as exc:
            error = SequenceUnavailable(
                f"cannot reserve report sequence numbers in {self.state.sequence_path}: {exc}; "
                f"free space on (or make writable) the file system that holds {self.state.path}"
            )
            if not self._paused and reserved > self.last:
                self._paused = True
                log.error(
                    "%s. No report is made until then, since a number used without a "
                    "reservation could be given again after a crash and the server would take "
                    "the new report for one it has; the agent tries again at every interval",
                    error,
                )
            raise error from exc
        self.reserved = record.reserved
