"""list_services and service_control: command lines, recorded outputs, and this host."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from rmm_agent.actions import execute, services_launchd, services_systemd, services_windows
from rmm_agent.actions.base import ActionFailed
from rmm_agent.actions.list_services import list_on
from rmm_agent.actions.service_control import control_on
from rmm_agent.actions.services_common import check_service_name
from rmm_proto import commands_pb2

from .helpers import Agent, FakeRunner, fixture_text

Info = commands_pb2.ServiceInfo
START, STOP, RESTART = (
    commands_pb2.SERVICE_START,
    commands_pb2.SERVICE_STOP,
    commands_pb2.SERVICE_RESTART,
)


def systemd_root(tmp_path: Path) -> Path:
    """Return a /run in which systemd looks booted."""
    (tmp_path / "systemd" / "system").mkdir(parents=True)
    return tmp_path


# ---- systemd ----


def test_systemctl_command_lines() -> None:
    assert services_systemd.LIST_UNITS_COMMAND == [
        "systemctl",
        "list-units",
        "--type=service",
        "--all",
        "--no-legend",
        "--plain",
        "--no-pager",
    ]
    assert services_systemd.LIST_UNIT_FILES_COMMAND == [
        "systemctl",
        "list-unit-files",
        "--type=service",
        "--no-legend",
        "--no-pager",
    ]
    assert services_systemd.control_command(RESTART, "nginx") == [
        "systemctl",
        "--no-ask-password",
        "restart",
        "--",
        "nginx",
    ]
    assert services_systemd.control_command(STOP, "postgresql@15-main.service")[2:] == [
        "stop",
        "--",
        "postgresql@15-main.service",
    ]
    assert services_systemd.show_command("nginx") == [
        "systemctl",
        "show",
        "--no-pager",
        "--property=Id,Description,LoadState,ActiveState,SubState,UnitFileState",
        "--",
        "nginx",
    ]


def test_list_units_keeps_descriptions() -> None:
    units = services_systemd.parse_units(fixture_text("systemctl_list-units_service_all_plain.txt"))
    described = {state.unit: description for state, description in units}
    assert described["cron.service"] == "Regular background program processing daemon"
    assert described["getty@tty1.service"] == "Getty on tty1"
    marked = services_systemd.parse_units(
        fixture_text("systemctl_list-units_service_all_bullets_rhel8.txt")
    )
    assert [(s.unit, s.active, d) for s, d in marked if s.active == "failed"] == [
        ("httpd.service", "failed", "The Apache HTTP Server"),
        ("kdump.service", "failed", "Crash recovery kernel arming"),
    ]


def test_unit_files_with_and_without_a_preset_column() -> None:
    debian = services_systemd.parse_unit_files(
        fixture_text("systemctl_list-unit-files_service_debian12.txt")
    )
    assert len(debian) == 120
    assert debian["getty@.service"] == "enabled"
    assert debian["dbus.service"] == "static"
    assert debian["cryptdisks.service"] == "masked"
    assert debian["console-getty.service"] == "disabled"
    rhel = services_systemd.parse_unit_files(
        fixture_text("systemctl_list-unit-files_service_rhel8.txt")
    )
    assert rhel["httpd.service"] == "disabled"
    assert rhel["sshd@.service"] == "static"


def test_start_mode_of_instances_and_units_without_a_file() -> None:
    files = {"getty@.service": "enabled", "cron.service": "enabled"}
    assert services_systemd.start_mode("getty@tty1.service", "loaded", files) == "enabled"
    assert services_systemd.start_mode("cron.service", "loaded", files) == "enabled"
    assert services_systemd.start_mode("auditd.service", "not-found", files) == "not-found"
    assert services_systemd.start_mode("run-u3.service", "loaded", files) == "unknown"


def test_list_services_joins_units_and_unit_files() -> None:
    runner = FakeRunner(
        {
            tuple(services_systemd.LIST_UNITS_COMMAND): (
                0,
                fixture_text("systemctl_list-units_service_all_bullets_rhel8.txt"),
                "",
            ),
            tuple(services_systemd.LIST_UNIT_FILES_COMMAND): (
                0,
                fixture_text("systemctl_list-unit-files_service_rhel8.txt"),
                "",
            ),
        }
    )
    services = services_systemd.list_services(runner)
    assert [s.name for s in services] == sorted(s.name for s in services)
    assert len(services) == 9
    by_name = {s.name: s for s in services}
    assert by_name["httpd.service"] == Info(
        name="httpd.service",
        description="The Apache HTTP Server",
        state="failed",
        start_mode="disabled",
    )
    assert by_name["sshd.service"] == Info(
        name="sshd.service",
        description="OpenSSH server daemon",
        state="running",
        start_mode="enabled",
    )
    assert by_name["ntpd.service"].state == "stopped"
    assert by_name["ntpd.service"].start_mode == "not-found"
    assert by_name["dnf-makecache.service"].start_mode == "static"
    assert [s.name for s in services_systemd.list_services(runner, "SSH")] == ["sshd.service"]


def test_a_failing_systemctl_list_names_the_command() -> None:
    runner = FakeRunner(
        {
            tuple(services_systemd.LIST_UNITS_COMMAND): (
                1,
                "",
                "Failed to connect to bus: Permission denied",
            )
        }
    )
    with pytest.raises(ActionFailed) as caught:
        services_systemd.list_services(runner)
    assert str(caught.value) == (
        "systemctl list-units --type=service --all --no-legend --plain --no-pager exited 1: "
        "Failed to connect to bus: Permission denied"
    )


def test_restart_reports_the_state_after(tmp_path: Path) -> None:
    runner = FakeRunner(
        {
            tuple(services_systemd.control_command(RESTART, "nginx")): (0, "", ""),
            tuple(services_systemd.show_command("nginx")): (
                0,
                fixture_text("systemctl_show_nginx_active.txt"),
                "",
            ),
        }
    )
    result = control_on("linux", RESTART, "nginx", runner, run_root=systemd_root(tmp_path))
    assert result == commands_pb2.ServiceResult(
        service=Info(
            name="nginx.service",
            description="A high performance web server and a reverse proxy server",
            state="running",
            start_mode="enabled",
        ),
        output="",
    )
    assert runner.calls == [
        ("systemctl", "--no-ask-password", "restart", "--", "nginx"),
        tuple(services_systemd.show_command("nginx")),
    ]


def test_a_failed_restart_still_reports_state_and_output() -> None:
    said = (
        "Job for nginx.service failed because the control process exited with error code.\n"
        'See "systemctl status nginx.service" and "journalctl -xeu nginx.service" for details.\n'
    )
    runner = FakeRunner(
        {
            tuple(services_systemd.control_command(RESTART, "nginx")): (1, "", said),
            tuple(services_systemd.show_command("nginx")): (
                0,
                fixture_text("systemctl_show_nginx_failed.txt"),
                "",
            ),
        }
    )
    with pytest.raises(ActionFailed) as caught:
        services_systemd.control(runner, RESTART, "nginx")
    failure = caught.value
    assert str(failure).startswith(
        "systemctl --no-ask-password restart -- nginx exited 1: Job for nginx.service failed"
    )
    result = failure.result()
    assert result.status == commands_pb2.COMMAND_FAILED
    assert result.service.service.state == "failed"
    assert result.service.output == said.strip()


def test_an_unknown_unit() -> None:
    runner = FakeRunner(
        {
            tuple(services_systemd.control_command(START, "nosuch")): (
                5,
                "",
                "Failed to start nosuch.service: Unit nosuch.service not found.\n",
            ),
            tuple(services_systemd.show_command("nosuch")): (
                0,
                fixture_text("systemctl_show_not-found.txt"),
                "",
            ),
        }
    )
    with pytest.raises(ActionFailed, match=r"exited 5: Failed to start nosuch\.service") as caught:
        services_systemd.control(runner, START, "nosuch")
    assert caught.value.result().service.service == Info(
        name="nosuch.service", description="nosuch.service", state="stopped", start_mode="not-found"
    )


def test_without_systemd_the_error_says_so(tmp_path: Path) -> None:
    with pytest.raises(ActionFailed, match="systemctl is not installed on this host"):
        services_systemd.check_systemd(systemd_root(tmp_path), which=lambda _: None)
    with pytest.raises(ActionFailed, match=r"not booted with systemd \(no .*/systemd/system\)"):
        services_systemd.check_systemd(tmp_path / "empty", which=lambda _: "/usr/bin/systemctl")


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or Path("/run/systemd/system").is_dir(),
    reason="checks a Linux host not booted with systemd, like this test container",
)
def test_this_host_without_systemd_fails_clearly(tmp_path: Path) -> None:
    agent = Agent()
    for action in (
        {"list_services": commands_pb2.ListServices()},
        {"service_control": commands_pb2.ServiceControl(name="cron", operation=RESTART)},
    ):
        command = commands_pb2.Command(id="svc", **action)
        result = execute(command, agent.context(command, state_dir=tmp_path))
        assert result.status == commands_pb2.COMMAND_FAILED
        assert "systemd" in result.error and "systemctl" in result.error, result.error


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "service_control needs a service name; it got none"),
        ("--now", "service name --now starts with '-'; refused"),
        ("a b", "service name a b contains whitespace or control characters; refused"),
        ("a\nb", "service name 'a\\nb' contains whitespace or control characters; refused"),
        ("x" * 300, "service name is 300 characters, over 256"),
    ],
)
def test_service_names_that_could_be_taken_for_options_are_refused(
    name: str, error: str, tmp_path: Path
) -> None:
    with pytest.raises(ActionFailed) as caught:
        check_service_name(name)
    assert str(caught.value) == error
    command = commands_pb2.Command(
        id="svc", service_control=commands_pb2.ServiceControl(name=name, operation=STOP)
    )
    result = execute(command, Agent().context(command, state_dir=tmp_path))
    assert (result.status, result.error) == (commands_pb2.COMMAND_FAILED, error)


def test_an_unspecified_operation_is_refused() -> None:
    with pytest.raises(ActionFailed, match="operation 0 is not start, stop or restart"):
        control_on("linux", commands_pb2.SERVICE_OPERATION_UNSPECIFIED, "nginx", FakeRunner({}))


# ---- Windows ----


class FakeWindowsService:
    """A psutil WindowsService answering from a recorded as_dict()."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    def name(self) -> str:
        return str(self.record["name"])

    def display_name(self) -> str:
        return str(self.record["display_name"])

    def status(self) -> str:
        return str(self.record["status"])

    def start_type(self) -> str:
        return str(self.record["start_type"])


