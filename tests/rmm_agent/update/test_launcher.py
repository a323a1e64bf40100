"""The launcher's swap, confirm and rollback with fake children and a controllable clock.

Archives are real files whose content names the version; each fake child acts out a script for
its version (request an update, confirm, exit, ignore SIGTERM...) on the fake clock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rmm_agent.update.launcher import (
    EXIT_UPDATE_READY,
    LAUNCHER_ENV,
    Launcher,
    Layout,
    write_json,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Step:
    """At `at` seconds after start, run `action`; then exit with `code` unless it is None."""

    at: float
    action: Callable[[], None] = lambda: None
    code: int | None = None


@dataclass
class FakeChild:
    clock: Clock
    steps: list[Step]
    started: float
    obeys_sigterm: bool = True
    terminated: bool = False
    terminated_at: float | None = None
    killed: bool = False
    exit_code: int | None = None

    def _advance(self, until: float) -> None:
        while self.exit_code is None and self.steps and self.started + self.steps[0].at <= until:
            step = self.steps.pop(0)
            self.clock.now = max(self.clock.now, self.started + step.at)
            step.action()
            self.exit_code = step.code

    def wait(self, timeout: float) -> int | None:
        if self.exit_code is not None:
            return self.exit_code
        self._advance(self.clock.now + timeout)
        if self.exit_code is None:
            self.clock.now += timeout
        return self.exit_code

    def terminate(self) -> None:
        self.terminated = True
        self.terminated_at = self.clock.now
        if self.obeys_sigterm and self.exit_code is None:
            self.exit_code = -15

    def kill(self) -> None:
        self.killed = True
        self.exit_code = -9


@dataclass
class World:
    root: Path
    clock: Clock = field(default_factory=Clock)
    scripts: dict[str, list[Callable[[FakeChild], None]]] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    children: list[FakeChild] = field(default_factory=list)
    launcher: Launcher | None = None

    @property
    def layout(self) -> Layout:
        return Layout.of(self.root)

    def spawn(self, argv: Sequence[str], env: Mapping[str, str]) -> FakeChild:
        assert env[LAUNCHER_ENV] == "1"
        version = Path(argv[0]).read_text()
        self.started.append(version)
        child = FakeChild(self.clock, [], self.clock.now)
        script = self.scripts.get(version) or []
        run = len([v for v in self.started if v == version]) - 1
        script[min(run, len(script) - 1)](child)
        self.children.append(child)
        return child

    def make(self, confirm_timeout: float = 10.0) -> Launcher:
        self.launcher = Launcher(
            self.layout,
            lambda archive: [str(archive), "run"],
            self.spawn,
            {"PATH": "/bin"},
            clock=self.clock,
            wall_clock=lambda: 1_000_000 + self.clock.now,
            sleep=self.clock.sleep,
            confirm_timeout=confirm_timeout,
            stop_grace=3.0,
        )
        return self.launcher

    # What scripted children do.
    def request_update(self, to: str, from_: str, sha: str | None = None) -> Callable[[], None]:
        def act() -> None:
            archive = self.layout.incoming_archive(to)
            archive.parent.mkdir(parents=True, exist_ok=True)
            archive.write_text(to)
            digest = sha or hashlib.sha256(to.encode()).hexdigest()
            write_json(self.layout.update_request, {"from": from_, "to": to, "sha256": digest})

        return act

    def confirm(self, version: str) -> Callable[[], None]:
        def act() -> None:
            self.layout.confirmation(version).write_text("ok")

        return act

    def stop(self) -> Callable[[], None]:
        def act() -> None:
            assert self.launcher is not None
            self.launcher.request_stop()

        return act


def _install(world: World, version: str = "A") -> None:
    world.layout.root.mkdir(parents=True)
    world.layout.current.write_text(version)


def _upgrade_a_to_b(world: World) -> None:
    """A asks for B at t=1 on its first run; on any later run it stops the launcher at t=30."""
    world.scripts["A"] = [
        lambda c: c.steps.append(Step(1, world.request_update("B", "A"), code=EXIT_UPDATE_READY)),
        lambda c: c.steps.append(Step(30, world.stop())),
    ]


def _status(world: World) -> dict[str, object]:
    return dict(json.loads(world.layout.status.read_text()))


def test_update_is_swapped_in_and_confirmed(tmp_path: Path) -> None:
    world = World(tmp_path)
    _install(world)
    _upgrade_a_to_b(world)
    world.scripts["B"] = [
        lambda c: c.steps.extend([Step(2, world.confirm("B")), Step(5, world.stop())])
    ]
    assert world.make().run() == 0
    assert world.started == ["A", "B"]
    assert world.layout.current.read_text() == "B"
    assert world.layout.previous.read_text() == "A"
    assert not world.layout.trial.exists()
    assert not world.layout.update_request.exists()
    assert _status(world)["state"] == "updated"
    assert _status(world)["to"] == "B"
    assert world.children[-1].terminated  # the stop was forwarded


def test_update_that_never_reports_is_rolled_back_at_the_deadline_and_not_retried(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    _install(world)
    _upgrade_a_to_b(world)
    world.scripts["B"] = [lambda c: None]  # runs, never confirms
    assert world.make(confirm_timeout=10).run() == 0
    assert world.started == ["A", "B", "A"]
    bad = world.children[1]
    assert bad.terminated and not bad.killed
    assert bad.terminated_at is not None
    assert 10.0 <= bad.terminated_at - bad.started <= 10.5  # the deadline, give or take a poll
    assert world.layout.current.read_text() == "A"
    assert not world.layout.previous.exists()
    rejected = json.loads(world.layout.rejected.read_text())
    assert rejected["B"]["from"] == "A" and "did not report within 10s" in rejected["B"]["reason"]
    assert _status(world)["state"] == "rolled_back"


def test_update_that_keeps_exiting_is_rolled_back(tmp_path: Path) -> None:
    world = World(tmp_path)
    _install(world)
    _upgrade_a_to_b(world)
    world.scripts["B"] = [lambda c: c.steps.append(Step(0.2, code=1))]
    assert world.make(confirm_timeout=100).run() == 0
    assert world.started == ["A", "B", "B", "B", "A"]
    assert world.layout.current.read_text() == "A"
    assert (
        "exited with code 1 (3 times)"
        in json.loads(world.layout.rejected.read_text())["B"]["reason"]
    )


def test_update_that_exits_for_good_is_rolled_back_at_once(tmp_path: Path) -> None:
    world = World(tmp_path)
    _install(world)
    _upgrade_a_to_b(world)
    world.scripts["B"] = [lambda c: c.steps.append(Step(0.2, code=2))]
    assert world.make().run() == 0
    assert world.started == ["A", "B", "A"]


def test_update_that_ignores_sigterm_is_killed_on_rollback(tmp_path: Path) -> None:
    world = World(tmp_path)
    _install(world)
    _upgrade_a_to_b(world)

    def stubborn(child: FakeChild) -> None:
        child.obeys_sigterm = False

    world.scripts["B"] = [stubborn]
    assert world.make().run() == 0
    assert world.children[1].killed
    assert world.layout.current.read_text() == "A"


def test_rejected_version_is_not_swapped_in(tmp_path: Path) -> None:
    world = World(tmp_path)
    _install(world)
    write_json(world.layout.rejected, {"B": {"from": "A", "reason": "earlier"}})
    _upgrade_a_to_b(world)
    assert world.make().run() == 0
    assert world.started == ["A", "A"]
    assert world.layout.current.read_text() == "A"
    assert not world.layout.incoming_archive("B").exists()


def test_archive_damaged_on_disk_is_not_swapped_in(tmp_path: Path) -> None:
    world = World(tmp_path)
    _install(world)
    world.scripts["A"] = [
        lambda c: c.steps.append(
            Step(1, world.request_update("B", "A", sha="0" * 64), code=EXIT_UPDATE_READY)
        ),
        lambda c: c.steps.append(Step(1, world.stop())),
    ]
    assert world.make().run() == 0
    assert world.started == ["A", "A"]
    assert world.layout.current.read_text() == "A"


def test_crashing_agent_is_restarted_with_backoff_and_permanent_failure_ends_the_launcher(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    _install(world)
    world.scripts["A"] = [
        lambda c: c.steps.append(Step(0.1, code=1)),
        lambda c: c.steps.append(Step(0.1, code=1)),
        lambda c: c.steps.append(Step(0.1, code=3)),
    ]
    assert world.make().run() == 3
    assert world.started == ["A", "A", "A"]
    assert 3.0 <= world.clock.now < 3.5  # waited 1 s, then 2 s


def test_interrupted_swap_is_finished_and_the_trial_resumes(tmp_path: Path) -> None:
    world = World(tmp_path)
    layout = world.layout
    layout.incoming.mkdir(parents=True)
    # The launcher died after moving A to previous.pyz, before moving B in.
    layout.previous.write_text("A")
    layout.incoming_archive("B").write_text("B")
    write_json(layout.trial, {"from": "A", "to": "B"})
    world.scripts["B"] = [lambda c: None]
    world.scripts["A"] = [lambda c: c.steps.append(Step(1, world.stop()))]
    assert world.make(confirm_timeout=5).run() == 0
    assert world.started == ["B", "A"]
    assert json.loads(layout.rejected.read_text())["B"]["from"] == "A"


def test_swap_interrupted_before_it_started_is_forgotten(tmp_path: Path) -> None:
    world = World(tmp_path)
    _install(world)
    world.layout.incoming.mkdir()
    world.layout.incoming_archive("B").write_text("B")
    write_json(world.layout.trial, {"from": "A", "to": "B"})
    world.scripts["A"] = [lambda c: c.steps.append(Step(1, world.stop()))]
    assert world.make().run() == 0
    assert world.started == ["A"]
    assert not world.layout.trial.exists()
    assert not world.layout.rejected.exists()


def test_stop_before_the_child_exits_returns_zero(tmp_path: Path) -> None:
    world = World(tmp_path)
    _install(world)
    world.scripts["A"] = [lambda c: c.steps.append(Step(7, world.stop()))]
    assert world.make().run() == 0
    assert world.children[0].terminated
