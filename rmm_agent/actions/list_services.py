"""list_services: the host's services with their states, from its service manager."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil

from rmm_agent.actions import services_launchd, services_systemd, services_windows
from rmm_agent.actions.base import ActionContext, ActionFailed, action, run_until, succeeded
from rmm_agent.actions.services_common import Runner
from rmm_agent.collectors._common import PsutilModule
from rmm_proto import commands_pb2


def list_on(
    platform: str,
    wanted: str,
    run: Runner,
    psutil_module: PsutilModule = psutil,
    run_root: Path = Path("/run"),
) -> list[commands_pb2.ServiceInfo]:
    """List the services on `platform` whose name contains `wanted`."""
    if platform.startswith("linux"):
        services_systemd.check_systemd(run_root)
        return services_systemd.list_services(run, wanted)
    if platform.startswith("win"):
        return services_windows.list_services(psutil_module, wanted)
    if platform == "darwin":
        return services_launchd.list_services(run, wanted)
    raise ActionFailed(f"listing services is not supported on {platform}")


@action
def run(request: commands_pb2.ListServices, context: ActionContext) -> commands_pb2.CommandResult:
    """List the services the request asks for."""
    services = list_on(
        sys.platform, request.name, lambda argv: run_until(argv, context, "list services")
    )
    return succeeded(services=commands_pb2.ServiceList(services=services))
