"""The rollout of opened patch windows, driven on a real Store, CommandService and AlertService with
an injected clock: rings in order and held by an unhealthy ring, installs only inside the window,
offline agents installing on return or listed as missed, a locked update retried in the window, a
failed one left for the next window, reboots with bounded deferrals, pre/post library scripts,
the maintenance window, the report-back alert, every dispatch audited.

An agent's end is the CommandService's own AgentLink (as in tests/rmm_server/test_commands.py):
what the server sends it is read from its outbox and checked against the signing key, and its
answers go in through submit_result, as the agent servicer hands them over. The per-agent update
state (rmm_server/patching/inventory.py) is the rollout's UpdateState interface kept in memory;
tests/e2e/test_patching_apt.py runs the real one with a real agent and apt.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from rmm_proto import commands_pb2
from rmm_server.alerts.service import AlertService
from rmm_server.commands import AgentLink, AuditEntry, CommandService
from rmm_server.patching.inventory import PatchInventory
from rmm_server.patching.model import (
    REBOOT_ALWAYS,
    REBOOT_IF_REQUIRED,
    REBOOT_NEVER,
    PatchSchedule,
    PatchSettings,
    RebootPolicy,
    Ring,
    ScriptStep,
)
from rmm_server.patching.model import (
    REBOOT_CONSENT as REBOOT_CONSENT_WORDS,
)
from rmm_server.patching.rollout import Rollout, outcomes_of
from rmm_server.patching.scheduling import InventoryState
from rmm_server.patching.windows import PatchWindow, plan_windows
from rmm_server.policy.model import AgentContext
from rmm_server.scripts import ScriptLibrary
from rmm_server.signing import CommandSigner
from rmm_server.storage import AgentRecord, Store, open_store
from rmm_server.storage.commands import CommandRecord
from rmm_server.storage.patch_runs import CLOSED, PatchRunStore
from rmm_server.storage.patches import PatchStore, UpdateRow

Status = commands_pb2.CommandStatus
HOUR = 3600.0
# Friday 11 December 2026 22:00 UTC: Patch Tuesday + 3.
START = 1_797_026_400.0
END = START + 4 * HOUR


def sync(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test body in its own event loop (as the other server tests do), with the
    harness's command service started in it and stopped after."""

    async def body(harness: Harness) -> None:
        harness.commands.start()
        try:
            await test(harness)
        finally:
            await harness.commands.stop()

    @functools.wraps(test)
    def run(harness: Harness) -> None:
        asyncio.run(body(harness))

    return run


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Tagged:
    """A ring selector: agents carrying this tag."""

    tag: str

    def matches(self, agent: AgentContext) -> bool:
        return self.tag in agent.tags


@dataclass
class Updates:
    """The per-agent update state, in memory: approved ids, and the install outcomes recorded."""

    approved: dict[str, list[str]] = field(default_factory=dict)
    recorded: list[tuple[str, str, str]] = field(default_factory=list)
    met: list[str] = field(default_factory=list)

    def approved_updates(self, agent_id: str) -> list[str]:
        return list(self.approved.get(agent_id, []))

    def install_request_met(self, agent_id: str) -> None:
        self.met.append(agent_id)

    def record_outcomes(self, records: Sequence[CommandRecord]) -> object:
        for record in records:
            for outcome in outcomes_of(record):
                self.recorded.append((record.agent_id, outcome.update_id, outcome.status))
                if outcome.status == "installed":
                    self.approved[record.agent_id].remove(outcome.update_id)
        return None


SCHEDULE = PatchSchedule(
    name="pt3", duration_seconds=4 * HOUR, nth=2, weekday="tuesday", offset_days=3, time="22:00"
)
PILOT = Ring("pilot", 0, Tagged("pilot"), soak_seconds=HOUR)
BROAD = Ring("broad", 1, Tagged("broad"), soak_seconds=HOUR)


