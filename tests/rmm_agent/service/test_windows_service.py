"""The Windows service: the install commands, and the service class on a fake pywin32.

pywin32 exists only on Windows; the fakes below have the few names the class uses, so its
start and stop logic runs here against a real server.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rmm_agent.service import windows_service as ws
from rmm_agent.service.base import DESCRIPTION, ServiceError, ServiceSpec
from tests.helpers import ServerProcess, enroll_agent, rmm, wait_for
from tests.rmm_agent.service.test_systemd_linux import FakeRunner


def test_install_commands(tmp_path: Path) -> None:
    runner = FakeRunner()
    spec = ServiceSpec((r"C:\rmm\Scripts\rmm-agent.exe",), tmp_path / "state", tmp_path / "a.yaml")
    ws.WindowsBackend(runner, python=r"C:\rmm\Scripts\python.exe").install(spec)
    key = r"HKLM\SYSTEM\CurrentControlSet\Services\RmmAgent\Parameters"
    assert runner.commands == [
        [
            r"C:\rmm\Scripts\python.exe", "-m", "rmm_agent.service.windows_service",
            "--startup", "auto", "install",
        ],
        ["reg.exe", "add", key, "/v", "state_dir", "/t", "REG_SZ", "/d", str(spec.state_dir), "/f"],
        ["reg.exe", "add", key, "/v", "config", "/t", "REG_SZ", "/d", str(spec.config), "/f"],
        [
            "sc.exe", "failure", "RmmAgent", "reset=", "86400",
            "actions=", "restart/10000/restart/60000/restart/300000",
        ],
        ["sc.exe", "failureflag", "RmmAgent", "1"],
        ["sc.exe", "description", "RmmAgent", DESCRIPTION],
        ["sc.exe", "start", "RmmAgent"],
    ]  # fmt: skip


def test_no_start_and_uninstall(tmp_path: Path) -> None:
    runner = FakeRunner(fail_on="stop")  # stopped already: removal goes on
    backend = ws.WindowsBackend(runner, python="py.exe")
    backend.install(ServiceSpec(("x",), tmp_path / "s"), start=False)
    assert ["sc.exe", "start", "RmmAgent"] not in runner.commands
    assert runner.commands[2][-2] == ""  # no config: the option is cleared
    runner.commands.clear()
    backend.uninstall()
    assert runner.commands == [
        ["sc.exe", "stop", "RmmAgent"],
        ["py.exe", "-m", "rmm_agent.service.windows_service", "remove"],
    ]


def test_without_pywin32_the_error_says_how_to_get_it() -> None:
    with pytest.raises(ServiceError, match="pip install pywin32"):
        ws.load_pywin32()


class FakeFramework:
    """The part of win32serviceutil.ServiceFramework the service uses."""

    def __init__(self, args: Any) -> None:
        self.args = args
        self.statuses: list[int] = []

    def ReportServiceStatus(self, status: int) -> None:
        self.statuses.append(status)


def fake_pywin32(options: dict[str, str]) -> tuple[Any, Any, Any]:
    logged: list[str] = []
    win32serviceutil = SimpleNamespace(
        ServiceFramework=FakeFramework,
        GetServiceCustomOption=lambda service, name: options.get(name),
    )
    win32service = SimpleNamespace(SERVICE_STOP_PENDING=3)
    servicemanager = SimpleNamespace(LogInfoMsg=logged.append, LogErrorMsg=logged.append)
    return win32serviceutil, win32service, servicemanager


@pytest.mark.linux
def test_service_runs_the_agent_takes_commands_and_stops_on_svcstop(
    server: ServerProcess, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    agent_id = enroll_agent(server, state)
    (tmp_path / "agent.yaml").write_text("interval: 1s\ndisabled_collectors: [software]\n")
    service_class = ws.make_service_class(
        *fake_pywin32({"state_dir": str(state), "config": str(tmp_path / "agent.yaml")})
    )
    assert service_class.__name__ == "RmmAgentService"
    service: Any = service_class(("RmmAgent",))
    assert service._svc_name_ == "RmmAgent"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.SvcDoRun()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)  # the SCM calls SvcDoRun outside the main thread too
    thread.start()
    wait_for(
        lambda: f'agent="{agent_id}"' in server.metrics(), 60, "the service's agent to report"
    )
    # The service runs what `rmm-agent run` runs, the command stream included.
    wait_for(
        lambda: "rmm_server_command_streams 1.0" in server.metrics(),
        30,
        "the service's agent to open its command stream",
    )
    ran = rmm(server, "run", "--target", agent_id, "--command", "echo from-the-service")
    assert "succeeded" in ran.stdout and "from-the-service" in ran.stdout
    service.SvcStop()
    thread.join(20)
    assert not thread.is_alive(), "SvcDoRun did not return after SvcStop"
    assert errors == []
    assert service.statuses == [3]


def test_service_without_state_dir_says_how_to_fix() -> None:
    service = ws.make_service_class(*fake_pywin32({}))(("RmmAgent",))
    with pytest.raises(ServiceError, match="install-service --state-dir"):
        service.SvcDoRun()
