"""driver_package: a real .deb installed, replaced and rolled back as root; other platforms'
command lines as strings, pnputil's parsed from recorded output."""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from rmm_agent.actions import ACTIONS, INTERACTIVE, driver_package, execute
from rmm_agent.actions.base import ActionContext, action
from rmm_agent.actions.driver_package import handle
from rmm_agent.patching.base import ProcessRunner
from rmm_common.command_summary import describe
from rmm_proto import commands_pb2
from tests.aptrepo import NEEDS_ROOT_AND_APT, installed_version
from tests.aptrepo import build_deb as build_test_deb
from tests.host_dpkg import host_dpkg

from .helpers import Agent

PACKAGE = "rmm-test-driver"  # not the apt tests' package: both may run at once
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "patching"
Status = commands_pb2.CommandStatus


def build_deb(root: Path, version: str) -> bytes:
    """Build a tiny package of `version` with dpkg-deb; return its bytes."""
    return build_test_deb(root, PACKAGE, version, root).read_bytes()


def installed() -> str:
    return installed_version(PACKAGE)


def guarded(
    runner: ProcessRunner, platform: str
) -> Callable[[commands_pb2.DriverPackage, ActionContext], commands_pb2.CommandResult]:
    """Return the action run with `runner` as on `platform`, failures turned into results."""

    @action
    def run_it(
        request: commands_pb2.DriverPackage, context: ActionContext
    ) -> commands_pb2.CommandResult:
        return handle(request, context, runner, platform)

    return run_it


def install_request(name: str, data: bytes, device: str = "") -> commands_pb2.DriverPackage:
    return commands_pb2.DriverPackage(
        operation="install",
        file_name=name,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        device=device,
    )


def rollback_request(kind: str, package: str) -> commands_pb2.DriverPackage:
    return commands_pb2.DriverPackage(operation="rollback", kind=kind, package=package)


@pytest.fixture
def no_test_package() -> Iterator[None]:
    """The host's dpkg to this test alone (tests/host_dpkg.py), the package absent around it."""
    with host_dpkg():
        subprocess.run(["dpkg", "-P", PACKAGE], capture_output=True, check=False)
        yield
        subprocess.run(["dpkg", "-P", PACKAGE], capture_output=True, check=False)


def test_the_action_is_registered_interactive_and_described() -> None:
    assert ACTIONS["driver_package"] is driver_package.run
    assert "driver_package" in INTERACTIVE  # "ask" consent covers it
    command = commands_pb2.Command(
        driver_package=install_request("nic_1.2_all.deb", b"x" * 10, device="")
    )
    assert describe(command).startswith("install driver package nic_1.2_all.deb (10 bytes, sha256 ")
    back = commands_pb2.Command(driver_package=rollback_request("pnputil", "oem42.inf"))
    assert describe(back) == "roll back driver pnputil oem42.inf"


@pytest.mark.slow
@pytest.mark.timeout(300)
@NEEDS_ROOT_AND_APT[0]
@NEEDS_ROOT_AND_APT[1]
@NEEDS_ROOT_AND_APT[2]
def test_a_real_deb_is_installed_replaced_and_rolled_back(
    tmp_path: Path, no_test_package: None
) -> None:
    builds = tmp_path / "build"
    builds.mkdir()
    v10, v11 = build_deb(builds, "1.0"), build_deb(builds, "1.1")
    state = tmp_path / "state"
    agent = Agent()

    # Through execute(), as a verified command arrives: the first install replaces nothing.
    command = commands_pb2.Command(
        id="d-1", driver_package=install_request(f"{PACKAGE}_1.0_all.deb", v10)
    )
    first = execute(command, agent.context(command, state_dir=state, timeout=120))
    assert first.status == Status.COMMAND_SUCCEEDED, first.error
    assert (first.driver_package.kind, first.driver_package.package) == ("deb", PACKAGE)
    assert (first.driver_package.version, first.driver_package.previous) == ("1.0", "")
    assert installed() == "1.0"

    request = install_request(f"{PACKAGE}_1.1_all.deb", v11)
    second = driver_package.run(request, agent.context(state_dir=state, timeout=120))
    assert second.status == Status.COMMAND_SUCCEEDED, second.error
    assert (second.driver_package.version, second.driver_package.previous) == ("1.1", "1.0")
    assert list(second.driver_package.commands)[-1].startswith("dpkg -i ")
    assert installed() == "1.1"

    # The rollback puts back the 1.0 this agent kept, then the next one removes the package.
    back = driver_package.run(rollback_request("deb", PACKAGE), agent.context(state_dir=state))
    assert back.status == Status.COMMAND_SUCCEEDED, back.error
    assert (back.driver_package.version, back.driver_package.previous) == ("1.0", "1.0")
    assert installed() == "1.0"
    again = driver_package.run(rollback_request("deb", PACKAGE), agent.context(state_dir=state))
    assert again.status == Status.COMMAND_SUCCEEDED, again.error
    assert list(again.driver_package.commands) == [f"dpkg -r {PACKAGE}"]
    assert installed() == ""
    # Nothing left to roll back: refused, and says why.
    none = driver_package.run(rollback_request("deb", PACKAGE), agent.context(state_dir=state))
    assert none.status == Status.COMMAND_FAILED
    assert "nothing to roll back" in none.error


