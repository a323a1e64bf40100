"""install_updates: install pending updates with their backends and answer for each one."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from rmm_agent.actions.base import ActionContext, ActionFailed, action, succeeded
from rmm_agent.patching import PatchBackend, default_backends, run_process
from rmm_agent.patching.base import (
    FAILED,
    INSTALLED,
    INTERRUPTED,
    LOCKED,
    SKIPPED,
    InstallOutcome,
)
from rmm_proto import commands_pb2

log = logging.getLogger(__name__)

# Returns this host's backends (all of them, available or not): a test passes its own.
Backends = Callable[[], Sequence[PatchBackend]]

STATUSES = {
    INSTALLED: commands_pb2.UPDATE_INSTALLED,
    FAILED: commands_pb2.UPDATE_FAILED,
    SKIPPED: commands_pb2.UPDATE_SKIPPED,
    LOCKED: commands_pb2.UPDATE_LOCKED,
    INTERRUPTED: commands_pb2.UPDATE_INTERRUPTED,
}
# An install this small is refused rather than started and killed at once.
MIN_SECONDS = 5.0
MAX_IDS = 1000


def host_backends() -> Sequence[PatchBackend]:
    """Return this OS's backends."""
    return default_backends(sys.platform, run_process)


def group_ids(
    ids: Sequence[str], only: str, backends: Sequence[PatchBackend]
) -> tuple[dict[str, list[str]], dict[str, InstallOutcome]]:
    """Split ids by backend; return (ids per available backend, outcomes of the rest)."""
    present = {b.name: b for b in backends}
    groups: dict[str, list[str]] = {}
    skipped: dict[str, InstallOutcome] = {}
    for uid in dict.fromkeys(ids):
        name = uid.split(":", 1)[0] if ":" in uid else ""
        if only and name != only:
            reason = f"{uid!r} is not an update of backend {only!r}"
        elif name not in present:
            known = ", ".join(sorted(present)) or "none"
            reason = (
                f"{uid!r}: no backend {name!r} on this host "
                f"(this OS has: {known}); ids are '<backend>:<name>' as the agent reports them"
            )
        elif not present[name].available():
            reason = f"{uid!r}: {name} is not installed on this host"
        else:
            groups.setdefault(name, []).append(uid)
            continue
        skipped[uid] = InstallOutcome(uid, SKIPPED, reason)
    return groups, skipped


def install_all(
    request: commands_pb2.InstallUpdates, context: ActionContext, backends: Sequence[PatchBackend]
) -> list[InstallOutcome]:
    """Install every group with its backend, one after the other, within the deadline."""
    by_name = {b.name: b for b in backends}
    groups, outcomes = group_ids(request.update_ids, request.backend, backends)
    for name, ids in groups.items():
        remaining = context.remaining()
        if remaining < MIN_SECONDS:
            for uid in ids:
                outcomes[uid] = InstallOutcome(
                    uid, SKIPPED, "no time left in the command's timeout to start it"
                )
            continue
        log.info("install_updates: installing %d update(s) with %s", len(ids), name)
        try:
            done = by_name[name].install(ids, remaining)
        except Exception as exc:
            # A backend that cannot even scan fails its own updates, not the others'.
            log.warning("install_updates: %s failed: %s", name, exc)
            done = [InstallOutcome(uid, FAILED, f"{name}: {exc}") for uid in ids]
        outcomes.update({o.id: o for o in done})
    return [outcomes[uid] for uid in dict.fromkeys(request.update_ids)]


def to_result(outcomes: Sequence[InstallOutcome]) -> commands_pb2.InstallUpdatesResult:
    """Return the outcomes as the result message."""
    return commands_pb2.InstallUpdatesResult(
        updates=[
            commands_pb2.UpdateInstallResult(
                update_id=o.id,
                status=STATUSES[o.status],
                message=o.message,
                version=o.version or "",
                reboot_required=o.reboot_required,
            )
            for o in outcomes
        ],
        reboot_required=any(o.reboot_required and o.status == INSTALLED for o in outcomes),
    )


def summary(outcomes: Sequence[InstallOutcome]) -> str:
    """Say how many updates were not installed and why, e.g. "1 of 3 not installed: 1 locked"."""
    counts: dict[str, int] = {}
    for o in outcomes:
        if o.status != INSTALLED:
            counts[o.status] = counts.get(o.status, 0) + 1
    why = ", ".join(f"{n} {status}" for status, n in counts.items())
    return f"{sum(counts.values())} of {len(outcomes)} updates not installed: {why}"


def make_run(
    backends: Backends = host_backends,
) -> Callable[[commands_pb2.InstallUpdates, ActionContext], commands_pb2.CommandResult]:
    """Return the action's run function over the backends `backends` returns."""

    @action
    def run(
        request: commands_pb2.InstallUpdates, context: ActionContext
    ) -> commands_pb2.CommandResult:
        """Install the updates asked for; SUCCEEDED only when every one was installed."""
        if not request.update_ids:
            raise ActionFailed("install_updates names no update ids; give at least one")
        if len(request.update_ids) > MAX_IDS:
            raise ActionFailed(
                f"install_updates names {len(request.update_ids)} updates, more than the "
                f"{MAX_IDS} one command may install; split it"
            )
        outcomes = install_all(request, context, backends())
        result = to_result(outcomes)
        if all(o.status == INSTALLED for o in outcomes):
            return succeeded(install_updates=result)
        status = commands_pb2.COMMAND_FAILED
        if any(o.status == INTERRUPTED for o in outcomes) and context.remaining() <= 0:
            status = commands_pb2.COMMAND_TIMED_OUT
        raise ActionFailed(summary(outcomes), status, install_updates=result)

    return run


run = make_run()