class Harness:
    """A rollout over real storage, commands and alerts, with its clock and agents in reach."""

    def __init__(self, store: Store, tmp_path: Path) -> None:
        self.store = store
        self.clock = Clock(START)
        self.key = Ed25519PrivateKey.generate()
        self.audited: list[AuditEntry] = []
        self.commands = CommandService(
            store, CommandSigner(self.key), audit=self.audited.extend, clock=self.clock
        )
        self.alerts = AlertService(store, CollectorRegistry(), None, clock=self.clock)
        self.agents: dict[str, AgentRecord] = {}
        self.settings: dict[str, PatchSettings] = {}
        self.links: dict[str, AgentLink] = {}
        self.updates = Updates()
        library = tmp_path / "scripts"
        library.mkdir()
        (library / "restart-app.sh").write_text(
            "#!/bin/sh\n# ---\n# description: restart a service\n# shells: [sh]\n"
            "# params:\n#   - {name: service, type: string, required: true}\n"
            "#   - {name: wait, type: int, default: 30}\n# ---\nexit 0\n"
        )
        (library / "stop-app.sh").write_text(
            "#!/bin/sh\n# ---\n# description: stop the app before patching\n# shells: [sh]\n"
            "# ---\nexit 0\n"
        )
        self.rollout = Rollout(
            store,
            self.commands,
            self.agents.get,
            lambda record: self.settings.get(record.id),
            self.updates,
            lambda: ScriptLibrary.load(library),
            alerts=self.alerts,
            audit=self.audited.extend,
            clock=self.clock,
        )

    def add(
        self,
        name: str,
        updates: Sequence[str] = ("apt:openssl",),
        ring: Ring | None = None,
        reboot: RebootPolicy | None = None,
        **settings: Any,
    ) -> AgentRecord:
        record = AgentRecord(
            id=f"agent-{name}",
            credential_hash="h",
            client="acme",
            site="hq",
            enrolled_at=START - HOUR,
            hostname=name,
            tags=[ring.selector.tag] if ring is not None else [],  # type: ignore[attr-defined]
            last_seen=START - 10,
        )
        self.agents[record.id] = record
        self.settings[record.id] = PatchSettings(
            agent_id=record.id,
            schedule=SCHEDULE,
            ring=ring,
            rings=(PILOT, BROAD),
            reboot=reboot or RebootPolicy(mode=REBOOT_NEVER),
            report_back_seconds=HOUR,
            **settings,
        )
        self.updates.approved[record.id] = list(updates)
        return record

    async def connect(self, *records: AgentRecord) -> None:
        for record in records:
            self.links[record.id] = await self.commands.connect(record, commands_pb2.CommandHello())

    def window(self) -> PatchWindow:
        windows, problems = plan_windows([(a, SCHEDULE, "UTC") for a in self.agents])
        assert problems == []
        (window,) = windows.values()
        return window

    async def open(self) -> str:
        run = await self.rollout.open(self.window(), START, END)
        return run.id

    def received(self, record: AgentRecord) -> list[commands_pb2.Command]:
        """Return the commands waiting in an agent's stream, checked as the agent checks them."""
        link = self.links[record.id]
        found = []
        while not link.outbox.empty():
            message = link.outbox.get_nowait()
            assert message is not None and message.HasField("command"), message
            self.key.public_key().verify(message.command.signature, message.command.command)
            found.append(commands_pb2.Command.FromString(message.command.command))
        return found

    async def answer(
        self,
        record: AgentRecord,
        command: commands_pb2.Command,
        status: int,
        per_update: dict[str, int] | None = None,
        reboot_required: bool = False,
    ) -> None:
        """Answer a command as the agent would, and wait until the result is stored."""
        result = commands_pb2.CommandResult(
            command_id=command.id,
            status=status,  # type: ignore[arg-type]
            started_at=self.clock.now,
            finished_at=self.clock.now,
        )
        if command.HasField("install_updates"):
            for uid in command.install_updates.update_ids:
                item = result.install_updates.updates.add(update_id=uid)
                item.status = (per_update or {}).get(uid, commands_pb2.UPDATE_INSTALLED)  # type: ignore[assignment]
                item.reboot_required = reboot_required
            result.install_updates.reboot_required = reboot_required
        if command.HasField("run_script"):
            result.script.exit_code = 0 if status == Status.COMMAND_SUCCEEDED else 1
        link = self.links.get(record.id)
        self.commands.submit_result(record.id, result, link)
        assert self.commands._results is not None
        await self.commands._results.join()
        if link is not None:  # the acknowledgement the agent would read
            ack = link.outbox.get_nowait()
            assert ack is not None and ack.result_stored == command.id

    async def tick(self, advance: float = 0.0) -> None:
        self.clock.now += advance
        await self.rollout.tick()

    def progress(self, run_id: str) -> dict[str, Any]:
        run = PatchRunStore(self.store).get(run_id)
        assert run is not None
        return run.progress

    def step(self, run_id: str, record: AgentRecord) -> str:
        return str(self.progress(run_id)["agents"][record.id]["step"])


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