def test_damaged_unknown_or_foreign_packages_are_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    ran: list[list[str]] = []

    def runner(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        ran.append(list(argv))
        return 0, "", ""

    context = Agent().context(state_dir=tmp_path)
    damaged = install_request("nic.deb", b"data")
    damaged.sha256 = "0" * 64
    cases = [
        (damaged, "linux", "damaged on the way"),
        (install_request("nic.exe", b"x"), "linux", "is a .deb, .rpm, .cab, .zip or .inf"),
        (install_request("nic.zip", b"x"), "linux", "installs on Windows"),
        (install_request("nic.deb", b"x"), "win32", "installs on Linux"),
        (install_request("../etc/x.deb", b"x"), "linux", ""),
        (rollback_request("msi", "x"), "linux", "rollback kind msi is unknown"),
        (rollback_request("deb", "bad name;rm"), "linux", "is not a package name"),
        (rollback_request("pnputil", "C:\\x.inf"), "win32", "not a published driver name"),
    ]
    for request, platform, reason in cases:
        result = guarded(runner, platform)(request, context)
        assert result.status == Status.COMMAND_FAILED, request
        assert reason in result.error, result.error
    # "../etc/x.deb" is reduced to its name: it is written inside the agent's store only.
    assert not (tmp_path.parent / "etc").exists()
    assert all(argv[0] in ("dpkg-deb", "dpkg-query") for argv in ran)


class Recorder:
    """A runner answering from a table of argv prefixes; records every command line."""

    def __init__(self, answers: dict[str, list[tuple[int, str]]]) -> None:
        self.answers = answers
        self.ran: list[str] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        line = " ".join(argv)
        self.ran.append(line)
        for prefix, queue in self.answers.items():
            if line.startswith(prefix) and queue:
                rc, out = queue.pop(0) if len(queue) > 1 else queue[0]
                return rc, out, ""
        raise AssertionError(f"unexpected command {line}")


def test_windows_driver_install_and_rollback_command_lines(tmp_path: Path) -> None:
    after = (FIXTURES / "pnputil_enum-drivers_win11-23H2.txt").read_text()
    # Before: the store holds an older package of the same .inf (oem12), not yet oem42.
    before = after.replace("oem42.inf", "oem12.inf").replace("31.0.101.5379", "31.0.101.4255")
    added = (FIXTURES / "pnputil_add-driver_win11-23H2.txt").read_text()
    runner = Recorder(
        {
            "pnputil.exe /enum-drivers": [(0, before), (0, after)],
            "pnputil.exe /add-driver": [(0, added)],
            "pnputil.exe /delete-driver": [(0, "Driver package deleted successfully.")],
        }
    )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("Graphics/iigd_dch.inf", "[Version]\n")
        zipped.writestr("Graphics/igdkmd64.sys", "binary")
    data = archive.getvalue()
    context = Agent().context(state_dir=tmp_path)
    result = handle(install_request("intel-gfx.zip", data), context, runner, "win32")
    assert result.status == Status.COMMAND_SUCCEEDED, result.error
    got = result.driver_package
    assert (got.kind, got.package, got.previous) == ("pnputil", "oem42.inf", "oem12.inf")
    assert got.version == "03/11/2024 31.0.101.5379"
    inf = tmp_path / "drivers" / "pnputil" / "intel-gfx" / "Graphics" / "iigd_dch.inf"
    assert inf.is_file()
    assert runner.ran == [
        "pnputil.exe /enum-drivers",
        f"pnputil.exe /add-driver {inf} /subdirs /install",
        "pnputil.exe /enum-drivers",
    ]
    back = handle(rollback_request("pnputil", "oem42.inf"), context, runner, "win32")
    assert back.status == Status.COMMAND_SUCCEEDED, back.error
    assert list(back.driver_package.commands) == [
        "pnputil.exe /delete-driver oem42.inf /uninstall /force"
    ]
    # A package pnputil refuses is a failure carrying pnputil's own words.
    refused = Recorder(
        {
            "pnputil.exe /enum-drivers": [(0, before)],
            "pnputil.exe /add-driver": [
                (1, (FIXTURES / "pnputil_add-driver_bad-signature_win11-23H2.txt").read_text())
            ],
        }
    )
    failed = guarded(refused, "win32")(install_request("intel-gfx.zip", data), context)
    assert failed.status == Status.COMMAND_FAILED
    assert "The hash for the file is not present" in failed.error


def test_a_zip_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("../../evil.inf", "x")
    runner = Recorder({"pnputil.exe /enum-drivers": [(0, "")]})
    result = guarded(runner, "win32")(
        install_request("evil.zip", archive.getvalue()), Agent().context(state_dir=tmp_path)
    )
    assert result.status == Status.COMMAND_FAILED and "leaves its folder" in result.error
    assert not (tmp_path / "evil.inf").exists() and runner.ran == []


def test_firmware_and_rpm_command_lines(tmp_path: Path) -> None:
    context = Agent().context(state_dir=tmp_path)
    fw = Recorder({"fwupdmgr install": [(0, "Successfully installed firmware")]})
    result = handle(install_request("bios.cab", b"cab", device="2082b5e0"), context, fw, "linux")
    assert result.status == Status.COMMAND_SUCCEEDED, result.error
    cab = tmp_path / "drivers" / "incoming" / "bios.cab"
    assert fw.ran == [f"fwupdmgr install --assume-yes --no-reboot-check {cab} 2082b5e0"]
    assert result.driver_package.reboot_required and not cab.exists()
    down = Recorder({"fwupdmgr downgrade": [(0, "")]})
    back = handle(rollback_request("fwupd", "2082b5e0"), context, down, "linux")
    assert back.status == Status.COMMAND_SUCCEEDED
    assert down.ran == ["fwupdmgr downgrade --assume-yes --no-reboot-check 2082b5e0"]

    # rpm: 2.0 replaces 1.0 (installed from elsewhere, so not kept here): the rollback asks
    # dnf for 1.0 from the repositories.
    rpm = Recorder(
        {
            "rpm -qp": [(0, "nic-kmod\n2.0-1\n")],
            "rpm -q --queryformat": [(0, "1.0-1"), (0, "2.0-1"), (0, "1.0-1")],
            "rpm -U": [(0, "")],
            "dnf downgrade": [(0, "")],
        }
    )
    installed_rpm = handle(
        install_request("nic-kmod-2.0-1.x86_64.rpm", b"rpm"), context, rpm, "linux"
    )
    assert installed_rpm.status == Status.COMMAND_SUCCEEDED, installed_rpm.error
    assert (installed_rpm.driver_package.previous, installed_rpm.driver_package.version) == (
        "1.0-1",
        "2.0-1",
    )
    back = handle(rollback_request("rpm", "nic-kmod"), context, rpm, "linux")
    assert back.status == Status.COMMAND_SUCCEEDED, back.error
    assert list(back.driver_package.commands) == ["dnf downgrade --assumeyes nic-kmod-1.0-1"]


def test_a_deb_that_replaced_a_version_not_kept_rolls_back_from_the_repositories(
    tmp_path: Path,
) -> None:
    # 0.9 came from the distribution, not through this agent: its .deb is not kept here.
    runner = Recorder(
        {
            "dpkg-deb --showformat": [(0, "nic-dkms\n1.1\n")],
            "dpkg-query --showformat": [(0, "0.9"), (0, "1.1"), (0, "0.9")],
            "dpkg -i": [(0, "Setting up nic-dkms (1.1) ...")],
            "apt-get install": [(0, "")],
        }
    )
    context = Agent().context(state_dir=tmp_path)
    done = handle(install_request("nic-dkms_1.1_all.deb", b"deb"), context, runner, "linux")
    assert done.status == Status.COMMAND_SUCCEEDED, done.error
    assert (done.driver_package.previous, done.driver_package.version) == ("0.9", "1.1")
    back = handle(rollback_request("deb", "nic-dkms"), context, runner, "linux")
    assert back.status == Status.COMMAND_SUCCEEDED, back.error
    assert list(back.driver_package.commands) == [
        "apt-get install --yes --allow-downgrades --no-install-recommends nic-dkms=0.9"
    ]
    # A rollback the package manager did not carry out is a failure, not a success.
    stuck = Recorder(
        {
            "dpkg-deb --showformat": [(0, "nic-dkms\n1.1\n")],
            "dpkg-query --showformat": [(0, "0.9"), (0, "1.1"), (0, "1.1")],
            "dpkg -i": [(0, "")],
            "apt-get install": [(0, "")],
        }
    )
    handle(install_request("nic-dkms_1.1_all.deb", b"deb"), context, stuck, "linux")
    failed = guarded(stuck, "linux")(rollback_request("deb", "nic-dkms"), context)
    assert failed.status == Status.COMMAND_FAILED
    assert "rolling back to 0.9 left 1.1 installed" in failed.error
