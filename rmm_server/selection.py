"""Which agents an operator's words reach: one resolution for every command and lookup.

An operator names agents by id (or the start of one) or by hostname; the rules that tell the
two apart are in rmm_common.agent_words. A hostname is text the agent reports about itself, so it
is never trusted as an identity: it must name exactly one agent (look-alikes included) among
those of the pinned client and site, or the request is refused with the candidates listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from rmm_common.agent_words import (
    AgentWord,
    WordKind,
    hostname_key,
    parse_agent_word,
    shown_hostname,
)
from rmm_common.errors import InvalidArgument, NotFound, RmmError
from rmm_proto import operator_pb2
from rmm_server.fleet import Fleet
from rmm_server.storage import AgentRecord

OS_NAMES = ("linux", "windows", "macos")
STATUSES = ("", "online", "offline")
SHOWN_CANDIDATES = 10


class NamedAgent(Protocol):
    """What resolution reads of an agent: a full record or a light row (storage.AgentName)."""

    @property
    def id(self) -> str: ...
    @property
    def client(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def revoked_at(self) -> float | None: ...


A = TypeVar("A", bound=NamedAgent)


def describe_selector(selector: operator_pb2.TargetSelector) -> str:
    """Return the selector as the `key=value,...` text operators type."""
    terms = []
    for text in selector.agents:
        try:
            terms.append(parse_agent_word(text).term())
        except RmmError:
            terms.append(f"agent={text}")  # refused later, with the reason
    for key in ("client", "site", "tag", "os", "status"):
        value = getattr(selector, key)
        if value:
            terms.append(f"{key}={value}")
    if selector.all:
        terms.append("all")
    return ",".join(terms)


def describe_candidate(agent: NamedAgent) -> str:
    """Return one agent as a refusal lists it: id, client, site, then its reported hostname."""
    revoked = ", revoked" if agent.revoked_at is not None else ""
    return (
        f"{agent.id} (client {agent.client!r}, site {agent.site!r}, "
        f"agent-reported hostname {shown_hostname(agent.hostname)}{revoked})"
    )


def _candidates(agents: Sequence[NamedAgent]) -> str:
    shown = "; ".join(describe_candidate(agent) for agent in agents[:SHOWN_CANDIDATES])
    more = len(agents) - SHOWN_CANDIDATES
    return shown + (f"; and {more} more" if more > 0 else "")


def resolve_agent(
    agents: Sequence[A],
    word: AgentWord,
    client: str = "",
    site: str = "",
    require_client: bool = False,
    clients: int | None = None,
) -> A:
    """Return the one agent `word` names among `agents`; refuse an ambiguous or unknown word.

    An id word is compared with agent ids only. A hostname word is compared, look-alikes
    included (rmm_common.agent_words.hostname_key), with the hostnames of the agents of `client`
    and `site` when given (these two come from the enrollment token, never from the agent), and
    must match exactly one agent, whose hostname must be the word itself (in any case). With
    `require_client` (a command that acts), a hostname must also come with `client` once the
    agents span several clients: otherwise an agent of any client could take a hostname first
    (one not enrolled yet, revoked, or mistyped) and receive what was meant for another.
    `clients`, when given, is how many clients the whole fleet spans: then `agents` may be only
    the hostname's candidates (storage/agent_lookup.py), not every agent.
    """
    if word.kind is WordKind.ID:
        matches = [agent for agent in agents if agent.id.lower().startswith(word.value)]
        for agent in matches:
            if agent.id.lower() == word.value:
                return agent
        if len(matches) > 1:
            raise InvalidArgument(
                f"agent id prefix {word.text!r} starts {len(matches)} agent ids: give more of "
                f"it. Candidates: {_candidates(matches)}"
            )
        if not matches:
            raise NotFound(
                f"no agent id starts with {word.text!r}: see rmm agents list (a word of hex "
                f"digits is only ever an agent id; to name a hostname write host={word.text})"
            )
        return matches[0]
    key = hostname_key(word.value)
    pinned = [
        agent
        for agent in agents
        if (not client or agent.client == client) and (not site or agent.site == site)
    ]
    matches = [agent for agent in pinned if hostname_key(agent.hostname) == key]
    where = "".join(
        f" in {name} {value!r}" for name, value in (("client", client), ("site", site)) if value
    )
    if not matches:
        raise NotFound(
            f"no agent{where} reports the hostname {shown_hostname(word.value)}: see rmm agents "
            "list"
        )
    if clients is None:
        clients = len({agent.client for agent in agents})
    if len(matches) == 1 and require_client and not client and clients > 1:
        raise InvalidArgument(
            f"hostname {shown_hostname(word.value)} names no client, and an agent of any of the "
            f"{clients} clients could report it of itself: add client=NAME to the "
            "target (and site=NAME), or name the agent by id. "
            f"Candidates: {_candidates(matches)}"
        )
    if len(matches) > 1:
        spread_over = {agent.client for agent in matches}
        spread = f"agents of {len(spread_over)} clients" if len(spread_over) > 1 else "agents"
        raise InvalidArgument(
            f"hostname {shown_hostname(word.value)} is reported (or imitated) by {len(matches)} "
            f"{spread}{where}; a hostname is what an agent says of itself and must name exactly "
            "one agent: name it by id (agent=ID), or pin client= and site= to one. "
            f"Candidates: {_candidates(matches)}"
        )
    agent = matches[0]
    if agent.hostname.casefold() != word.value.casefold():
        raise InvalidArgument(
            f"no agent{where} reports the hostname {shown_hostname(word.value)}; only a "
            f"look-alike: {describe_candidate(agent)}. Name it by id if it is the one meant"
        )
    return agent


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
        words = [parse_agent_word(ident) for ident in selector.agents]
        chosen: dict[str, AgentRecord] = {}
        for word in words:
            agent = resolve_agent(agents, word, selector.client, selector.site, require_client=True)
            chosen[agent.id] = agent
        agents = list(chosen.values())
    selected = [
        agent
        for agent in agents
        if (not selector.client or agent.client == selector.client)
        and (not selector.site or agent.site == selector.site)
        and (not selector.tag or selector.tag in agent.tags)
        and (not selector.os or agent.os == selector.os)
        and (not selector.status or agent.online(now) == (selector.status == "online"))
    ]
    if not selected:
        raise NotFound(f"no agent matches the target {text!r}")
    _refuse_self_reported_spread(selector, selected, text)
    return sorted(selected, key=lambda agent: (agent.hostname, agent.id))


def _refuse_self_reported_spread(
    selector: operator_pb2.TargetSelector, selected: Sequence[AgentRecord], text: str
) -> None:
    """Refuse tag= or os= reaching several clients unless the operator said so.

    An agent enrolls with the tags it names and reports its own OS, so an agent of any client can
    join `tag=payroll` and receive another client's files and scripts. Across clients such a
    target must be meant: pinned to a client, or widened with `all`.
    """
    if not (selector.tag or selector.os) or selector.client or selector.all or selector.agents:
        return
    clients = sorted({agent.client for agent in selected})
    if len(clients) < 2:
        return
    terms = ",".join(
        f"{key}={getattr(selector, key)}" for key in ("tag", "os") if getattr(selector, key)
    )
    raise InvalidArgument(
        f"target {text!r} reaches agents of {len(clients)} clients ({', '.join(clients)}): "
        f"{terms} is what agents say of themselves, and an agent of any client can claim it; "
        f"pin client=NAME to one, or write all,{text} to mean every client. "
        f"Candidates: {_candidates(list(selected))}"
    )
