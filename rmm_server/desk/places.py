"""Clients and sites: create, read, rename, set a site's time zone (docs/desk.md).

A rename changes the name every agent and enrollment token of the client or site carries, in
storage in one transaction, then in the fleet and /metrics at once and on every replica, as
moving an agent does (rmm_server.placement).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rmm_common.errors import InvalidArgument
from rmm_common.tokens import new_ident
from rmm_proto import agent_pb2
from rmm_server.cluster import Cluster
from rmm_server.enrollment import check_name
from rmm_server.fleet import Fleet
from rmm_server.reports import decompress
from rmm_server.storage import AgentRecord, Store
from rmm_server.storage.desk import ClientRecord, DeskStore, Renamed, SiteRecord

log = logging.getLogger(__name__)


def check_time_zone(name: str) -> str:
    """Return an IANA time zone name, or raise InvalidArgument naming the fix."""
    name = name.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(
            f"time zone {name!r} is unknown: use an IANA name such as UTC, Europe/Berlin or "
            "America/New_York"
        ) from None
    return name


class Places:
    """Clients and sites, kept in step with the names agents and tokens carry."""

    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        cluster: Cluster,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.records = DeskStore(store)
        self.fleet = fleet
        self.cluster = cluster
        self.clock = clock

    def create_client(self, name: str, by: str) -> ClientRecord:
        """Add a client; return it."""
        now = self.clock()
        record = ClientRecord(new_ident(), check_name("client", name), now, by, now)
        self.records.create_client(record)
        log.info("client %s created by %s", record.name, by, extra={"operator": by})
        return self.records.get_client(record.name)

    def get_client(self, name: str) -> ClientRecord:
        """Return the client called `name`."""
        return self.records.get_client(name.strip())

    def list_clients(self) -> list[ClientRecord]:
        """Return every client."""
        return self.records.list_clients()

    async def rename_client(self, name: str, new_name: str, by: str) -> ClientRecord:
        """Rename a client everywhere its name is carried; return it."""
        name = name.strip()
        new_name = check_name("client", new_name)
        if new_name == name:
            raise InvalidArgument(f"client {name!r} has that name already: nothing to change")
        renamed = await asyncio.to_thread(self.records.rename_client, name, new_name, self.clock())
        await self._follow(renamed, lambda record: (new_name, record.site))
        log.info(
            "client %s renamed %s by %s (%d agents, %d enrollment tokens)",
            name,
            new_name,
            by,
            len(renamed.agent_ids),
            renamed.tokens,
            extra={"operator": by},
        )
        return await asyncio.to_thread(self.records.get_client, new_name)

    def create_site(self, client: str, name: str, time_zone: str, by: str) -> SiteRecord:
        """Add a site to a client; return it."""
        now = self.clock()
        record = SiteRecord(
            id=new_ident(),
            client_id="",
            client=client.strip(),
            name=check_name("site", name),
            time_zone=check_time_zone(time_zone or "UTC"),
            created_at=now,
            created_by=by,
            updated_at=now,
        )
        self.records.create_site(record)
        log.info("site %s/%s created by %s", record.client, record.name, by)
        return self.records.get_site(record.client, record.name)

    def get_site(self, client: str, name: str) -> SiteRecord:
        """Return one site."""
        return self.records.get_site(client.strip(), name.strip())

    def list_sites(self, client: str = "") -> list[SiteRecord]:
        """Return the sites of a client, or of every client."""
        return self.records.list_sites(client.strip())

    async def update_site(
        self, client: str, name: str, new_name: str, time_zone: str, by: str
    ) -> SiteRecord:
        """Rename a site and/or set its time zone; return it."""
        client, name = client.strip(), name.strip()
        if not new_name.strip() and not time_zone.strip():
            raise InvalidArgument(
                f"site {client}/{name}: say what to change (--name NEW, --time-zone ZONE)"
            )
        new_name = check_name("site", new_name) if new_name.strip() else ""
        zone = check_time_zone(time_zone) if time_zone.strip() else ""
        renamed = await asyncio.to_thread(
            self.records.update_site, client, name, new_name, zone, self.clock()
        )
        final = new_name or name
        await self._follow(renamed, lambda record: (record.client, final))
        log.info(
            "site %s/%s updated by %s (name %s, time zone %s, %d agents)",
            client,
            name,
            by,
            final,
            zone or "unchanged",
            len(renamed.agent_ids),
            extra={"operator": by},
        )
        return await asyncio.to_thread(self.records.get_site, client, final)

    async def _follow(
        self,
        renamed: Renamed,
        place: Callable[[AgentRecord], tuple[str, str]],
    ) -> None:
        """Carry a rename to the fleet, /metrics and the other replicas."""
        for agent_id in renamed.agent_ids:
            record = self.fleet.get(agent_id)
            if record is None:
                continue
            client, site = place(record)
            body = await asyncio.to_thread(self.store.latest_report_body, agent_id)
            latest = agent_pb2.Report.FromString(decompress(body)) if body is not None else None
            self.fleet.place(agent_id, client, site, record.tags, latest)
        self.cluster.agent_changed(renamed.agent_ids)
