"""What the service actions share across service managers: names, states, operations."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rmm_agent.actions.base import ActionFailed, Completed
from rmm_common.command_summary import SERVICE_VERBS, printable
from rmm_proto import commands_pb2

# Runs one service-manager command within the action's deadline.
Runner = Callable[[Sequence[str]], Completed]

MAX_NAME_LENGTH = 256

# systemd ActiveState -> ServiceInfo.state (Windows states are mapped onto systemd's first).
STATES = {
    "active": "running",
    "reloading": "running",
    "refreshing": "running",
    "inactive": "stopped",
    "failed": "failed",
    "activating": "starting",
    "deactivating": "stopping",
}


def state_of(active: str) -> str:
    """Return the ServiceInfo state for a systemd ActiveState."""
    return STATES.get(active, "unknown")


def check_service_name(name: str) -> str:
    """Return `name` if it can only be taken for a service name, never for an option."""
    if not name:
        raise ActionFailed("service_control needs a service name; it got none")
    if name.startswith("-"):
        raise ActionFailed(f"service name {printable(name)} starts with '-'; refused")
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        raise ActionFailed(
            f"service name {printable(name)} contains whitespace or control characters; refused"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ActionFailed(f"service name is {len(name)} characters, over {MAX_NAME_LENGTH}")
    return name


def verb(operation: commands_pb2.ServiceOperation) -> str:
    """Return the verb for an operation; refuse an unspecified or unknown one."""
    try:
        return SERVICE_VERBS[operation]
    except KeyError:
        raise ActionFailed(
            f"service_control: operation {operation} is not start, stop or restart"
        ) from None


def matches(name: str, wanted: str) -> bool:
    """Say whether a service name contains `wanted`, ignoring case ("" matches all)."""
    return wanted.casefold() in name.casefold()
