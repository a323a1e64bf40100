"""install_updates: per-update results, from real signed commands, with real apt as root."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rmm_agent.actions import execute, install_updates
from rmm_agent.commands.verify import CommandVerifier
from rmm_agent.config import AgentConfig
from rmm_agent.patching.apt import AptBackend
from rmm_agent.patching.base import InstallOutcome, PendingUpdate
from rmm_proto import commands_pb2
from rmm_server.signing import CommandSigner
from tests.aptrepo import NEEDS_ROOT_AND_APT, apt_repo, installed_version

from .helpers import Agent

AGENT_ID = "agent-1"
PACKAGE = "rmm-test-hello"
Status = commands_pb2.CommandStatus


def signed_command(signer: CommandSigner, request: commands_pb2.InstallUpdates) -> bytes:
    """Return a serialized SignedCommand carrying `request`, as the server sends it."""
    now = time.time()
    command = commands_pb2.Command(
        id=f"cmd-{time.monotonic_ns()}",
        agent_id=AGENT_ID,
        issued_at=now,
        expires_at=now + 60,
        timeout_seconds=240,
        operator="alice",
        install_updates=request,
    )
    return signer.sign(command).SerializeToString()


def received(signer: CommandSigner, wire: bytes) -> commands_pb2.Command:
    """Verify a command the way the agent's channel does before running it."""
    signed = commands_pb2.SignedCommand.FromString(wire)
    return CommandVerifier(signer.public_key, AGENT_ID).verify(signed)


class FakeBackend:
    """A backend whose answers the test sets: pending ids and the outcome of each install."""

    classifications: tuple[str, ...] = ("security", "bugfix")

    def __init__(self, name: str, outcomes: dict[str, InstallOutcome], present: bool = True):
        self.name = name
        self.outcomes = outcomes
        self.present = present
        self.asked: list[tuple[list[str], float]] = []
        self.error: Exception | None = None

    def available(self) -> bool:
        return self.present

    def stamp(self) -> object:
        return None

    def lists_updated_at(self) -> float | None:
        return None

    def read_updates(self) -> list[PendingUpdate]:
        return []

    def install(self, ids: Sequence[str], timeout: float) -> list[InstallOutcome]:
        self.asked.append((list(ids), timeout))
        if self.error is not None:
            raise self.error
        return [self.outcomes[uid] for uid in ids]


def run_with(
    backends: list[FakeBackend], tmp_path: Path, *ids: str, backend: str = "", timeout: float = 60
) -> commands_pb2.CommandResult:
    command = commands_pb2.Command(
        id="c-1", install_updates=commands_pb2.InstallUpdates(update_ids=ids, backend=backend)
    )
    context = Agent().context(command, state_dir=tmp_path, timeout=timeout)
    return install_updates.make_run(lambda: backends)(command.install_updates, context)


def statuses(result: commands_pb2.CommandResult) -> list[tuple[str, str]]:
    return [
        (u.update_id, commands_pb2.UpdateInstallStatus.Name(u.status))
        for u in result.install_updates.updates
    ]


def test_each_id_goes_to_its_backend_and_results_keep_the_order_asked(tmp_path: Path) -> None:
    apt = FakeBackend(
        "apt",
        {
            "apt:a": InstallOutcome("apt:a", "installed", "", "2.0"),
            "apt:k": InstallOutcome("apt:k", "installed", "", "6.1", reboot_required=True),
        },
    )
    snap = FakeBackend("snap", {"snap:c": InstallOutcome("snap:c", "locked", "busy")})
    result = run_with([apt, snap], tmp_path, "snap:c", "apt:a", "zz:x", "apt:k", "apt:a")
    assert result.status == Status.COMMAND_FAILED
    assert result.error == "2 of 4 updates not installed: 1 locked, 1 skipped"
    assert statuses(result) == [
        ("snap:c", "UPDATE_LOCKED"),
        ("apt:a", "UPDATE_INSTALLED"),
        ("zz:x", "UPDATE_SKIPPED"),
        ("apt:k", "UPDATE_INSTALLED"),
    ]
    assert [ids for ids, _timeout in apt.asked] == [["apt:a", "apt:k"]]
    assert 0 < apt.asked[0][1] <= 60
    updates = result.install_updates.updates
    assert "no backend 'zz' on this host (this OS has: apt, snap)" in updates[2].message
    assert (updates[3].version, updates[3].reboot_required) == ("6.1", True)
    assert result.install_updates.reboot_required