@pytest.fixture
def harness(store: Store, tmp_path: Path) -> Iterator[Harness]:
    yield Harness(store, tmp_path)


@sync
async def test_rings_install_in_order_and_promote_on_health(harness: Harness) -> None:
    pilot = harness.add("pilot1", ring=PILOT)
    broad = harness.add("broad1", ring=BROAD)
    await harness.connect(pilot, broad)
    run_id = await harness.open()

    (install,) = harness.received(pilot)
    assert list(install.install_updates.update_ids) == ["apt:openssl"]
    assert install.expires_at == END and install.operator == "patching:-/pt3@UTC"
    assert install.maintenance_window == "pt3"  # what the consent prompt names
    assert install.run_id == run_id
    assert harness.received(broad) == []  # the broad ring waits for the pilot
    await harness.answer(pilot, install, Status.COMMAND_SUCCEEDED)
    await harness.tick(60)
    assert harness.step(run_id, pilot) == "done"
    assert harness.progress(run_id)["rings"][0]["state"] == "soaking"
    assert harness.received(broad) == []
    await harness.tick(HOUR - 1)  # not healthy before its soak time (from its end) is over
    assert harness.received(broad) == []
    harness.agents[pilot.id].last_seen = harness.clock.now  # it reports after its install
    await harness.tick(1)
    assert harness.progress(run_id)["rings"][0]["state"] == "healthy"
    await harness.tick()
    (broad_install,) = harness.received(broad)
    assert broad_install.install_updates.update_ids == ["apt:openssl"]
    # `install` requests: the pilot's met by its answer; the broad ring's once it answers.
    assert harness.updates.met == [pilot.id]
    # Every dispatch is audited before it leaves: both installs, as the window's operator.
    sent = [e for e in harness.audited if e[1] == "command.sent"]
    assert [(e[0], e[2]) for e in sent] == [
        ("patching:-/pt3@UTC", pilot.id),
        ("patching:-/pt3@UTC", broad.id),
    ]
    assert [e[1] for e in harness.audited if e[1].startswith("patch.")][:3] == [
        "patch.window.opened",
        "patch.ring.started",
        "patch.ring.started",
    ]


@sync
async def test_a_failed_pilot_holds_the_next_ring_and_stays_pending(harness: Harness) -> None:
    pilot = harness.add("pilot1", ring=PILOT)
    broad = harness.add("broad1", ring=BROAD)
    await harness.connect(pilot, broad)
    run_id = await harness.open()
    (install,) = harness.received(pilot)
    await harness.answer(
        pilot, install, Status.COMMAND_FAILED, {"apt:openssl": commands_pb2.UPDATE_FAILED}
    )
    await harness.tick(2 * HOUR)
    ring = harness.progress(run_id)["rings"]
    assert ring[0]["state"] == "held" and "installs failed" in ring[0]["held"]
    assert harness.received(broad) == []
    assert harness.step(run_id, broad) == "held"
    assert harness.step(run_id, pilot) == "done"  # its own outcome stays
    assert harness.updates.recorded == [(pilot.id, "apt:openssl", "failed")]
    # Still approved and not installed: the next window asks for it again.
    assert harness.updates.approved_updates(pilot.id) == ["apt:openssl"]


