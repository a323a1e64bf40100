"""Services on macOS: launchd jobs of the system domain through launchctl."""

from __future__ import annotations

from rmm_agent.actions.base import ActionFailed
from rmm_agent.actions.services_common import Runner, check_service_name, matches, verb
from rmm_proto import commands_pb2

LIST_COMMAND = ["launchctl", "list"]


def control_command(operation: commands_pb2.ServiceOperation, label: str) -> list[str]:
    """Return the launchctl command line that starts or restarts the job `label`."""
    target = f"system/{check_service_name(label)}"
    action = verb(operation)
    if action == "start":
        return ["launchctl", "kickstart", target]
    if action == "restart":
        return ["launchctl", "kickstart", "-k", target]
    raise ActionFailed(
        "stopping a launchd service is not supported on macOS yet: launchd starts a KeepAlive "
        f"job again once it is killed; on the host, `launchctl bootout {target}` unloads it"
    )


def parse_list(text: str) -> list[commands_pb2.ServiceInfo]:
    """Parse `launchctl list`: PID (or -), last exit status, label; tab-separated."""
    services = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 3 or fields[0] == "PID":
            continue
        pid, status, label = fields
        if pid != "-":
            state = "running"
        elif status == "0":
            state = "stopped"
        else:
            state = "failed"  # not running, and its last run ended badly
        services.append(commands_pb2.ServiceInfo(name=label, state=state, start_mode="unknown"))
    return services


def list_services(run: Runner, wanted: str = "") -> list[commands_pb2.ServiceInfo]:
    """List the launchd jobs whose label contains `wanted`."""
    services = [s for s in parse_list(run(LIST_COMMAND).checked()) if matches(s.name, wanted)]
    return sorted(services, key=lambda s: s.name)


def control(
    run: Runner, operation: commands_pb2.ServiceOperation, label: str
) -> commands_pb2.ServiceResult:
    """Start or restart a job and return its state afterwards."""
    done = run(control_command(operation, label))
    after = [s for s in list_services(run, label) if s.name == label]
    result = commands_pb2.ServiceResult(service=after[0] if after else None, output=done.output)
    if done.returncode != 0:
        raise ActionFailed(done.failure(), service=result)
    return result
