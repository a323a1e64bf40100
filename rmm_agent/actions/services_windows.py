"""Services on Windows: listed through psutil, controlled with PowerShell's *-Service cmdlets."""

from __future__ import annotations

import base64
import re
from typing import Any

from rmm_agent.actions.base import ActionFailed
from rmm_agent.actions.services_common import Runner, check_service_name, matches, state_of, verb
from rmm_agent.collectors._common import PsutilModule
from rmm_agent.collectors.services_windows import map_service
from rmm_common.command_summary import printable
from rmm_proto import commands_pb2

POWERSHELL = ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass"]

# The cmdlet for each verb. -Force lets Stop-Service and Restart-Service stop the services
# that depend on this one, as `net stop` would after asking; Start-Service has no -Force.
CMDLETS = {
    "start": "Start-Service -InputObject $service",
    "stop": "Stop-Service -InputObject $service -Force",
    "restart": "Restart-Service -InputObject $service -Force",
}

# PowerShell ends a single-quoted string at any of these quotes, and reads two as one.
_QUOTES = re.compile("['\u2018\u2019\u201a\u201b]")


def check_windows_name(name: str) -> str:
    """Return `name` if it is a service name and no wildcard pattern for Get-Service."""
    check_service_name(name)
    if any(ch in name for ch in "*?[]"):
        raise ActionFailed(
            f"service name {printable(name)} contains a wildcard character (*?[]); refused, so "
            "that one command cannot act on several services"
        )
    return name


def powershell_literal(text: str) -> str:
    """Return `text` as a single-quoted PowerShell string, in which nothing is expanded."""
    return "'" + _QUOTES.sub(lambda quote: quote.group(0) * 2, text) + "'"


def control_script(operation: commands_pb2.ServiceOperation, name: str) -> str:
    """Return the PowerShell script that starts, stops or restarts service `name`."""
    cmdlet = CMDLETS[verb(operation)]
    # Errors go to stderr as plain text: a PowerShell error record would come out as CLIXML.
    return (
        "$ProgressPreference = 'SilentlyContinue'\n"
        "try {\n"
        f"    $service = Get-Service -Name {powershell_literal(check_windows_name(name))}"
        " -ErrorAction Stop\n"
        f"    {cmdlet} -ErrorAction Stop\n"
        "} catch {\n"
        "    [Console]::Error.WriteLine($_.Exception.Message)\n"
        "    exit 1\n"
        "}\n"
    )


def control_command(operation: commands_pb2.ServiceOperation, name: str) -> list[str]:
    """Return the powershell.exe command line that runs control_script()."""
    # -EncodedCommand (base64 of UTF-16LE) keeps the script clear of command-line quoting.
    encoded = base64.b64encode(control_script(operation, name).encode("utf-16-le"))
    return [*POWERSHELL, "-EncodedCommand", encoded.decode("ascii")]


def service_info(service: Any) -> commands_pb2.ServiceInfo:
    """Describe a psutil WindowsService (its display name is the description)."""
    record = {"name": service.name(), "status": service.status()}
    record["start_type"] = service.start_type()
    return commands_pb2.ServiceInfo(
        name=record["name"],
        description=service.display_name(),
        state=state_of(map_service(record).active),
        start_mode=record["start_type"] or "unknown",
    )


def list_services(psutil_module: PsutilModule, wanted: str = "") -> list[commands_pb2.ServiceInfo]:
    """List the services whose name or display name contains `wanted`."""
    services = []
    for service in psutil_module.win_service_iter():
        # name() and display_name() come with the listing; status() and start_type() are a
        # query each, made only for the services that match.
        if not (matches(service.name(), wanted) or matches(service.display_name(), wanted)):
            continue
        try:
            services.append(service_info(service))
        except (psutil_module.NoSuchProcess, psutil_module.AccessDenied):
            continue  # deleted meanwhile, or hidden from the agent's account
    return sorted(services, key=lambda s: s.name.casefold())


def control(
    run: Runner,
    psutil_module: PsutilModule,
    operation: commands_pb2.ServiceOperation,
    name: str,
) -> commands_pb2.ServiceResult:
    """Start, stop or restart a service and return its state afterwards."""
    done = run(control_command(operation, name))
    try:
        service = service_info(psutil_module.win_service_get(name))
    except (psutil_module.NoSuchProcess, psutil_module.AccessDenied):
        service = None
    result = commands_pb2.ServiceResult(service=service, output=done.output)
    if done.returncode != 0:
        raise ActionFailed(
            f"{verb(operation)} service {name}: PowerShell exited {done.returncode}: "
            f"{done.output or 'no output'}",
            service=result,
        )
    return result
