"""Run the collectors and assemble one report; a collector that fails or hangs is named and
the others go on."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import platform
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from rmm_agent import __version__
from rmm_agent.collectors import Collector, CollectorOutput
from rmm_agent.collectors.base import terminate_commands
from rmm_agent.workers import DaemonPool
from rmm_proto import agent_pb2

log = logging.getLogger(__name__)

# The contract names them: every field of rmm.v1.HostFacts.
HOST_FIELDS = tuple(field.name for field in agent_pb2.HostFacts.DESCRIPTOR.fields)


def canonical_json(value: Any) -> bytes:
    """Serialise `value` the same way every time, so equal content hashes equal."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def fallback_host_facts() -> dict[str, str]:
    """Return host facts from the standard library, for when the system collector fails."""
    os_name = {"linux": "linux", "win32": "windows", "darwin": "macos"}.get(
        sys.platform, sys.platform
    )
    return {
        "hostname": socket.gethostname(),
        "os": os_name,
        "os_name": platform.system(),
        "os_version": platform.version(),
        "kernel": platform.release(),
        "arch": platform.machine(),
    }


# How long one collector may run before another worker takes the rest of its cycle.
STALL_SECONDS = 0.25
# A collector's min_interval_seconds counts as passed at 90% of it: reports come on a schedule
# with some jitter, and one due a millisecond early must not wait a whole interval more.
SPACING_SLACK = 0.9


@dataclass(slots=True)
class _Outcome:
    name: str
    ok: bool
    error: str
    duration: float
    output: CollectorOutput | None


class _Cycle:
    """One report's collectors, taken one at a time by whichever worker is free."""

    __slots__ = ("abandoned", "background", "expected", "lock", "outcomes", "waiting")

    def __init__(self, lock: threading.Condition) -> None:
        self.lock = lock
        self.waiting: deque[Collector] = deque()
        self.background: deque[Collector] = deque()  # slow ones: nobody waits for them
        self.outcomes: dict[str, _Outcome] = {}
        self.expected = 0
        self.abandoned = False  # the report went without the ones still running


