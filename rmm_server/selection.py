"""Which agents a remote action reaches: a TargetSelector matched against the fleet in memory."""

from __future__ import annotations

from rmm_common.errors import InvalidArgument, NotFound
from rmm_proto import operator_pb2
from rmm_server.fleet import Fleet
from rmm_server.storage import AgentRecord

OS_NAMES = ("linux", "windows", "macos")
STATUSES = ("", "online", "offline")


def describe_selector(selector: operator_pb2.TargetSelector) -> str:
    """Return the selector as the `key=value,...` text operators type."""
    terms = [f"agent={agent}" for agent in selector.agents]
    for key in ("client", "site", "tag", "os", "status"):
        value = getattr(selector, key)
        if value:
            terms.append(f"{key}={value}")
    if selector.all:
        terms.append("all")
    return ",".join(terms)


def _named(fleet: list[AgentRecord], ident: str) -> list[AgentRecord]:
    exact = [agent for agent in fleet if agent.id == ident]
    if exact:
        return exact
    by_host = [agent for agent in fleet if agent.hostname == ident]
    if by_host:
        return by_host
    by_prefix = [agent for agent in fleet if agent.id.startswith(ident)]
    if len(by_prefix) > 1:
        raise InvalidArgument(
            f"agent {ident!r} is ambiguous: it starts {len(by_prefix)} agent ids; give more of it"
        )
    if not by_prefix:
        raise NotFound(f"no agent has the id, id prefix or hostname {ident!r}")
    return by_prefix


def select_agents(
    fleet: Fleet, selector: operator_pb2.TargetSelector, now: float
) -> list[AgentRecord]:
    """Return the non-revoked agents the selector matches, by hostname; raise when none do."""
    text = describe_selector(selector)
    if not text:
        raise InvalidArgument(
            "the target selects nothing: give agents, client, site, tag, os or status, or `all` "
            "for every agent"
        )
    if selector.os and selector.os not in OS_NAMES:
        raise InvalidArgument(f"os {selector.os!r} is not one of {', '.join(OS_NAMES)}")
    if selector.status not in STATUSES:
        raise InvalidArgument(f"status {selector.status!r} is not online or offline")
    agents = [state.record for state in fleet.snapshot() if state.record.revoked_at is None]
    if selector.agents:
        chosen: dict[str, AgentRecord] = {}
        for ident in selector.agents:
            for agent in _named(agents, ident):
                chosen[agent.id] = agent
        agents = list(chosen.values())
    selected = [
        agent
        for agent in agents
        if (not selector.client or agent.client == selector.client)
        and (not selector.site or agent.site == selector.site)
        and (not selector.tag or selector.tag in agent.tags)
        and (not selector.os or agent.os == selector.os)
        and (
            not selector.status
            or agent.online(now) == (selector.status == "online")
        )
    ]
    if not selected:
        raise NotFound(f"no agent matches the target {text!r}")
    return sorted(selected, key=lambda agent: (agent.hostname, agent.id))
