"""Moving an agent to another client or site, or changing its tags, without enrolling it again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from rmm_common.errors import InvalidArgument, NotFound
from rmm_common.tokens import new_ident
from rmm_proto import agent_pb2
from rmm_server.cluster import Cluster
from rmm_server.enrollment import check_name, check_tags
from rmm_server.fleet import Fleet
from rmm_server.reports import decompress
from rmm_server.storage import AgentRecord, Store
from rmm_server.storage.desk import DeskStore

log = logging.getLogger(__name__)


def new_placement(
    agent: AgentRecord, client: str, site: str, add_tags: Sequence[str], remove_tags: Sequence[str]
) -> tuple[str, str, list[str]]:
    """Return the agent's client, site and tags after the change, or raise InvalidArgument.

    An empty `client` or `site` keeps the current one (a new client alone keeps the site's
    name). Removing a tag the agent does not have is refused: it is most likely a typo.
    """
    client = check_name("client", client) if client.strip() else agent.client
    site = check_name("site", site) if site.strip() else agent.site
    add = check_tags([tag.strip() for tag in add_tags])
    remove = {tag.strip() for tag in remove_tags}
    missing = sorted(remove - set(agent.tags))
    if missing:
        raise InvalidArgument(
            f"agent {agent.id} has no tag {missing[0]!r} to remove (its tags: "
            f"{', '.join(agent.tags) or 'none'})"
        )
    both = sorted(remove & set(add))
    if both:
        raise InvalidArgument(f"tag {both[0]!r} is both added and removed: pick one")
    tags = check_tags([*(tag for tag in agent.tags if tag not in remove), *add])
    if (client, site, tags) == (agent.client, agent.site, sorted(agent.tags)):
        raise InvalidArgument(
            f"agent {agent.id} is in {agent.client}/{agent.site} with tags "
            f"{', '.join(agent.tags) or 'none'} already: nothing to change"
        )
    return client, site, tags


class AgentPlacement:
    """Change where an agent belongs, in storage, in the fleet and on every replica at once."""

    def __init__(self, store: Store, fleet: Fleet, cluster: Cluster) -> None:
        self.store = store
        self.fleet = fleet
        self.cluster = cluster

    async def update(
        self,
        agent: AgentRecord,
        client: str,
        site: str,
        add_tags: Sequence[str],
        remove_tags: Sequence[str],
        operator: str,
    ) -> AgentRecord:
        """Move or retag `agent`; return its record as it is now.

        /metrics shows the new labels at once (rendered again from the latest stored report);
        the alert policies of the new client, site and tags apply from its next report.
        """
        if agent.revoked_at is not None:
            raise InvalidArgument(
                f"agent {agent.id} is revoked: it reports nothing any more, so it cannot move "
                "(enroll the host again with a token for the client and site you want)"
            )
        client, site, tags = new_placement(agent, client, site, add_tags, remove_tags)
        # Every name an agent carries has its client and site record (docs/desk.md).
        await asyncio.to_thread(
            DeskStore(self.store).ensure_place, client, site, operator, time.time(), new_ident
        )
        stored = await asyncio.to_thread(self.store.place_agent, agent.id, client, site, tags)
        if stored is None:
            raise NotFound(f"agent {agent.id} does not exist any more: see `rmm agents list`")
        body = await asyncio.to_thread(self.store.latest_report_body, agent.id)
        latest = agent_pb2.Report.FromString(decompress(body)) if body is not None else None
        record = self.fleet.place(agent.id, client, site, tags, latest) or stored
        # The other replicas read it back (rmm_server.fleet refresh): their fleet, their
        # credential checks and their alert scope follow.
        self.cluster.agent_changed([agent.id])
        log.info(
            "agent %s (%s) moved by %s from %s/%s [%s] to %s/%s [%s]",
            agent.id,
            agent.hostname,
            operator,
            agent.client,
            agent.site,
            ",".join(agent.tags),
            client,
            site,
            ",".join(tags),
            extra={"agent_id": agent.id, "operator": operator},
        )
        return record