@sync
async def test_a_new_critical_alert_on_the_pilot_holds_the_next_ring(harness: Harness) -> None:
    pilot = harness.add("pilot1", ring=PILOT)
    broad = harness.add("broad1", ring=BROAD)
    await harness.connect(pilot, broad)
    run_id = await harness.open()
    (install,) = harness.received(pilot)
    await harness.answer(pilot, install, Status.COMMAND_SUCCEEDED)
    await harness.tick(60)
    await harness.alerts.raise_server_alert(pilot, "DiskFull", "critical", "disk full")
    await harness.tick(HOUR)
    ring = harness.progress(run_id)["rings"][0]
    assert ring["state"] == "held" and "DiskFull" in ring["held"], ring
    assert harness.received(broad) == []


@sync
async def test_an_offline_agent_installs_on_return_or_is_listed_as_missed(
    harness: Harness,
) -> None:
    back = harness.add("back")
    away = harness.add("away")
    run_id = await harness.open()
    # Offline: queued, expiring at the window's end.
    await harness.tick(HOUR)
    await harness.connect(back)
    (install,) = harness.received(back)
    assert install.expires_at == END
    await harness.answer(back, install, Status.COMMAND_SUCCEEDED)
    await harness.tick(60)
    assert harness.step(run_id, back) == "done"
    # The window ends: the other one never came back.
    harness.clock.now = END
    await harness.commands.expire_overdue()
    await harness.tick()
    assert harness.step(run_id, away) == "missed"
    await harness.connect(away)
    assert harness.received(away) == []  # nothing starts after the end
    harness.agents[back.id].last_seen = harness.clock.now + 1  # it reported after installing
    await harness.tick(2)
    (closed,) = [e for e in harness.audited if e[1] == "patch.window.closed"]
    assert closed[3]["missed"] == [away.id] and closed[4] == "{'done': 1, 'missed': 1}"


@sync
async def test_no_install_starts_after_the_window_ends(harness: Harness) -> None:
    late = harness.add("late")
    await harness.connect(late)
    window = harness.window()
    harness.clock.now = END - 30  # less than an install's minimum time left
    run = await harness.rollout.open(window, START, END)
    assert harness.received(late) == []
    assert harness.step(run.id, late) == "missed"


@sync
async def test_a_locked_update_is_retried_in_the_same_window(harness: Harness) -> None:
    agent = harness.add("locked", updates=["apt:openssl", "apt:curl"])
    await harness.connect(agent)
    run_id = await harness.open()
    (first,) = harness.received(agent)
    await harness.answer(
        agent,
        first,
        Status.COMMAND_FAILED,
        {"apt:openssl": commands_pb2.UPDATE_LOCKED},
    )
    await harness.tick(10)
    assert harness.step(run_id, agent) == "retry"
    assert harness.received(agent) == []
    await harness.tick(120)
    (second,) = harness.received(agent)
    assert list(second.install_updates.update_ids) == ["apt:openssl"]
    await harness.answer(agent, second, Status.COMMAND_SUCCEEDED)
    await harness.tick(10)
    assert harness.step(run_id, agent) == "done"
    assert harness.updates.recorded == [
        (agent.id, "apt:openssl", "locked"),
        (agent.id, "apt:curl", "installed"),
        (agent.id, "apt:openssl", "installed"),
    ]


