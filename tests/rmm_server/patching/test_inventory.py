"""Pending updates on the server, on SQLite and PostgreSQL: taken from the real patches collector's
output on change only, decided by manual records and policy rules, closed by install outcomes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from rmm_agent.collectors.patches import PatchesCollector
from rmm_agent.patching.base import PendingUpdate
from rmm_agent.report import _Outcome, _to_proto
from rmm_proto import agent_pb2, commands_pb2, common_pb2
from rmm_server.patching.inventory import PatchInventory
from rmm_server.patching.model import (
    AGENT,
    APPROVE,
    CLIENT,
    DECLINE,
    EVERYWHERE,
    SITE,
    ApprovalRule,
    PatchSettings,
)
from rmm_server.storage import AgentRecord, Store, open_store
from rmm_server.storage.commands import CommandRecord
from rmm_server.storage.patches import PatchStore, UpdateRow

DAY = 86_400.0


class Backend:
    """An update source behind the agent's real interface, with a list the test sets."""

    name = "apt"
    classifications: tuple[str, ...] = ("security", "bugfix")

    def __init__(self, updates: list[PendingUpdate]) -> None:
        self.updates = updates

    def available(self) -> bool:
        return True

    def stamp(self) -> object:
        return None

    def lists_updated_at(self) -> float | None:
        return None

    def read_updates(self) -> list[PendingUpdate]:
        return list(self.updates)