class FakeWindowsPsutil:
    """psutil's Windows service calls over the recorded Windows 11 services."""

    NoSuchProcess = psutil.NoSuchProcess
    AccessDenied = psutil.AccessDenied

    def __init__(self) -> None:
        records = json.loads(fixture_text("win_service_iter_as_dict_win11.json"))
        self.services = [FakeWindowsService(r) for r in records]

    def win_service_iter(self) -> list[FakeWindowsService]:
        return self.services

    def win_service_get(self, name: str) -> FakeWindowsService:
        for service in self.services:
            if service.name().lower() == name.lower():
                return service
        raise psutil.NoSuchProcess(pid=0, name=name, msg=f"service {name} does not exist")


def test_windows_services_are_listed_with_display_names() -> None:
    fake = FakeWindowsPsutil()
    services = list_on("win32", "", FakeRunner({}), psutil_module=fake)
    assert len(services) == len(fake.services)
    by_name = {s.name: s for s in services}
    assert by_name["Audiosrv"] == Info(
        name="Audiosrv", description="Windows Audio", state="running", start_mode="automatic"
    )
    assert by_name["BITS"].state == "stopped"
    assert by_name["BITS"].start_mode == "manual"
    audio = list_on("win32", "AUDIO", FakeRunner({}), psutil_module=fake)
    assert "Audiosrv" in [s.name for s in audio]
    assert all("audio" in (s.name + s.description).lower() for s in audio)


