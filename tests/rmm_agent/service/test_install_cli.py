"""`rmm-agent install-service` / `uninstall-service` as a person runs them."""

from __future__ import annotations

import plistlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from rmm_agent.service.base import ServiceError
from rmm_agent.service.install import current_platform, make_backend
from tests.helpers import agent_cmd


def test_install_and_uninstall_through_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("interval: 30s\n")
    result = agent_cmd(
        "install-service", "--state-dir", str(tmp_path / "state"), "--config", str(config),
        "--platform", "macos", "--unit-dir", str(tmp_path / "daemons"), "--no-start",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    plist_path = tmp_path / "daemons" / "com.rmm.agent.plist"
    arguments = plistlib.loads(plist_path.read_bytes())["ProgramArguments"]
    # The service starts this very agent, by absolute path, with the given state and config.
    assert Path(arguments[0]).name == "rmm-agent" and Path(arguments[0]).is_absolute()
    assert arguments[1:] == ["run", "--state-dir", str(tmp_path / "state"), "--config", str(config)]
    result = agent_cmd("uninstall-service", "--platform", "macos", "--unit-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "nothing to remove" in result.stdout


def test_a_missing_service_manager_is_named(tmp_path: Path) -> None:
    result = agent_cmd(
        "install-service", "--state-dir", str(tmp_path / "s"), "--platform", "windows",
    )  # fmt: skip
    # No pywin32 host here: the first command (python -m ...windows_service install) fails.
    assert result.returncode == 1
    assert "rmm-agent: " in result.stderr and "windows_service" in result.stderr


def test_platforms() -> None:
    assert current_platform("linux") == "linux"
    assert current_platform("win32") == "windows"
    assert current_platform("darwin") == "macos"
    with pytest.raises(ServiceError, match="no service backend for 'aix'"):
        current_platform("aix")
    with pytest.raises(ServiceError, match="choose one of linux, windows, macos"):
        make_backend("beos", lambda argv: None)


def test_self_update_runs_the_archive_under_the_launcher(tmp_path: Path) -> None:
    from rmm_agent.service.base import ServiceSpec  # noqa: PLC0415

    archive = str(tmp_path / "rmm-agent.pyz")
    spec = ServiceSpec(
        agent_command=("/usr/bin/python3", archive),
        state_dir=tmp_path / "s",
        config=tmp_path / "agent.yaml",
        self_update=True,
    )
    assert spec.run_argv() == [
        "/usr/bin/python3",
        archive,
        "launch",
        "--state-dir",
        str(tmp_path / "s"),
        "--archive",
        archive,
        "--config",
        str(tmp_path / "agent.yaml"),
    ]
    wheel = ServiceSpec(
        agent_command=("/usr/local/bin/rmm-agent",), state_dir=tmp_path, self_update=True
    )
    with pytest.raises(ServiceError, match="single-file archive"):
        wheel.run_argv()


def test_each_platform_has_its_backend_module(tmp_path: Path) -> None:
    from rmm_agent.service import launchd_macos, systemd_linux, windows_service  # noqa: PLC0415
    from rmm_agent.service.install import BACKENDS, PLATFORMS, BackendModule  # noqa: PLC0415
    from rmm_agent.service.launchd_macos import LaunchdBackend  # noqa: PLC0415
    from rmm_agent.service.systemd_linux import SystemdBackend  # noqa: PLC0415
    from rmm_agent.service.windows_service import WindowsBackend  # noqa: PLC0415

    # BACKENDS names modules (imported when used): mypy checks here that each offers backend().
    modules: list[BackendModule] = [systemd_linux, windows_service, launchd_macos]
    assert list(BACKENDS.values()) == [
        m.__name__ for m in (systemd_linux, windows_service, launchd_macos)
    ]
    assert len(modules) == len(BACKENDS)

    def runner(argv: Sequence[str]) -> None:
        raise AssertionError(f"nothing runs while a backend is made: {argv}")

    assert PLATFORMS == ("linux", "windows", "macos") == tuple(BACKENDS)
    systemd = make_backend("linux", runner, tmp_path)
    assert isinstance(systemd, SystemdBackend) and systemd.unit_dir == tmp_path
    launchd = make_backend("macos", runner, tmp_path)
    assert isinstance(launchd, LaunchdBackend) and launchd.daemon_dir == tmp_path
    assert isinstance(make_backend("windows", runner), WindowsBackend)
    assert isinstance(make_backend("linux", runner), SystemdBackend)
    default = make_backend("macos", runner)
    assert isinstance(default, LaunchdBackend)
    assert default.daemon_dir == Path("/Library/LaunchDaemons")