class ReportBuilder:
    """Collect with every enabled collector and build report messages."""

    def __init__(
        self,
        collectors: Sequence[Collector],
        timeout_seconds: float = 10.0,
        inventory_interval_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        wait_for_slow: bool = False,
    ) -> None:
        self.collectors = list(collectors)
        self.wait_for_slow = wait_for_slow
        self._latest_slow: dict[str, _Outcome] = {}
        # Collectors with a min_interval_seconds: when each was last read, and what it said.
        self._spaced: dict[str, tuple[float, _Outcome]] = {}
        # Slow collectors with a min_interval_seconds: when each was last started.
        self._slow_started: dict[str, float] = {}
        self.timeout = timeout_seconds
        self.inventory_interval = inventory_interval_seconds
        self.clock = clock
        self.monotonic = monotonic
        # A hung collector keeps its worker; enough workers that the others still run.
        self._pool = DaemonPool(min(4, max(1, len(self.collectors))), "collector")
        # How long one collector may run before another worker takes the rest of its cycle.
        self.stall_seconds = min(STALL_SECONDS, timeout_seconds / 4)
        # Guards the cycles, _claimed and _latest_slow, which workers update.
        self._lock = threading.Condition()
        # Collectors queued or running: one still at it is not started a second time.
        self._claimed: set[str] = set()
        self._inventory_due = 0.0
        self._inventory_results: dict[str, _Outcome] = {}
        self.inventory_json = b""
        self.inventory_hash = ""
        self.host = fallback_host_facts()

    def close(self) -> None:
        """Stop the worker threads and the commands collectors wait for."""
        self._pool.shutdown()
        terminate_commands()

    def refresh_inventory_now(self) -> None:
        """Make the next report re-read the inventory collectors."""
        self._inventory_due = 0.0

    def _run_one(self, collector: Collector) -> _Outcome:
        started = time.perf_counter()
        try:
            output = collector.collect()
        except Exception as exc:  # a collector's bug must not stop the report
            log.warning(
                "collector %s failed: %s", collector.name, exc, exc_info=log.isEnabledFor(10)
            )
            return _Outcome(
                collector.name,
                False,
                f"{type(exc).__name__}: {exc}",
                time.perf_counter() - started,
                None,
            )
        return _Outcome(collector.name, True, "", time.perf_counter() - started, output)

    def _drain(self, cycle: _Cycle) -> None:
        """Run the cycle's collectors one after the other until none waits (on a worker).

        One worker takes a whole cycle: one hand-off to it and one back, not one of each per
        collector. Should a collector hang, the report loop starts another worker on the rest
        (see _run), so a hung one holds the others for at most `stall_seconds`."""
        while True:
            with cycle.lock:
                if cycle.waiting:
                    collector, regular = cycle.waiting.popleft(), True
                elif cycle.background:
                    collector, regular = cycle.background.popleft(), False
                else:
                    return
            outcome = self._run_one(collector)
            with cycle.lock:
                self._claimed.discard(collector.name)
                if not regular:
                    self._latest_slow[collector.name] = outcome
                elif not cycle.abandoned:
                    cycle.outcomes[collector.name] = outcome
                    if len(cycle.outcomes) == cycle.expected:
                        cycle.lock.notify_all()

    def _run(
        self, collectors: Sequence[Collector], background: Sequence[Collector] = ()
    ) -> list[_Outcome]:
        """Run `collectors` and return their outcomes in their order; start `background` ones
        (slow) after them, without waiting for those."""
        cycle = _Cycle(self._lock)
        outcomes: list[_Outcome | None] = []
        with cycle.lock:
            for collector in collectors:
                if collector.name in self._claimed:
                    outcomes.append(
                        _Outcome(
                            collector.name,
                            False,
                            "still running since an earlier report (hung?)",
                            0.0,
                            None,
                        )
                    )
                    continue
                self._claimed.add(collector.name)
                cycle.waiting.append(collector)
                outcomes.append(None)
            for collector in background:
                if collector.name not in self._claimed:
                    self._claimed.add(collector.name)
                    cycle.background.append(collector)
            cycle.expected = len(cycle.waiting)
        if not cycle.waiting and not cycle.background:
            return [outcome for outcome in outcomes if outcome is not None]
        self._pool.start(partial(self._drain, cycle))
        deadline = self.monotonic() + self.timeout
        workers = 1
        with cycle.lock:
            while len(cycle.outcomes) < cycle.expected:
                left = deadline - self.monotonic()
                if left <= 0:
                    break
                if cycle.lock.wait(min(left, self.stall_seconds)):
                    continue
                if cycle.waiting and workers < self._pool.size:
                    # The collector in hand takes long (hung?): another worker takes the rest.
                    self._pool.start(partial(self._drain, cycle))
                    workers += 1
            if len(cycle.outcomes) < cycle.expected:
                # Those not started are not started later: the next report asks them again.
                for collector in (*cycle.waiting, *cycle.background):
                    self._claimed.discard(collector.name)
                cycle.waiting.clear()
                cycle.background.clear()
                cycle.abandoned = True
            finished = cycle.outcomes
        result = []
        for collector, known in zip(collectors, outcomes, strict=True):
            outcome = known or finished.get(collector.name)
            if outcome is None:
                log.warning("collector %s timed out after %gs", collector.name, self.timeout)
                outcome = _Outcome(
                    collector.name, False, f"timed out after {self.timeout:g}s", self.timeout, None
                )
            result.append(outcome)
        return result

    def build(self) -> agent_pb2.Report:
        """Collect now and return a report without sequence (the sender numbers it)."""
        slow = (
            []
            if self.wait_for_slow
            else [c for c in self.collectors if getattr(c, "slow", False) and not c.inventory]
        )
        regular = [c for c in self.collectors if not c.inventory and c not in slow]
        inventory = [c for c in self.collectors if c.inventory]
        # A collector with a `min_interval_seconds` read less than that long ago is not run
        # again: its last good reading is reported, with time 0 (as an inventory's is); a slow
        # one is not started again (its latest finished reading is reported, as always).
        now = self.monotonic()
        reused: dict[str, _Outcome] = {}
        for collector in regular:
            last = self._spaced.get(collector.name)
            if last is not None and not _due(collector, now, last[0]):
                reused[collector.name] = dataclasses.replace(last[1], duration=0.0)
        started_slow = [c for c in slow if _due(c, now, self._slow_started.get(c.name))]
        for collector in started_slow:
            self._slow_started[collector.name] = now
        # A slow collector is started again once idle, after this cycle's regular ones and on
        # the same worker; the report carries its latest finished reading, if any.
        ran = {
            outcome.name: outcome
            for outcome in self._run(
                [c for c in regular if c.name not in reused], background=started_slow
            )
        }
        outcomes = [reused.get(c.name) or ran[c.name] for c in regular]
        for collector in regular:
            if collector.name in ran and getattr(collector, "min_interval_seconds", 0.0) > 0:
                if ran[collector.name].ok:
                    self._spaced[collector.name] = (now, ran[collector.name])
                else:  # a failed reading is not repeated: the next report tries again
                    self._spaced.pop(collector.name, None)
        with self._lock:
            outcomes.extend(
                self._latest_slow[c.name] for c in slow if c.name in self._latest_slow
            )
        refreshed: set[str] = set()
        if inventory and self.monotonic() >= self._inventory_due:
            for outcome in self._run(inventory):
                self._inventory_results[outcome.name] = outcome
                refreshed.add(outcome.name)
            self._inventory_due = self.monotonic() + self.inventory_interval
            self._update_inventory()
        report = agent_pb2.Report(
            collected_at=self.clock(),
            agent_version=__version__,
            inventory_hash=self.inventory_hash,
        )
        # Each result is built in the report (add()), not apart and copied in by append().
        for outcome in outcomes:
            _to_proto(outcome, with_info=True, into=report.collectors.add())
            if outcome.name == "system" and outcome.output is not None:
                self._update_host(outcome.output.info)
        for outcome in self._inventory_results.values():
            result = _to_proto(outcome, with_info=False, into=report.collectors.add())
            if outcome.name not in refreshed:
                # Not run for this report: its samples are the last reading's, its time is 0.
                result.duration_seconds = 0.0
        for name in HOST_FIELDS:
            setattr(report.host, name, self.host.get(name, ""))
        return report

    def _update_host(self, info: dict[str, Any]) -> None:
        for name in HOST_FIELDS:
            value = info.get(name)
            if isinstance(value, str) and value:
                self.host[name] = value

    def _update_inventory(self) -> None:
        content = {
            name: outcome.output.info
            for name, outcome in sorted(self._inventory_results.items())
            if outcome.output is not None
        }
        if not content:
            return
        self.inventory_json = canonical_json(content)
        self.inventory_hash = hashlib.sha256(self.inventory_json).hexdigest()

    def attach_inventory(self, report: agent_pb2.Report) -> None:
        """Put the current inventory into `report` (when the server lacks it)."""
        if self.inventory_json:
            report.inventory.hash = self.inventory_hash
            report.inventory.json = self.inventory_json