def test_windows_control_script_and_command_line() -> None:
    script = services_windows.control_script(RESTART, "BITS")
    assert script == (
        "$ProgressPreference = 'SilentlyContinue'\n"
        "try {\n"
        "    $service = Get-Service -Name 'BITS' -ErrorAction Stop\n"
        "    Restart-Service -InputObject $service -Force -ErrorAction Stop\n"
        "} catch {\n"
        "    [Console]::Error.WriteLine($_.Exception.Message)\n"
        "    exit 1\n"
        "}\n"
    )
    argv = services_windows.control_command(RESTART, "BITS")
    assert argv[:-1] == [
        "powershell.exe",
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-EncodedCommand",
    ]
    assert base64.b64decode(argv[-1]).decode("utf-16-le") == script
    assert "    Start-Service -InputObject $service -ErrorAction Stop\n" in (
        services_windows.control_script(START, "BITS")
    )
    assert "    Stop-Service -InputObject $service -Force -ErrorAction Stop\n" in (
        services_windows.control_script(STOP, "BITS")
    )


def test_windows_names_are_quoted_and_wildcards_refused() -> None:
    assert services_windows.powershell_literal("it's") == "'it''s'"
    assert services_windows.powershell_literal("a\u2019b") == "'a\u2019\u2019b'"
    script = services_windows.control_script(STOP, "x';Stop-Computer;'")
    assert "-Name 'x'';Stop-Computer;''' -ErrorAction Stop" in script
    with pytest.raises(ActionFailed, match=r"contains a wildcard character \(\*\?\[\]\)"):
        services_windows.control_script(STOP, "wu*")


