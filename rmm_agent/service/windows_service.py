"""The agent as a Windows service, on pywin32's `win32serviceutil.ServiceFramework`.

pywin32 exists only on Windows, so it is imported when the service class is first asked for
(`RmmAgentService`, a lazy module attribute that pythonservice.exe looks up by name); the
commands that install the service are plain argument lists run through a CommandRunner, so they
are built and checked on any OS. The service runs the agent in its own process: the SCM calls
SvcDoRun outside Python's main thread, where signal handlers cannot be installed, so SvcStop
calls the runner's stop() instead of sending a signal.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from rmm_agent.service.base import DESCRIPTION, CommandRunner, ServiceError, ServiceSpec

log = logging.getLogger(__name__)

MODULE = "rmm_agent.service.windows_service"  # not __name__: that is __main__ under -m
SERVICE_NAME = "RmmAgent"
DISPLAY_NAME = "RMM agent"
CLASS_STRING = f"{MODULE}.RmmAgentService"
# Where pywin32's GetServiceCustomOption/SetServiceCustomOption keep a service's options.
PARAMETERS_KEY = rf"HKLM\SYSTEM\CurrentControlSet\Services\{SERVICE_NAME}\Parameters"
# The SCM's answer to Restart=on-failure with a growing delay: 10 s, 1 min, then 5 min each
# time; the count resets after a day without failure.
FAILURE_ACTIONS = "restart/10000/restart/60000/restart/300000"
FAILURE_RESET_SECONDS = 86400
EXIT_REFUSED = 3  # rmm_agent.runner.EXIT_REFUSED: enroll again; a restart cannot help


def install_commands(spec: ServiceSpec, python: str, start: bool = True) -> list[list[str]]:
    """Return the commands that register, configure and (optionally) start the service."""
    commands = [
        # pywin32 registers pythonservice.exe as the host and our class as the service.
        [python, "-m", MODULE, "--startup", "auto", "install"],
        [
            "reg.exe", "add", PARAMETERS_KEY, "/v", "state_dir", "/t", "REG_SZ",
            "/d", str(spec.state_dir), "/f",
        ],
        [
            "reg.exe", "add", PARAMETERS_KEY, "/v", "config", "/t", "REG_SZ",
            "/d", "" if spec.config is None else str(spec.config), "/f",
        ],
        [
            "sc.exe", "failure", SERVICE_NAME, "reset=", str(FAILURE_RESET_SECONDS),
            "actions=", FAILURE_ACTIONS,
        ],
        # Apply the failure actions when the service stops with an error, not only on a crash.
        ["sc.exe", "failureflag", SERVICE_NAME, "1"],
        ["sc.exe", "description", SERVICE_NAME, DESCRIPTION],
    ]  # fmt: skip
    if start:
        commands.append(["sc.exe", "start", SERVICE_NAME])
    return commands


def uninstall_commands(python: str) -> list[list[str]]:
    """Return the commands that stop and remove the service."""
    return [["sc.exe", "stop", SERVICE_NAME], [python, "-m", MODULE, "remove"]]


@dataclass
class WindowsBackend:
    """Install the agent as a Windows service through `runner`."""

    runner: CommandRunner
    python: str = sys.executable

    def install(self, spec: ServiceSpec, start: bool = True) -> list[str]:
        """Register, configure and start the service; return what was done."""
        try:
            spec.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServiceError(f"cannot create {spec.state_dir}: {exc.strerror}") from None
        done = []
        for command in install_commands(spec, self.python, start):
            self.runner(command)
            done.append(" ".join(command))
        return done

    def uninstall(self) -> list[str]:
        """Stop and remove the service; return what was done."""
        stop, remove = uninstall_commands(self.python)
        done = []
        try:
            self.runner(stop)
            done.append(" ".join(stop))
        except ServiceError:
            pass  # stopped already
        self.runner(remove)
        done.append(" ".join(remove))
        return done


def backend(runner: CommandRunner, unit_dir: Path | None = None) -> WindowsBackend:
    """Return this host's backend (the SCM keeps the service: `unit_dir` has no use here)."""
    return WindowsBackend(runner)


def build_agent(state_dir: Path, config_path: Path | None) -> tuple[Any, Callable[[], None]]:
    """Return an AgentRunner for `state_dir` and a function that releases what it opened.

    The same parts as `rmm-agent run`: reports, updates and the command stream.
    """
    # Imported here: the service module is imported by install-service on every OS.
    from rmm_agent.cli import assemble_agent, read_config  # noqa: PLC0415
    from rmm_agent.state import StateDir  # noqa: PLC0415
    from rmm_common.logs import setup_logging  # noqa: PLC0415

    config = read_config(config_path)
    identity = StateDir(state_dir).load_identity()
    setup_logging(config.log_level, config.log_format)
    agent = assemble_agent(identity, state_dir, config)
    return agent.runner, agent.close


def make_service_class(
    win32serviceutil: ModuleType | Any,
    win32service: ModuleType | Any,
    servicemanager: ModuleType | Any,
    build: Callable[[Path, Path | None], tuple[Any, Callable[[], None]]] = build_agent,
) -> type:
    """Return the service class on pywin32's framework (modules passed in, so tests fake them)."""
    framework: Any = win32serviceutil.ServiceFramework

    class RmmAgentService(framework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.runner: Any = None
            self.stop_requested = False

        def SvcStop(self) -> None:  # pywin32's name
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            self.stop_requested = True
            if self.runner is not None:
                self.runner.stop()

        def SvcDoRun(self) -> None:  # pywin32's name
            state_dir = win32serviceutil.GetServiceCustomOption(SERVICE_NAME, "state_dir")
            config = win32serviceutil.GetServiceCustomOption(SERVICE_NAME, "config") or None
            if not state_dir:
                raise ServiceError(
                    f"no state_dir under {PARAMETERS_KEY}: reinstall with "
                    "`rmm-agent install-service --state-dir DIR`"
                )
            self.runner, close = build(Path(state_dir), Path(config) if config else None)
            servicemanager.LogInfoMsg(f"{DISPLAY_NAME} started with state in {state_dir}")
            try:
                code = 0 if self.stop_requested else self.runner.run()
            finally:
                close()
            if code == EXIT_REFUSED:
                # Stop without an error so that the SCM does not restart a refused agent.
                servicemanager.LogErrorMsg("the server refused this agent: enroll it again")
            elif code != 0:
                raise ServiceError(f"the agent stopped with exit code {code}")

    RmmAgentService.__module__ = MODULE
    return RmmAgentService


def load_pywin32() -> tuple[ModuleType, ModuleType, ModuleType]:
    """Import pywin32's service modules, or say how to get them."""
    try:
        return (
            importlib.import_module("win32serviceutil"),
            importlib.import_module("win32service"),
            importlib.import_module("servicemanager"),
        )
    except ImportError:
        raise ServiceError(
            "the Windows service needs pywin32: `pip install pywin32` (Windows only)"
        ) from None


def __getattr__(name: str) -> type:
    """Build `RmmAgentService` on first use (pythonservice.exe looks it up by name)."""
    if name == "RmmAgentService":
        service_class = make_service_class(*load_pywin32())
        globals()[name] = service_class
        return service_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """pywin32's install/remove/start/stop/debug command line for the service."""
    win32serviceutil, win32service, servicemanager = load_pywin32()
    service_class = make_service_class(win32serviceutil, win32service, servicemanager)
    win32serviceutil.HandleCommandLine(
        service_class, serviceClassString=CLASS_STRING, argv=argv or sys.argv
    )


if __name__ == "__main__":
    main()
