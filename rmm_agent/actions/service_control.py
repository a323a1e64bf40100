"""service_control: start, stop or restart a service and report its state afterwards."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil

from rmm_agent.actions import services_launchd, services_systemd, services_windows
from rmm_agent.actions.base import ActionContext, ActionFailed, action, run_until, succeeded
from rmm_agent.actions.services_common import Runner, check_service_name, verb
from rmm_agent.collectors._common import PsutilModule
from rmm_proto import commands_pb2


def control_on(
    platform: str,
    operation: commands_pb2.ServiceOperation,
    name: str,
    run: Runner,
    psutil_module: PsutilModule = psutil,
    run_root: Path = Path("/run"),
) -> commands_pb2.ServiceResult:
    """Run the operation on `platform`'s service manager."""
    check_service_name(name)
    verb(operation)
    if platform.startswith("linux"):
        services_systemd.check_systemd(run_root)
        return services_systemd.control(run, operation, name)
    if platform.startswith("win"):
        return services_windows.control(run, psutil_module, operation, name)
    if platform == "darwin":
        return services_launchd.control(run, operation, name)
    raise ActionFailed(f"controlling services is not supported on {platform}")


@action
def run(request: commands_pb2.ServiceControl, context: ActionContext) -> commands_pb2.CommandResult:
    """Start, stop or restart the named service."""
    what = f"{verb(request.operation)} service {check_service_name(request.name)}"
    result = control_on(
        sys.platform,
        request.operation,
        request.name,
        lambda argv: run_until(argv, context, what),
    )
    return succeeded(service=result)