def test_all_installed_is_success(tmp_path: Path) -> None:
    apt = FakeBackend("apt", {"apt:a": InstallOutcome("apt:a", "installed", "", "2.0")})
    result = run_with([apt], tmp_path, "apt:a")
    assert result.status == Status.COMMAND_SUCCEEDED, result.error
    assert statuses(result) == [("apt:a", "UPDATE_INSTALLED")]
    assert not result.install_updates.reboot_required


def test_a_backend_filter_missing_backend_and_crashing_backend(tmp_path: Path) -> None:
    apt = FakeBackend("apt", {})
    apt.error = RuntimeError("apt-get -s dist-upgrade: exited 100: E: broken packages")
    flatpak = FakeBackend("flatpak", {}, present=False)
    result = run_with([apt, flatpak], tmp_path, "apt:a", "flatpak:org.x", backend="apt")
    assert statuses(result) == [("apt:a", "UPDATE_FAILED"), ("flatpak:org.x", "UPDATE_SKIPPED")]
    first, second = result.install_updates.updates
    assert first.message == "apt: apt-get -s dist-upgrade: exited 100: E: broken packages"
    assert second.message == "'flatpak:org.x' is not an update of backend 'apt'"
    result = run_with([apt, flatpak], tmp_path, "flatpak:org.x")
    assert result.install_updates.updates[0].message == (
        "'flatpak:org.x': flatpak is not installed on this host"
    )


def test_no_time_left_skips_and_no_ids_fails(tmp_path: Path) -> None:
    apt = FakeBackend("apt", {})
    result = run_with([apt], tmp_path, "apt:a", timeout=1)
    assert statuses(result) == [("apt:a", "UPDATE_SKIPPED")]
    assert apt.asked == []
    result = run_with([apt], tmp_path)
    assert (result.status, result.error) == (
        Status.COMMAND_FAILED,
        "install_updates names no update ids; give at least one",
    )


def test_execute_dispatches_a_signed_command_to_the_hosts_backends(tmp_path: Path) -> None:
    signer = CommandSigner(Ed25519PrivateKey.generate())
    request = commands_pb2.InstallUpdates(update_ids=["nosuchmanager:pkg"])
    command = received(signer, signed_command(signer, request))
    result = execute(command, Agent().context(command, state_dir=tmp_path))
    assert result.status == Status.COMMAND_FAILED
    assert statuses(result) == [("nosuchmanager:pkg", "UPDATE_SKIPPED")]
    assert result.command_id == command.id


def test_a_host_may_forbid_installs(tmp_path: Path) -> None:
    command = commands_pb2.Command(
        id="c-2", install_updates=commands_pb2.InstallUpdates(update_ids=["apt:a"])
    )
    config = AgentConfig(forbid_actions=["install_updates"])
    result = execute(command, Agent().context(command, state_dir=tmp_path, config=config))
    assert result.status == Status.COMMAND_REFUSED


@pytest.mark.slow
@pytest.mark.timeout(300)
@NEEDS_ROOT_AND_APT[0]
@NEEDS_ROOT_AND_APT[1]
@NEEDS_ROOT_AND_APT[2]
def test_a_signed_command_installs_a_real_package(tmp_path: Path) -> None:
    signer = CommandSigner(Ed25519PrivateKey.generate())
    with apt_repo(tmp_path / "apt", [PACKAGE]) as repo:
        backend = AptBackend(apt_options=repo.options, lists_dir=repo.lists)
        request = commands_pb2.InstallUpdates(
            update_ids=[f"apt:{PACKAGE}", "apt:rmm-not-there"], backend="apt"
        )
        command = received(signer, signed_command(signer, request))
        context = Agent().context(command, state_dir=tmp_path, timeout=240)
        result = install_updates.make_run(lambda: [backend])(command.install_updates, context)
        assert statuses(result) == [
            (f"apt:{PACKAGE}", "UPDATE_INSTALLED"),
            ("apt:rmm-not-there", "UPDATE_SKIPPED"),
        ], result
        assert result.install_updates.updates[0].version == "1.1"
        assert installed_version(PACKAGE) == "1.1"