def pkg(
    name: str, version: str = "2", classification: str = "security", published: float | None = None
) -> PendingUpdate:
    return PendingUpdate(
        f"apt:{name}",
        name,
        "1",
        version,
        classification,
        "apt",
        "deb.debian.org",
        published=published,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Host:
    """One agent: its real collector, producing reports as the report builder does."""

    def __init__(self, record: AgentRecord, clock: Clock, updates: list[PendingUpdate]) -> None:
        self.record = record
        self.backend = Backend(updates)
        self.collector = PatchesCollector(
            backends=[self.backend], clock=clock, wall_clock=clock, refresh_seconds=0
        )

    def report(self, reboot: float | None = None) -> agent_pb2.Report:
        output = self.collector.collect()
        report = agent_pb2.Report(sequence=1)
        report.collectors.append(
            _to_proto(_Outcome("patches", True, "", 0.01, output), with_info=True)
        )
        if reboot is not None:
            system = report.collectors.add(name="system", ok=True)
            system.samples.append(common_pb2.Sample(name="system_reboot_required", value=reboot))
        return report


def agent(agent_id: str, client: str = "acme", site: str = "hq") -> AgentRecord:
    return AgentRecord(
        id=agent_id,
        credential_hash="x",
        client=client,
        site=site,
        enrolled_at=0.0,
        hostname=f"host-{agent_id}",
    )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    yield opened
    opened.close()


def inventory(
    store: Store,
    clock: Clock,
    agents: list[AgentRecord],
    settings: dict[str, PatchSettings] | None = None,
    fast: bool = True,
) -> PatchInventory:
    """The inventory as the server builds it (`fast`: with the agents' list, so that manual
    records are applied by scope; without, every row of their updates is decided again)."""
    by_id = {a.id: a for a in agents}
    chosen = settings if settings is not None else {}
    made = PatchInventory(
        store,
        by_id.get,
        settings_for=lambda a: chosen.get(a.id, PatchSettings(agent_id=a.id)),
        clock=clock,
        agents=(lambda: list(by_id.values())) if fast else None,
    )
    made.known = by_id  # type: ignore[attr-defined]  # the test adds agents here
    return made


def listed(store: Store, agent_id: str) -> dict[str, str]:
    return {r.update_id: r.decision for r in PatchStore(store).agent_updates(agent_id)}


def test_the_list_is_stored_on_change_and_removed_updates_leave(store: Store) -> None:
    clock = Clock()
    a1 = agent("a1")
    host = Host(a1, clock, [pkg("openssl"), pkg("curl")])
    inv = inventory(store, clock, [a1])
    patches = PatchStore(store)

    first = host.report()
    asyncio.run(inv.observe(a1, first))
    assert listed(store, "a1") == {"apt:openssl": "pending", "apt:curl": "pending"}
    state = patches.agent_state("a1")
    assert state is not None and state.digest and state.listed_at == clock.now

    # Unchanged: the collector sends the digest only, and the server writes nothing.
    clock.now += 60
    second = host.report()
    assert b'"updates"' not in second.collectors[0].info_json
    asyncio.run(inv.observe(a1, second))
    after = patches.agent_state("a1")
    assert after is not None and after.listed_at == state.listed_at

    # curl installed by hand, openssl has a newer build, zlib is new.
    host.backend.updates = [pkg("openssl", "3"), pkg("zlib")]
    clock.now += 60
    asyncio.run(inv.observe(a1, host.report()))
    rows = {r.update_id: r for r in patches.agent_updates("a1")}
    assert sorted(rows) == ["apt:openssl", "apt:zlib"]
    assert rows["apt:openssl"].available == "3"
    assert rows["apt:openssl"].first_seen == state.listed_at, "first seen is kept"
    assert rows["apt:zlib"].first_seen == clock.now


def test_a_restarted_server_keeps_the_lists_and_an_unknown_digest_waits_for_the_resend(
    store: Store,
) -> None:
    clock = Clock()
    a1 = agent("a1")
    host = Host(a1, clock, [pkg("openssl")])
    asyncio.run(inventory(store, clock, [a1]).observe(a1, host.report()))

    # A new process on the same database: the digest-only report matches what is held.
    restarted = inventory(store, clock, [a1])
    clock.now += 60
    asyncio.run(restarted.observe(a1, host.report()))
    assert listed(store, "a1") == {"apt:openssl": "pending"}

    # The report carrying a change was lost: the next says a digest the server lacks.
    host.backend.updates = [pkg("openssl"), pkg("bash")]
    host.report()  # lost on its way
    clock.now += 60
    lacking = host.report()
    assert b'"updates"' not in lacking.collectors[0].info_json
    asyncio.run(restarted.observe(a1, lacking))
    state = PatchStore(store).agent_state("a1")
    assert state is not None and state.reported_digest != state.digest
    assert listed(store, "a1") == {"apt:openssl": "pending"}, "nothing invented"

    # Six hours on, the collector sends the list again and the server takes it.
    clock.now += 6 * 3600
    asyncio.run(restarted.observe(a1, host.report()))
    state = PatchStore(store).agent_state("a1")
    assert state is not None and state.reported_digest == state.digest
    assert set(listed(store, "a1")) == {"apt:openssl", "apt:bash"}


@pytest.mark.parametrize("fast", [True, False], ids=["by-scope", "decide-again"])
def test_manual_records_narrowest_scope_wins_and_the_fleet_view_counts(
    store: Store, fast: bool
) -> None:
    clock = Clock()
    agents = [agent("a1", site="hq"), agent("a2", site="branch"), agent("b1", client="beta")]
    inv = inventory(store, clock, agents, fast=fast)
    for record in agents:
        host = Host(record, clock, [pkg("openssl"), pkg("curl", classification="bugfix")])
        asyncio.run(inv.observe(record, host.report()))
    patches = PatchStore(store)

    assert inv.record_decisions(["apt:openssl"], APPROVE, [(EVERYWHERE, "")], "alice") == 3
    assert inv.record_decisions(["apt:openssl"], DECLINE, [(SITE, "acme/branch")], "bob") == 1
    assert inv.record_decisions(["apt:c*"], APPROVE, [(CLIENT, "beta")], "carol") == 1
    assert listed(store, "a1") == {"apt:openssl": "approved", "apt:curl": "pending"}
    assert listed(store, "a2") == {"apt:openssl": "declined", "apt:curl": "pending"}
    assert listed(store, "b1") == {"apt:openssl": "approved", "apt:curl": "approved"}
    why = {r.update_id: r.why for r in patches.agent_updates("a2")}
    assert "declined by bob for site acme/branch" in why["apt:openssl"]

    view = {u.update_id: u for u in patches.fleet_view(None, clock.now)}
    assert (view["apt:openssl"].agents, view["apt:openssl"].approved) == (3, 2)
    assert view["apt:openssl"].declined == 1
    assert (view["apt:curl"].pending, view["apt:curl"].approved) == (2, 1)
    only_acme = {u.update_id: u for u in patches.fleet_view(["a1", "a2"], clock.now)}
    assert only_acme["apt:curl"].agents == 2 and only_acme["apt:openssl"].approved == 1

    # A newer record everywhere does not override the narrower site record.
    clock.now += 1
    assert inv.record_decisions(["apt:openssl"], APPROVE, [(EVERYWHERE, "")], "dave") == 2
    assert listed(store, "a2")["apt:openssl"] == "declined"
    why_a1 = {r.update_id: r.why for r in patches.agent_updates("a1")}
    assert "approved by dave everywhere" in why_a1["apt:openssl"]
    # An agent-scope glob outranks the site's exact id (scope first, then exact over glob).
    clock.now += 1
    assert inv.record_decisions(["apt:open*"], APPROVE, [(AGENT, "a2")], "erin") == 1
    assert listed(store, "a2")["apt:openssl"] == "approved"
    assert inv.record_decisions(["apt:*"], DECLINE, [(SITE, "acme/branch")], "fred") == 1
    assert listed(store, "a2") == {"apt:openssl": "approved", "apt:curl": "declined"}
    clock.now += 1
    inv.record_decisions(["apt:openssl"], DECLINE, [(SITE, "acme/branch")], "gina")
    assert listed(store, "a2")["apt:openssl"] == "approved", "the agent's record still holds"

    # A new agent's list is decided against the records at once.
    late = agent("a3", site="branch")
    inv.known[late.id] = late  # type: ignore[attr-defined]
    asyncio.run(inv.observe(late, Host(late, clock, [pkg("openssl")]).report()))
    assert listed(store, "a3") == {"apt:openssl": "declined"}, "the site decline; erin: a2 only"


def test_a_policy_reload_decides_every_row_again(store: Store) -> None:
    clock = Clock()
    a1 = agent("a1")
    settings: dict[str, PatchSettings] = {}
    inv = inventory(store, clock, [a1], settings)
    updates = [pkg("openssl"), pkg("curl", classification="bugfix")]
    asyncio.run(inv.observe(a1, Host(a1, clock, updates).report()))
    inv.record_decisions(["apt:curl"], DECLINE, [(AGENT, "a1")], "alice")
    assert listed(store, "a1") == {"apt:openssl": "pending", "apt:curl": "declined"}
    rule = ApprovalRule("all", classifications=frozenset({"security", "bugfix"}))
    settings["a1"] = PatchSettings(agent_id="a1", rules=(rule,))
    assert inv.redecide() == 1
    assert listed(store, "a1") == {"apt:openssl": "approved", "apt:curl": "declined"}


def driver(name: str, *hardware_ids: str) -> PendingUpdate:
    return PendingUpdate(
        f"fwupd:{name}", name, "1", "2", "driver", "fwupd", "lvfs", hardware_ids=hardware_ids
    )


def test_a_hardware_id_pin_holds_when_decisions_are_recomputed_from_the_database(
    store: Store,
) -> None:
    clock = Clock()
    a1 = agent("a1")
    pinned_nic = "PCI\\VEN_8086&DEV_15B8"
    rule = ApprovalRule(
        "this-nic-only", classifications=frozenset({"driver"}),
        hardware_ids=frozenset({pinned_nic.casefold()}),
    )  # fmt: skip
    settings = {"a1": PatchSettings(agent_id="a1", rules=(rule,))}
    inv = inventory(store, clock, [a1], settings)
    updates = [
        driver("e1000e", "PCI\\VEN_8086&DEV_15B8&SUBSYS_0001", pinned_nic),
        driver("r8169", "PCI\\VEN_10EC&DEV_8168"),
    ]
    asyncio.run(inv.observe(a1, Host(a1, clock, updates).report()))
    decided = {"fwupd:e1000e": "approved", "fwupd:r8169": "pending"}
    assert listed(store, "a1") == decided, "as the list arrives"
    rows = {r.update_id: r for r in PatchStore(store).agent_updates("a1")}
    assert rows["fwupd:e1000e"].hardware_ids.splitlines() == [
        "PCI\\VEN_8086&DEV_15B8&SUBSYS_0001",
        pinned_nic,
    ]

    # A policy reload decides every stored row again: the pin still finds its hardware.
    settings["a1"] = PatchSettings(agent_id="a1", rules=(rule,))
    inv.redecide()
    assert listed(store, "a1") == decided, "after a reload, from the database"
    # And a restarted server (a new inventory over the same database) decides the same.
    again = inventory(store, clock, [a1], settings, fast=False)
    again.redecide()
    assert listed(store, "a1") == decided
    # An operator's decline by scope (here another agent's) decides every row of the updates it
    # names again, from the database: a1's pinned driver stays approved.
    assert again.record_decisions(["fwupd:*"], DECLINE, [(AGENT, "a2")], "alice") == 0
    assert listed(store, "a1") == decided


def test_a_rule_deferral_becomes_approved_when_it_ends_without_a_write(store: Store) -> None:
    clock = Clock()
    a1 = agent("a1")
    rule = ApprovalRule(
        "security-after-3d",
        classifications=frozenset({"security"}),
        min_age_seconds=3 * DAY,
        policy="patching",
        source="policies/patching.yaml:5",
    )
    settings = {"a1": PatchSettings(agent_id="a1", rules=(rule,))}
    inv = inventory(store, clock, [a1], settings)
    published = clock.now - DAY
    asyncio.run(inv.observe(a1, Host(a1, clock, [pkg("openssl", published=published)]).report()))
    patches = PatchStore(store)
    (row,) = patches.agent_updates("a1")
    assert row.decision == "pending" and row.not_before == published + 3 * DAY
    assert patches.fleet_view(None, clock.now)[0].pending == 1
    assert patches.fleet_view(None, published + 3 * DAY)[0].approved == 1
    assert patches.approved_updates(["a1"], published + 3 * DAY) == {"a1": ["apt:openssl"]}
    assert patches.approved_updates(["a1"], clock.now) == {}


def install_record(
    agent_id: str, *results: tuple[str, int, str], reboot: bool = False
) -> CommandRecord:
    outcome = commands_pb2.InstallUpdatesResult(reboot_required=reboot)
    for update_id, status, message in results:
        outcome.updates.add(update_id=update_id, status=status, message=message, version="2")
    result = commands_pb2.CommandResult(
        command_id="c1", status=commands_pb2.COMMAND_SUCCEEDED, finished_at=1_800_000_100.0
    )
    result.install_updates.CopyFrom(outcome)
    return CommandRecord(
        id="c1",
        run_id="",
        agent_id=agent_id,
        hostname="h",
        operator="alice",
        action="install_updates",
        summary="",
        status=commands_pb2.COMMAND_SUCCEEDED,
        issued_at=0.0,
        expires_at=1.0,
        signed=b"",
        result=result.SerializeToString(),
    )


def test_install_outcomes_close_installed_updates_and_mark_failures(store: Store) -> None:
    clock = Clock()
    a1 = agent("a1")
    seen: list[str] = []
    inv = inventory(store, clock, [a1])
    inv.on_outcome = seen.append
    asyncio.run(
        inv.observe(a1, Host(a1, clock, [pkg("openssl"), pkg("curl"), pkg("vim")]).report(reboot=0))
    )
    inv.record_decisions(["apt:*"], APPROVE, [(EVERYWHERE, "")], "alice")
    patches = PatchStore(store)
    assert patches.compliance(["a1"], clock.now)[0].approved_missing == 3

    stored = inv.record_outcomes(
        [
            install_record(
                "a1",
                ("apt:openssl", commands_pb2.UPDATE_INSTALLED, ""),
                ("apt:curl", commands_pb2.UPDATE_FAILED, "E: Unable to fetch"),
                ("apt:vim", commands_pb2.UPDATE_LOCKED, "dpkg lock held"),
                reboot=True,
            )
        ]
    )
    assert stored == 3 and seen == ["installed", "failed", "locked"]
    rows = {r.update_id: r for r in patches.agent_updates("a1")}
    assert sorted(rows) == ["apt:curl", "apt:vim"], "installed left the list"
    assert rows["apt:curl"].state(clock.now) == "failed"
    assert rows["apt:vim"].state(clock.now) == "approved", "locked: tried again, not failed"
    view = {u.update_id: u for u in patches.fleet_view(None, clock.now)}
    assert view["apt:openssl"].installed == 1 and view["apt:openssl"].agents == 0
    assert view["apt:curl"].failed == 1
    (report,) = patches.compliance(None, clock.now)
    assert (report.approved_missing, report.failed) == (2, 1)
    assert report.reboot_pending and report.last_install_at == 1_800_000_100.0
    assert not report.compliant


def test_two_writers_of_one_agents_list_at_once_both_succeed(store: Store) -> None:
    """Two replicas (or a resent report beside its original) storing the same agent's new list
    at the same moment: neither finds the other's uncommitted rows, and neither may fail."""
    clock = Clock()
    patches = PatchStore(store)
    rounds = 25
    barrier = threading.Barrier(2)

    def write(round_no: int) -> None:
        rows = [
            UpdateRow(
                agent_id="a1",
                update_id=f"apt:pkg{round_no}-{n}",
                name=f"pkg{round_no}-{n}",
                current="1",
                available="2",
                classification="security",
                backend="apt",
                source="deb.debian.org",
                severity="",
                published=None,
                size_bytes=None,
                reboot_required=False,
                first_seen=clock.now,
                decision="pending",
                why="",
            )
            for n in range(20)
        ]
        barrier.wait()
        patches.write_list("a1", rows, [], f"digest-{round_no}", False, clock.now)

    with ThreadPoolExecutor(2) as pool:
        for round_no in range(rounds):
            list(pool.map(write, [round_no, round_no]))  # raises what either raised
    assert len(listed(store, "a1")) == rounds * 20
    state = patches.agent_state("a1")
    assert state is not None and state.digest == f"digest-{rounds - 1}"


def test_one_agents_reports_taken_side_by_side_leave_the_newest_list(store: Store) -> None:
    """A resent batch is processed concurrently: the list of the later report stands."""
    clock = Clock()
    a1 = agent("a1")
    host = Host(a1, clock, [pkg("openssl")])
    inv = inventory(store, clock, [a1])
    reports = []
    for n in range(6):
        host.backend.updates = [pkg("openssl", str(n + 2)), pkg(f"extra{n}")]
        clock.now += 60
        reports.append(host.report())

    async def all_at_once() -> None:
        await asyncio.gather(*(inv.observe(a1, report) for report in reports))

    asyncio.run(all_at_once())
    assert listed(store, "a1") == {"apt:openssl": "pending", "apt:extra5": "pending"}
    state = PatchStore(store).agent_state("a1")
    assert state is not None and state.digest == state.reported_digest
    # The server holds that digest: the next report, the digest alone, writes nothing.
    clock.now += 60
    asyncio.run(inv.observe(a1, host.report()))
    after = PatchStore(store).agent_state("a1")
    assert after is not None and after.listed_at == state.listed_at


def test_a_list_changed_and_changed_back_in_one_resent_batch_ends_as_the_last_said(
    store: Store,
) -> None:
    """The held list L0; a batch says L1 then L0 again, taken side by side: L0 stands (the
    second report must wait for the first's write, though it matches what is held)."""
    clock = Clock()
    a1 = agent("a1")
    host = Host(a1, clock, [pkg("openssl")])
    inv = inventory(store, clock, [a1])
    asyncio.run(inv.observe(a1, host.report()))
    host.backend.updates = [pkg("openssl"), pkg("bash")]
    clock.now += 60
    changed = host.report()
    host.backend.updates = [pkg("openssl")]
    clock.now += 60
    back = host.report()
    assert b'"updates"' in back.collectors[0].info_json

    async def both() -> None:
        await asyncio.gather(inv.observe(a1, changed), inv.observe(a1, back))

    asyncio.run(both())
    assert listed(store, "a1") == {"apt:openssl": "pending"}