@sync
async def test_a_reboot_may_be_deferred_a_bounded_number_of_times(harness: Harness) -> None:
    policy = RebootPolicy(
        mode=REBOOT_IF_REQUIRED, consent="ask", max_deferrals=2, deferral_seconds=600
    )
    agent = harness.add("laptop", reboot=policy)
    await harness.connect(agent)
    run_id = await harness.open()
    (install,) = harness.received(agent)
    await harness.answer(agent, install, Status.COMMAND_SUCCEEDED, reboot_required=True)
    await harness.tick(5)
    consents = []
    for _ in range(2):
        (reboot,) = harness.received(agent)
        assert reboot.HasField("reboot")
        consents.append(reboot.consent)
        await harness.answer(agent, reboot, Status.COMMAND_DECLINED)
        await harness.tick(5)
        assert harness.step(run_id, agent) == "reboot-deferred"
        assert harness.received(agent) == []
        await harness.tick(600)
    (forced,) = harness.received(agent)
    consents.append(forced.consent)
    # Asked twice, then warned only: the user cannot decline a third time.
    assert consents == [
        commands_pb2.CONSENT_ASK,
        commands_pb2.CONSENT_ASK,
        commands_pb2.CONSENT_NOTIFY,
    ]
    assert "deferred 2 of 2 times" in forced.reboot.reason
    await harness.answer(agent, forced, Status.COMMAND_SUCCEEDED)
    await harness.tick(5)
    progress = harness.progress(run_id)["agents"][agent.id]
    assert progress["step"] == "done" and progress["rebooted_at"] > 0


@sync
async def test_no_reboot_when_never_and_always_reboots_when_always(harness: Harness) -> None:
    never = harness.add("server", reboot=RebootPolicy(mode=REBOOT_NEVER))
    always = harness.add(
        "kiosk", updates=[], reboot=RebootPolicy(mode=REBOOT_ALWAYS, consent="unattended")
    )
    await harness.connect(never, always)
    run_id = await harness.open()
    (install,) = harness.received(never)
    await harness.answer(never, install, Status.COMMAND_SUCCEEDED, reboot_required=True)
    (reboot,) = harness.received(always)  # nothing to install, rebooted all the same
    assert reboot.HasField("reboot") and reboot.consent == commands_pb2.CONSENT_UNATTENDED
    await harness.tick(5)
    assert harness.step(run_id, never) == "done"
    assert harness.received(never) == []


@sync
async def test_pre_and_post_scripts_run_from_the_library(harness: Harness) -> None:
    agent = harness.add(
        "app",
        pre_install=(ScriptStep("stop-app"),),
        post_install=(ScriptStep("stop-app", args=("--start",)),),
    )
    await harness.connect(agent)
    run_id = await harness.open()
    (pre,) = harness.received(agent)
    assert pre.run_script.library_name == "stop-app" and "exit 0" in pre.run_script.body
    await harness.answer(agent, pre, Status.COMMAND_SUCCEEDED)
    await harness.tick(5)
    (install,) = harness.received(agent)
    assert install.HasField("install_updates")
    await harness.answer(agent, install, Status.COMMAND_SUCCEEDED)
    await harness.tick(5)
    (post,) = harness.received(agent)
    assert list(post.run_script.args) == ["--start"]
    await harness.answer(agent, post, Status.COMMAND_SUCCEEDED)
    await harness.tick(5)
    assert harness.step(run_id, agent) == "done"


@sync
async def test_a_script_steps_params_reach_the_agent_as_the_library_checks_them(
    harness: Harness,
) -> None:
    agent = harness.add(
        "app", pre_install=(ScriptStep("restart-app", (), 60.0, (("service", "nginx"),)),)
    )
    broken = harness.add(
        "app2", pre_install=(ScriptStep("restart-app", (), 60.0, (("wait", "soon"),)),)
    )
    await harness.connect(agent, broken)
    run_id = await harness.open()
    (pre,) = harness.received(agent)
    # As `rmm run --param` sends them: as given, and checked into RMM_PARAM_<NAME> (the
    # default filling what the step left out).
    assert dict(pre.run_script.params) == {"service": "nginx"}
    assert dict(pre.run_script.env) == {"RMM_PARAM_SERVICE": "nginx", "RMM_PARAM_WAIT": "30"}
    # A step whose params stopped fitting (the library changed since the load): nothing sent.
    assert harness.received(broken) == []
    progress = harness.progress(run_id)["agents"][broken.id]
    assert progress["step"] == "failed"
    assert "params.service is required" in progress["why"], progress
    assert "params.wait=soon" in progress["why"]


