"""Who may do what: the one table of operator roles and the calls each may make."""

from __future__ import annotations

from enum import IntEnum

from rmm_common.errors import InvalidArgument, PermissionDenied


class Role(IntEnum):
    """Operator roles, each allowed everything the ones below it are."""

    VIEWER = 10
    TIER1 = 20
    TIER2 = 30
    TIER3 = 40
    ADMIN = 50

    @classmethod
    def parse(cls, name: str) -> Role:
        """Return the role called `name` (case-insensitive)."""
        try:
            return cls[name.upper()]
        except KeyError:
            choices = ", ".join(role.name.lower() for role in cls)
            raise InvalidArgument(f"unknown role {name!r}: choose one of {choices}") from None


# The least role each operator call needs. A call missing here is refused for everyone.
REQUIRED_ROLE: dict[str, Role] = {
    "ListAgents": Role.VIEWER,
    "GetAgent": Role.VIEWER,
    "ListAlerts": Role.VIEWER,
    "GetAlert": Role.VIEWER,
    "ListSilences": Role.VIEWER,
    "ListMaintenance": Role.VIEWER,
    "ExplainPolicy": Role.VIEWER,
    "ListFailedNotifications": Role.VIEWER,
    "AckAlert": Role.TIER1,
    "CreateSilence": Role.TIER1,
    "ExpireSilence": Role.TIER1,
    "AddMaintenance": Role.TIER2,
    "EndMaintenance": Role.TIER2,
    "ReloadPolicies": Role.TIER3,
    "ListEnrollmentTokens": Role.TIER3,
    "CreateEnrollmentToken": Role.TIER3,
    "RevokeEnrollmentToken": Role.TIER3,
    "RevokeAgent": Role.TIER3,
    "RotateAgentCredential": Role.TIER3,
    # Moving an agent to another client or site is what a new enrollment token for it would
    # do, so it needs the role that makes tokens.
    "UpdateAgent": Role.TIER3,
    "GetCommand": Role.VIEWER,
    "ListCommands": Role.VIEWER,
    "ListScripts": Role.VIEWER,
    "GetScript": Role.VIEWER,
    # The least role for any action; ACTION_ROLE below says what each action needs.
    "RunCommand": Role.TIER1,
    "ListAudit": Role.TIER3,
    "VerifyAudit": Role.TIER3,
    "ListOperators": Role.ADMIN,
    "AddOperator": Role.ADMIN,
    "RevokeOperator": Role.ADMIN,
    "ExportAudit": Role.ADMIN,
    "ArchiveAudit": Role.ADMIN,
    # Patching. Seeing the fleet's updates and compliance is a viewer's. Approving, declining
    # and installing change what runs on clients' hosts and may reboot them: the role that may
    # reboot, restart services and run any script (tier2) decides them, for a scope of any
    # size, as it may reboot `all`; tier1 (first contact, fact gathering) may not.
    "ListPatches": Role.VIEWER,
    "GetPatchReport": Role.VIEWER,
    "ListPatchRuns": Role.VIEWER,
    "ApprovePatches": Role.TIER2,
    "DeclinePatches": Role.TIER2,
    "InstallPatches": Role.TIER2,
    # The desk (docs/desk.md). Reading clients, sites and contracts is a viewer's. Creating a
    # client or site, renaming one (which renames it on its agents) or setting a site's time
    # zone changes policy scopes as moving an agent does: tier3, as UpdateAgent. A contract is
    # what the MSP sold: admin.
    "ListClients": Role.VIEWER,
    "GetClient": Role.VIEWER,
    "ListSites": Role.VIEWER,
    "GetSite": Role.VIEWER,
    "ListContracts": Role.VIEWER,
    "GetContract": Role.VIEWER,
    "CreateClient": Role.TIER3,
    "UpdateClient": Role.TIER3,
    "CreateSite": Role.TIER3,
    "UpdateSite": Role.TIER3,
    "CreateContract": Role.ADMIN,
    "UpdateContract": Role.ADMIN,
    # Tickets: tier1 opens, documents, escalates and resolves. Closing one never resolved is
    # checked again by the service (tier3); archiving needs tier3 (the help-desk audit's rule:
    # only authorised staff archive).
    "ListTickets": Role.VIEWER,
    "GetTicket": Role.VIEWER,
    "OpenTicket": Role.TIER1,
    "NoteTicket": Role.TIER1,
    "AssignTicket": Role.TIER1,
    "EscalateTicket": Role.TIER1,
    "ResolveTicket": Role.TIER1,
    "ReopenTicket": Role.TIER1,
    "CloseTicket": Role.TIER1,
    "LogTicketTime": Role.TIER1,
    "ArchiveTicket": Role.TIER3,
    # Reports read what viewers may read already (contracts, tickets, alerts, patches).
    "GetContractReport": Role.VIEWER,
    "GetTrends": Role.VIEWER,
}

# The least role each remote action needs (the `action` field of a RunCommandRequest). A library
# script needs tier1 or the script's own `min_role`, whichever is higher; an ad-hoc one tier2.
# A library script run that sets more than its header's parameters (env, args, a working
# directory) counts as run_script: whoever may not run any script may not reshape one either.
LIBRARY_SCRIPT = "library_script"
ACTION_ROLE: dict[str, Role] = {
    LIBRARY_SCRIPT: Role.TIER1,
    "collect_now": Role.TIER1,
    "list_processes": Role.TIER1,
    "list_services": Role.TIER1,
    "run_script": Role.TIER2,
    "kill_process": Role.TIER2,
    "service_control": Role.TIER2,
    "reboot": Role.TIER2,
    "push_file": Role.TIER2,
    "pull_file": Role.TIER2,
    # A driver changes how the host talks to its hardware: the highest tier.
    "driver_package": Role.TIER3,
}


def check_action_allowed(action: str, role: Role, operator: str, floor: Role = Role.VIEWER) -> None:
    """Raise PermissionDenied unless `role` may send the remote action `action`.

    `floor` raises the need further, e.g. a library script's own minimum role.
    """
    needed = ACTION_ROLE.get(action)
    if needed is None:
        raise PermissionDenied(f"remote action {action!r} is not open to operators")
    needed = max(needed, floor)
    if role < needed:
        raise PermissionDenied(
            f"operator {operator!r} has role {role.name.lower()}; the {action} action needs "
            f"{needed.name.lower()} or higher"
        )


def check_allowed(method: str, role: Role, operator: str) -> None:
    """Raise PermissionDenied unless `role` may call `method`."""
    needed = REQUIRED_ROLE.get(method)
    if needed is None:
        raise PermissionDenied(f"{method} is not open to operators")
    if role < needed:
        raise PermissionDenied(
            f"operator {operator!r} has role {role.name.lower()}; {method} needs "
            f"{needed.name.lower()} or higher"
        )
