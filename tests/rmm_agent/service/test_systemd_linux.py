"""The systemd unit: rendered, installed through a fake runner, and checked by systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from rmm_agent.service.base import ServiceError, ServiceSpec, agent_command
from rmm_agent.service.systemd_linux import (
    UNIT_NAME,
    SystemdBackend,
    parse_systemd_version,
    quote_word,
    render_static_unit,
    render_unit,
)

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy" / "systemd"


class FakeRunner:
    """Records commands instead of running them; fails the one named in `fail_on`."""

    def __init__(self, fail_on: str = "") -> None:
        self.commands: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, argv: Sequence[str]) -> None:
        self.commands.append(list(argv))
        if self.fail_on and self.fail_on in argv:
            raise ServiceError(f"`{' '.join(argv)}` exited 1: Access denied")


def unit_settings(text: str) -> dict[str, list[str]]:
    """Return every Key=value of a unit file, values in order."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `systemd-analyze verify` on a copy of `unit` whose program exists here.

    verify fails a unit whose ExecStart is not executable, and the shipped units point at
    /usr/local/bin, so the copy's first ExecStart word is swapped for a stub; every other line
    is checked as written. --man=no: Documentation= man pages need not be installed.
    """
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    stub = tmp_path / "bin" / "stub"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    lines = []
    for line in unit.read_text().splitlines():
        if line.startswith(("ExecStart=", "ExecReload=")):
            key, command = line.split("=", 1)
            lines.append(f"{key}={stub} {command.split(' ', 1)[1]}")
        else:
            lines.append(line)
    checked = tmp_path / "verify" / unit.name
    checked.parent.mkdir(exist_ok=True)
    checked.write_text("\n".join(lines) + "\n")
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(checked)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_verified(result: subprocess.CompletedProcess[str]) -> None:
    # verify exits 0 on unknown keys and unparsable values, printing a warning: any output fails.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


def test_deploy_unit_is_the_rendered_template() -> None:
    assert (DEPLOY / "rmm-agent.service").read_text() == render_static_unit()


@pytest.mark.parametrize("name", ["rmm-agent.service", "rmm-server.service"])
def test_deploy_units_pass_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    assert_verified(verify(DEPLOY / name, tmp_path))


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    broken = tmp_path / "broken.service"
    broken.write_text(render_static_unit().replace("RestartSec=10s", "RestartSecs=10s"))
    result = verify(broken, tmp_path)
    assert "Unknown key" in result.stdout + result.stderr


def test_installed_unit_passes_verify_and_runs_this_agent(tmp_path: Path) -> None:
    runner = FakeRunner()
    spec = ServiceSpec(agent_command(), tmp_path / "state dir", tmp_path / "agent.yaml")
    done = SystemdBackend(runner, tmp_path / "units", systemd_version=252).install(spec)
    unit = tmp_path / "units" / UNIT_NAME
    assert runner.commands == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", UNIT_NAME],
    ]
    assert done[0] == f"wrote {unit}"
    assert (tmp_path / "state dir").is_dir()
    settings = unit_settings(unit.read_text())
    assert settings["Type"] == ["notify"]
    assert settings["WatchdogSec"] == ["180s"]
    assert settings["ExecStart"] == [
        " ".join(quote_word(w) for w in spec.run_argv()),
    ]
    assert '"' + str(tmp_path / "state dir") + '"' in settings["ExecStart"][0]
    # The installed unit's ExecStart exists on this host, so verify it unaltered.
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_verified(result)


def test_patching_is_not_locked_out() -> None:
    settings = unit_settings(render_static_unit())
    # A patching agent writes /usr, /etc and /boot, sets set-uid bits, loads modules, writes
    # sysctls and disks: none of these may appear.
    for forbidden in (
        "ProtectSystem", "ReadOnlyPaths", "ProtectHome", "NoNewPrivileges", "RestrictSUIDSGID",
        "ProtectKernelModules", "ProtectKernelTunables", "ProtectClock", "PrivateDevices",
        "MemoryDenyWriteExecute", "User", "CapabilityBoundingSet", "SystemCallFilter",
    ):  # fmt: skip
        assert forbidden not in settings, forbidden
    for kept in ("PrivateTmp", "ProtectKernelLogs", "ProtectControlGroups", "LockPersonality"):
        assert settings[kept] == ["yes"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["RestartPreventExitStatus"] == ["3"]
    assert settings["StandardOutput"] == ["journal"]


def test_restart_backoff_only_where_systemd_knows_it() -> None:
    assert "RestartSteps" not in render_unit(["/bin/true"], systemd_version=252)
    assert "RestartSteps" not in render_unit(["/bin/true"], systemd_version=None)
    newer = unit_settings(render_unit(["/bin/true"], systemd_version=254))
    assert newer["RestartSteps"] == ["6"] and newer["RestartMaxDelaySec"] == ["5min"]


def test_parse_systemd_version() -> None:
    assert parse_systemd_version("systemd 252 (252.38-1~deb12u1)\n+PAM +AUDIT") == 252
    assert parse_systemd_version("") is None


def test_quote_word_escapes_specifiers_and_spaces() -> None:
    assert quote_word("/opt/rmm/bin/rmm-agent") == "/opt/rmm/bin/rmm-agent"
    assert quote_word("/srv/100%") == "/srv/100%%"
    assert quote_word("/a b/$x") == '"/a b/$$x"'
    assert quote_word('say "hi"') == '"say \\"hi\\""'


def test_uninstall_disables_and_removes(tmp_path: Path) -> None:
    runner = FakeRunner()
    backend = SystemdBackend(runner, tmp_path)
    backend.install(ServiceSpec(("/bin/rmm-agent",), tmp_path / "s"), start=False)
    assert runner.commands[-1] == ["systemctl", "enable", UNIT_NAME]
    runner.commands.clear()
    backend.uninstall()
    assert runner.commands == [
        ["systemctl", "disable", "--now", UNIT_NAME],
        ["systemctl", "daemon-reload"],
    ]
    assert not (tmp_path / UNIT_NAME).exists()


def test_a_failing_systemctl_is_reported(tmp_path: Path) -> None:
    backend = SystemdBackend(FakeRunner(fail_on="enable"), tmp_path)
    with pytest.raises(ServiceError, match=r"enable --now rmm-agent\.service` exited 1"):
        backend.install(ServiceSpec(("/bin/rmm-agent",), tmp_path / "s"))


def test_an_unwritable_unit_dir_names_the_path_and_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ServiceError, match=r"cannot write .*file/rmm-agent.service.*--unit-dir"):
        SystemdBackend(FakeRunner(), blocker).install(ServiceSpec(("/x",), tmp_path / "s"))


def test_agent_command_prefers_the_archive_then_the_script(tmp_path: Path) -> None:
    archive = tmp_path / "rmm-agent.pyz"
    archive.write_text("")
    script = tmp_path / "bin" / "rmm-agent"
    script.parent.mkdir()
    script.write_text("")
    assert agent_command(str(archive), "/usr/bin/python3") == ("/usr/bin/python3", str(archive))
    assert agent_command(str(script), "/usr/bin/python3") == (str(script),)
    fallback = agent_command("/somewhere/pytest", "/usr/bin/python3")
    assert fallback[:2] == ("/usr/bin/python3", "-c")
    assert "rmm_agent.cli" in fallback[2]