@sync
async def test_a_failed_pre_script_installs_nothing(harness: Harness) -> None:
    agent = harness.add("app", pre_install=(ScriptStep("stop-app"),))
    await harness.connect(agent)
    run_id = await harness.open()
    (pre,) = harness.received(agent)
    await harness.answer(agent, pre, Status.COMMAND_FAILED)
    await harness.tick(5)
    assert harness.received(agent) == []
    progress = harness.progress(run_id)["agents"][agent.id]
    assert progress["step"] == "failed" and "stop-app" in progress["why"]


@sync
async def test_the_window_opens_a_maintenance_window_for_its_agents(harness: Harness) -> None:
    a1, a2 = harness.add("a1"), harness.add("a2")
    await harness.open()
    (window,) = harness.alerts.windows
    assert set(window.agents) == {a1.id, a2.id}
    assert window.current(START + 1) is not None
    assert window.current(END + 60) is not None  # reboots near the end page nobody either
    assert window.current(END + 2 * HOUR) is None


@sync
async def test_an_agent_that_installed_must_report_back_or_an_alert_fires(
    harness: Harness,
) -> None:
    quiet, fine = harness.add("quiet"), harness.add("fine")
    await harness.connect(quiet, fine)
    run_id = await harness.open()
    for agent in (quiet, fine):
        (install,) = harness.received(agent)
        await harness.answer(agent, install, Status.COMMAND_SUCCEEDED)
    await harness.tick(60)
    harness.agents[fine.id].last_seen = harness.clock.now + 30
    harness.clock.now = END + HOUR - 1
    await harness.tick()
    assert harness.alerts.manager.open_alerts_of(quiet.id) == []
    await harness.tick(2)
    (alert,) = harness.alerts.manager.open_alerts_of(quiet.id)
    assert alert.rule_name == "PatchReportBackMissing" and alert.severity == "critical"
    assert harness.alerts.manager.open_alerts_of(fine.id) == []
    run = PatchRunStore(harness.store).get(run_id)
    assert run is not None and run.state == CLOSED
    assert run.progress["summary"] == {"done": 2}


@sync
async def test_an_occurrence_opened_twice_is_one_run(harness: Harness) -> None:
    agent = harness.add("once")
    await harness.connect(agent)
    first = await harness.open()
    second = await harness.open()
    assert first == second
    assert len(harness.received(agent)) == 1


@sync
async def test_the_next_ring_waits_until_every_rebooted_agent_reported_again(
    harness: Harness,
) -> None:
    pilot = harness.add(
        "pilot1", ring=PILOT, reboot=RebootPolicy(mode=REBOOT_ALWAYS, consent="unattended")
    )
    broad = harness.add("broad1", ring=BROAD)
    await harness.connect(pilot, broad)
    run_id = await harness.open()
    (install,) = harness.received(pilot)
    await harness.answer(pilot, install, Status.COMMAND_SUCCEEDED)
    await harness.tick(5)
    (reboot,) = harness.received(pilot)
    await harness.answer(pilot, reboot, Status.COMMAND_SUCCEEDED)
    await harness.tick(5)
    await harness.tick(2 * HOUR)  # soaked long enough, but it has not reported since
    ring = harness.progress(run_id)["rings"][0]
    assert ring["state"] == "soaking" and ring["waiting_for"], ring
    assert harness.received(broad) == []
    harness.agents[pilot.id].last_seen = harness.clock.now + 1
    await harness.tick(2)
    assert harness.progress(run_id)["rings"][0]["state"] == "healthy"
    await harness.tick()
    (broad_install,) = harness.received(broad)
    assert broad_install.HasField("install_updates")


@sync
async def test_a_failed_install_is_asked_for_again_in_the_next_window(harness: Harness) -> None:
    agent = harness.add("flaky")
    await harness.connect(agent)
    await harness.open()
    (first,) = harness.received(agent)
    await harness.answer(
        agent, first, Status.COMMAND_FAILED, {"apt:openssl": commands_pb2.UPDATE_FAILED}
    )
    await harness.tick(60)
    assert harness.received(agent) == []  # not retried in the same window
    # The next month's window.
    next_start = harness.window().next_start(START)
    assert next_start is not None
    harness.clock.now = next_start
    run = await harness.rollout.open(harness.window(), next_start, next_start + 4 * HOUR)
    (second,) = harness.received(agent)
    assert list(second.install_updates.update_ids) == ["apt:openssl"]
    assert second.run_id == run.id != first.run_id


