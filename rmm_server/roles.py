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
}


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