def _due(collector: Collector, now: float, last: float | None) -> bool:
    """Tell whether `collector` is to be read at `now`, last read at `last` (None: never)."""
    spacing = getattr(collector, "min_interval_seconds", 0.0)
    return spacing <= 0 or last is None or now - last >= spacing * SPACING_SLACK


def _to_proto(
    outcome: _Outcome, with_info: bool, into: agent_pb2.CollectorResult | None = None
) -> agent_pb2.CollectorResult:
    """Return `outcome` as a CollectorResult, filled into `into` (an empty one) when given."""
    result = agent_pb2.CollectorResult() if into is None else into
    result.name = outcome.name
    result.ok = outcome.ok
    result.error = outcome.error
    result.duration_seconds = outcome.duration
    if outcome.output is not None:
        # add() builds each sample in place; append() of a Sample built apart copied it, about
        # half of this function's time (0.1 ms a cycle for ~100 samples, measured). Labels are
        # set one by one: add(labels=...) fills the map through Python's MutableMapping.update,
        # twice the time of the whole loop (143 -> 66 us for 98 samples, measured).
        add = result.samples.add
        for sample in outcome.output.samples:
            if math.isfinite(sample.value):
                added = add(name=sample.name, value=sample.value)
                if sample.labels:
                    labels = added.labels
                    for key, value in sample.labels.items():
                        labels[key] = value
        if with_info and outcome.output.info:
            result.info_json = canonical_json(outcome.output.info)
    return result


def report_to_dict(report: agent_pb2.Report, inventory_json: bytes = b"") -> dict[str, Any]:
    """Return a report as plain JSON-ready data (the `collect --once --output json` format)."""
    return {
        "collected_at": report.collected_at,
        "agent_version": report.agent_version,
        "host": {name: getattr(report.host, name) for name in HOST_FIELDS},
        "collectors": [
            {
                "name": c.name,
                "ok": c.ok,
                "error": c.error,
                "duration_seconds": c.duration_seconds,
                "samples": [
                    {"name": s.name, "labels": dict(s.labels), "value": s.value} for s in c.samples
                ],
                "info": json.loads(c.info_json) if c.info_json else {},
            }
            for c in report.collectors
        ],
        "inventory_hash": report.inventory_hash,
        "inventory": json.loads(inventory_json) if inventory_json else {},
    }