@sync
async def test_a_schedule_changed_while_its_window_is_open_opens_no_second_run(
    harness: Harness,
) -> None:
    agent = harness.add("once")
    await harness.connect(agent)
    first = await harness.open()
    harness.clock.now = START + HOUR
    # Reloaded with a new time: the same window, a new start, while the first run is open.
    again = await harness.rollout.open(harness.window(), START + HOUR - 60, END + HOUR)
    assert again.id == first
    assert len(harness.received(agent)) == 1


def requested(patches: PatchStore, record: AgentRecord) -> float | None:
    state = patches.agent_state(record.id)
    assert state is not None
    return state.install_requested_at


@sync
async def test_an_install_request_is_met_by_the_window_that_installs_and_kept_when_missed(
    harness: Harness,
) -> None:
    """`rmm patches install` without --now: the next window covering the agent installs its
    approved updates; the request stays until it did (an agent the window missed keeps it)."""
    back, away = harness.add("back"), harness.add("away")
    inventory = PatchInventory(harness.store, harness.agents.get, clock=harness.clock)
    patches = inventory.patches
    for record in (back, away):
        row = UpdateRow(
            record.id, "apt:openssl", "openssl", "1", "2", "security", "apt", "", "", None,
            None, False, START - HOUR, "approved", "approved by alice",
        )  # fmt: skip
        patches.write_list(record.id, [row], [], "digest", False, START - HOUR)
    patches.request_install([back.id, away.id], "alice", START - 60)
    # The real per-agent state (the server's), over the database.
    harness.rollout.state = InventoryState(inventory, harness.clock)
    run_id = await harness.open()
    await harness.tick(HOUR)
    # The window asked both; neither has installed yet: both requests stand.
    assert requested(patches, back) == requested(patches, away) == START - 60
    await harness.connect(back)
    (install,) = harness.received(back)
    assert list(install.install_updates.update_ids) == ["apt:openssl"]
    await harness.answer(back, install, Status.COMMAND_SUCCEEDED)
    await harness.tick(60)
    assert harness.step(run_id, back) == "done"
    assert requested(patches, back) is None, "installed in this window: the request is met"
    assert patches.approved_updates([back.id], harness.clock.now) == {}
    # The window ends with the other one offline: missed, and still asked for next time.
    harness.clock.now = END
    await harness.commands.expire_overdue()
    await harness.tick()
    assert harness.step(run_id, away) == "missed"
    assert requested(patches, away) == START - 60


@sync
async def test_each_reboot_consent_word_reaches_the_agent_as_its_consent_mode(
    harness: Harness,
) -> None:
    """A patch policy's `reboot.consent` maps onto the consent layer's modes (docs/consent.md):
    unattended: nobody is told; warn: logged-in users are notified (CONSENT_NOTIFY); ask: a
    logged-in user's yes is awaited (CONSENT_ASK)."""
    expected = {
        "unattended": commands_pb2.CONSENT_UNATTENDED,
        "warn": commands_pb2.CONSENT_NOTIFY,
        "ask": commands_pb2.CONSENT_ASK,
    }
    assert set(expected) == set(REBOOT_CONSENT_WORDS), "every word a policy may give is mapped"
    hosts = {
        word: harness.add(f"host-{word}", updates=[], reboot=RebootPolicy(REBOOT_ALWAYS, word))
        for word in expected
    }
    await harness.connect(*hosts.values())
    await harness.open()
    for word, host in hosts.items():
        (reboot,) = harness.received(host)
        assert reboot.HasField("reboot"), word
        assert reboot.consent == expected[word], word
    # The default (no consent key in the policy) is warn: notified, never silently rebooted.
    assert RebootPolicy(REBOOT_ALWAYS).consent == "warn"
