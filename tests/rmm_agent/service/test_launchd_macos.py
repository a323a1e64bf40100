"""The launchd daemon: the plist, and bootstrapping it through a fake runner."""

from __future__ import annotations

import plistlib
from pathlib import Path

from rmm_agent.service.base import ServiceSpec
from rmm_agent.service.launchd_macos import LABEL, LaunchdBackend, render_static_plist
from tests.rmm_agent.service.test_systemd_linux import FakeRunner

ROOT = Path(__file__).resolve().parents[3]


def test_deploy_plist_is_the_rendered_template() -> None:
    assert (ROOT / "deploy" / "macos" / f"{LABEL}.plist").read_text() == render_static_plist()


def test_install_writes_plist_and_bootstraps_it(tmp_path: Path) -> None:
    runner = FakeRunner(fail_on="bootout")  # nothing loaded yet: bootout fails, install goes on
    spec = ServiceSpec(("/opt/rmm/bin/rmm-agent",), tmp_path / "state", tmp_path / "a.yaml")
    LaunchdBackend(runner, tmp_path / "daemons").install(spec)
    path = tmp_path / "daemons" / f"{LABEL}.plist"
    plist = plistlib.loads(path.read_bytes())
    assert plist["Label"] == LABEL
    assert plist["ProgramArguments"] == spec.run_argv()
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert path.stat().st_mode & 0o777 == 0o644
    assert runner.commands == [
        ["launchctl", "bootout", f"system/{LABEL}"],
        ["launchctl", "enable", f"system/{LABEL}"],
        ["launchctl", "bootstrap", "system", str(path)],
    ]


def test_uninstall_boots_out_and_removes(tmp_path: Path) -> None:
    runner = FakeRunner()
    backend = LaunchdBackend(runner, tmp_path)
    backend.install(ServiceSpec(("/x",), tmp_path / "s"), start=False)
    assert runner.commands == []
    backend.uninstall()
    assert runner.commands == [["launchctl", "bootout", f"system/{LABEL}"]]
    assert not backend.plist_path.exists()
