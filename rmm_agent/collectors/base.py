"""The contract every collector fulfils: what it measures, and how it says so."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from rmm_common.metric_catalog import MetricSpec


@dataclass(slots=True)
class Sample:
    """One value of one metric, with its labels."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class CollectorOutput:
    """What one collection by one collector produced.

    `samples` are numeric series (exported to Prometheus, used by policies);
    `info` holds JSON-serialisable details that are not series (names, lists, versions).
    """

    samples: list[Sample] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class Collector(Protocol):
    """Anything with a registry name, its metric specs and a `collect()` method."""

    name: ClassVar[str]
    metrics: ClassVar[tuple[MetricSpec, ...]]
    # Inventory collectors change rarely: their info is sent only when its hash changes.
    inventory: ClassVar[bool]
    # A collector may also say `slow: ClassVar[bool] = True`: it then runs in the background
    # and each report carries its latest finished reading instead of waiting for it. It may say
    # `min_interval_seconds: ClassVar[float] = S`: a report made less than S seconds after its
    # last good reading carries that reading again instead of running it (rmm_agent.report).

    def collect(self) -> CollectorOutput: ...


# Runs an external command and returns its stdout; raises CommandError on failure.
CommandRunner = Callable[[Sequence[str]], str]


class CommandError(RuntimeError):
    """An external command could not run or exited non-zero."""


_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


def run_tracked(argv: Sequence[str], timeout: float = 20.0) -> tuple[int, bytes, bytes]:
    """Run `argv` to completion and return (exit status, stdout, stderr).

    The child is remembered while it runs, so that an agent told to stop can end the commands
    its collectors started (an `apt-get -s` takes seconds) instead of leaving them behind.
    """
    try:
        child = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{argv[0]}: not found on this host") from exc
    track(child)
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        child.kill()
        child.communicate()
        raise CommandError(f"{' '.join(argv)}: timed out after {timeout:g}s") from exc
    finally:
        untrack(child)
    return child.returncode, stdout, stderr


def track(child: subprocess.Popen[bytes]) -> None:
    """Remember a running child so that terminate_commands() ends it too."""
    with _running_lock:
        _running.add(child)


def untrack(child: subprocess.Popen[bytes]) -> None:
    """Forget a child that ended."""
    with _running_lock:
        _running.discard(child)


def terminate_commands(grace: float = 2.0) -> None:
    """End every command a collector is still waiting for (the agent is stopping)."""
    with _running_lock:
        children = list(_running)
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_command(argv: Sequence[str], timeout: float = 20.0) -> str:
    """Run `argv` and return its stdout as text; raise CommandError naming the command."""
    returncode, stdout, stderr = run_tracked(argv, timeout)
    if returncode != 0:
        message = stderr.decode("utf-8", "replace").strip()
        raise CommandError(f"{' '.join(argv)}: exited {returncode}: {message[:300]}")
    return stdout.decode("utf-8", "replace")
