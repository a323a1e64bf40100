"""`rmm-agent install-service` and `uninstall-service`: pick the backend for this OS and run it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Protocol, cast

import click

from rmm_agent.service.base import (
    CommandRunner,
    ServiceError,
    ServiceSpec,
    agent_command,
    run_command,
)

# One line per service manager: the platform and the module that installs the agent there.
# Imported when used: `rmm-agent run` loads this module and needs none of them.
BACKENDS: dict[str, str] = {
    "linux": "rmm_agent.service.systemd_linux",
    "windows": "rmm_agent.service.windows_service",
    "macos": "rmm_agent.service.launchd_macos",
}
PLATFORMS = tuple(BACKENDS)


class Backend(Protocol):
    def install(self, spec: ServiceSpec, start: bool = True) -> list[str]: ...

    def uninstall(self) -> list[str]: ...


class BackendModule(Protocol):
    """What each module in BACKENDS offers."""

    def backend(self, runner: CommandRunner, unit_dir: Path | None = None) -> Backend:
        """Return this host's backend, writing its files into `unit_dir` if given."""
        ...


def current_platform(sys_platform: str | None = None) -> str:
    """Return linux, windows or macos for `sys.platform`; raise for any other OS."""
    value = sys.platform if sys_platform is None else sys_platform
    if value.startswith("linux"):
        return "linux"
    if value in ("win32", "cygwin"):
        return "windows"
    if value == "darwin":
        return "macos"
    raise ServiceError(f"no service backend for {value!r}: run `rmm-agent run` under your own")


def make_backend(platform: str, runner: CommandRunner, unit_dir: Path | None = None) -> Backend:
    """Return the backend for `platform`, writing its files into `unit_dir` if given."""
    if platform not in BACKENDS:
        raise ServiceError(f"unknown platform {platform!r}: choose one of {', '.join(PLATFORMS)}")
    module = cast(BackendModule, importlib.import_module(BACKENDS[platform]))
    return module.backend(runner, unit_dir)


def _backend(platform: str | None, unit_dir: Path | None) -> Backend:
    return make_backend(platform or current_platform(), run_command, unit_dir)


PLATFORM_OPTION = click.option(
    "--platform",
    type=click.Choice(PLATFORMS),
    help="Service manager to use (default: this host's).",
)
UNIT_DIR_OPTION = click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the unit or plist goes (default /etc/systemd/system, /Library/LaunchDaemons).",
)


@click.command("install-service")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The enrolled agent's state directory.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Agent configuration file (YAML) the service passes to `run`.",
)
@UNIT_DIR_OPTION
@PLATFORM_OPTION
@click.option("--no-start", is_flag=True, help="Install and enable, but do not start now.")
@click.option(
    "--self-update",
    is_flag=True,
    help="Run under the launcher so the agent takes updates the server offers (archive only).",
)
def install_service(
    state_dir: Path,
    config_path: Path | None,
    unit_dir: Path | None,
    platform: str | None,
    no_start: bool,
    self_update: bool,
) -> None:
    """Install this agent as a system service that starts at boot (run as root)."""
    # A ServiceError goes up to rmm_agent.cli, which prints it and exits 1.
    spec = ServiceSpec(
        agent_command=agent_command(),
        state_dir=state_dir.absolute(),
        config=None if config_path is None else config_path.absolute(),
        self_update=self_update,
    )
    spec.run_argv()  # refuses --self-update without an archive before anything is written
    done = _backend(platform, unit_dir).install(spec, start=not no_start)
    for line in done:
        click.echo(line)


@click.command("uninstall-service")
@UNIT_DIR_OPTION
@PLATFORM_OPTION
def uninstall_service(unit_dir: Path | None, platform: str | None) -> None:
    """Stop and remove the agent's system service (its state directory stays)."""
    done = _backend(platform, unit_dir).uninstall()
    for line in done:
        click.echo(line)