def test_windows_control_reports_the_state_after() -> None:
    fake = FakeWindowsPsutil()
    argv = tuple(services_windows.control_command(START, "BITS"))
    result = control_on("win32", START, "BITS", FakeRunner({argv: (0, "", "")}), psutil_module=fake)
    assert result.service == Info(
        name="BITS",
        description="Background Intelligent Transfer Service",
        state="stopped",  # as recorded: the fake does not start anything
        start_mode="manual",
    )
    missing = tuple(services_windows.control_command(START, "NoSuch"))
    said = "Cannot find any service with service name 'NoSuch'."
    runner = FakeRunner({missing: (1, "", said + "\r\n")})
    with pytest.raises(ActionFailed) as caught:
        control_on("win32", START, "NoSuch", runner, psutil_module=fake)
    assert str(caught.value) == f"start service NoSuch: PowerShell exited 1: {said}"
    assert not caught.value.result().service.HasField("service")


# ---- macOS ----


def test_launchctl_list_is_parsed() -> None:
    services = services_launchd.parse_list(fixture_text("launchctl_list_macos14.txt"))
    assert len(services) == 8
    by_name = {s.name: s.state for s in services}
    assert by_name["com.apple.Finder"] == "running"
    assert by_name["com.apple.SafariHistoryServiceAgent"] == "stopped"
    assert by_name["com.openssh.sshd"] == "failed"
    assert by_name["com.apple.progressd"] == "failed"


def test_launchctl_command_lines() -> None:
    assert services_launchd.LIST_COMMAND == ["launchctl", "list"]
    assert services_launchd.control_command(START, "org.postgresql.postgres") == [
        "launchctl",
        "kickstart",
        "system/org.postgresql.postgres",
    ]
    assert services_launchd.control_command(RESTART, "org.postgresql.postgres") == [
        "launchctl",
        "kickstart",
        "-k",
        "system/org.postgresql.postgres",
    ]
    with pytest.raises(ActionFailed, match="stopping a launchd service is not supported on macOS"):
        services_launchd.control_command(STOP, "org.postgresql.postgres")


def test_macos_restart_reports_the_job_after() -> None:
    listing = fixture_text("launchctl_list_macos14.txt").replace(
        "-\t0\torg.postgresql.postgres", "2231\t0\torg.postgresql.postgres"
    )
    runner = FakeRunner(
        {
            ("launchctl", "kickstart", "-k", "system/org.postgresql.postgres"): (0, "", ""),
            ("launchctl", "list"): (0, listing, ""),
        }
    )
    result = control_on("darwin", RESTART, "org.postgresql.postgres", runner)
    assert result.service == Info(
        name="org.postgresql.postgres", state="running", start_mode="unknown"
    )
    assert [s.name for s in list_on("darwin", "postgres", runner)] == ["org.postgresql.postgres"]


def test_other_systems_are_not_supported() -> None:
    with pytest.raises(ActionFailed, match="listing services is not supported on freebsd14"):
        list_on("freebsd14", "", FakeRunner({}))
    with pytest.raises(ActionFailed, match="controlling services is not supported on freebsd14"):
        control_on("freebsd14", START, "sshd", FakeRunner({}))
