"""Clients, sites and contracts: the desk's records and their storage (docs/desk.md).

Agents, enrollment tokens and alerts carry a client's and a site's names, as they did before
these records existed: every policy scope, /metrics label and list order reads those names. The
records own the names, and a rename here changes the name on every agent and token in the same
transaction, so the two never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from rmm_common.errors import AlreadyExists, NotFound, StorageError
from rmm_server.storage import schema
from rmm_server.storage.store import Store


@dataclass(slots=True)
class ClientRecord:
    id: str
    name: str
    created_at: float
    created_by: str
    updated_at: float
    sites: int = 0  # counted when listed or read
    agents: int = 0
    has_contract: bool = False


@dataclass(slots=True)
class SiteRecord:
    id: str
    client_id: str
    client: str  # the client's name
    name: str
    time_zone: str
    created_at: float
    created_by: str
    updated_at: float
    agents: int = 0


@dataclass(frozen=True, slots=True)
class SlaTarget:
    """How fast a severity's problems must be acknowledged and resolved, on which clock."""

    acknowledge_seconds: float
    resolve_seconds: float
    clock: str  # "24x7" or "business"


@dataclass(slots=True)
class ContractRecord:
    id: str
    client_id: str
    client: str  # the client's name
    type: str
    period: str
    currency: str
    business_hours: str
    created_at: float
    created_by: str
    updated_at: float
    updated_by: str
    hours_per_period: float | None = None
    warn_below_hours: float | None = None
    rate: float | None = None
    sla: dict[str, SlaTarget] = field(default_factory=dict)
    holidays: tuple[str, ...] = ()  # YYYY-MM-DD, sorted: days without business hours


@dataclass(frozen=True, slots=True)
class Renamed:
    """What a rename changed besides the record: the agents moved (their ids) and tokens."""

    agent_ids: tuple[str, ...]
    tokens: int


def sla_to_json(sla: dict[str, SlaTarget]) -> str:
    """Return SLA targets as the JSON the contracts table keeps."""
    return json.dumps(
        {
            severity: {
                "acknowledge_seconds": target.acknowledge_seconds,
                "resolve_seconds": target.resolve_seconds,
                "clock": target.clock,
            }
            for severity, target in sorted(sla.items())
        },
        sort_keys=True,
    )


def sla_from_json(text: str) -> dict[str, SlaTarget]:
    """Return the SLA targets the contracts table keeps as JSON."""
    data: dict[str, dict[str, Any]] = json.loads(text)
    return {
        severity: SlaTarget(
            float(item["acknowledge_seconds"]), float(item["resolve_seconds"]), str(item["clock"])
        )
        for severity, item in data.items()
    }


class DeskStore:
    """Reads and writes of clients, sites and contracts."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- clients ---------------------------------------------------------------------------

    def create_client(self, record: ClientRecord) -> None:
        """Add a client; raise AlreadyExists when its name is taken."""
        with self.store.transaction(f"create client {record.name}") as conn:
            if _client_row(conn, record.name) is not None:
                raise AlreadyExists(
                    f"client {record.name!r} exists already: see `rmm clients list`"
                )
            try:
                conn.execute(insert(schema.clients).values(**_client_values(record)))
            except IntegrityError as exc:
                # Taken by another transaction between the check and the insert.
                raise AlreadyExists(f"client {record.name!r} exists already") from exc

    def get_client(self, name: str) -> ClientRecord:
        """Return the client called `name` with its counts, or raise NotFound."""
        with self.store.transaction(f"read client {name}") as conn:
            row = _client_row(conn, name)
            if row is None:
                raise NotFound(unknown_client(name))
            return self._with_counts(conn, [_client(row)])[0]

    def list_clients(self) -> list[ClientRecord]:
        """Return every client by name, with its counts of sites and agents."""
        table = schema.clients
        with self.store.transaction("list clients") as conn:
            rows = conn.execute(select(table).order_by(self.store.text_order(table.c.name))).all()
            return self._with_counts(conn, [_client(row) for row in rows])

    def _with_counts(self, conn: Connection, found: list[ClientRecord]) -> list[ClientRecord]:
        if not found:
            return found
        ids = [client.id for client in found]
        names = [client.name for client in found]
        sites: dict[str, int] = {
            row[0]: int(row[1])
            for row in conn.execute(
                select(schema.sites.c.client_id, func.count())
                .where(schema.sites.c.client_id.in_(ids))
                .group_by(schema.sites.c.client_id)
            )
        }
        agents: dict[str, int] = {
            row[0]: int(row[1])
            for row in conn.execute(
                select(schema.agents.c.client, func.count())
                .where(schema.agents.c.client.in_(names), schema.agents.c.revoked_at.is_(None))
                .group_by(schema.agents.c.client)
            )
        }
        contracted = set(
            conn.execute(
                select(schema.contracts.c.client_id).where(schema.contracts.c.client_id.in_(ids))
            ).scalars()
        )
        for client in found:
            client.sites = sites.get(client.id, 0)
            client.agents = agents.get(client.name, 0)
            client.has_contract = client.id in contracted
        return found

    def rename_client(self, name: str, new_name: str, now: float) -> Renamed:
        """Rename a client, on its record, agents and enrollment tokens in one transaction."""
        with self.store.transaction(f"rename client {name}") as conn:
            row = _client_row(conn, name)
            if row is None:
                raise NotFound(unknown_client(name))
            if _client_row(conn, new_name) is not None:
                raise AlreadyExists(
                    f"client {new_name!r} exists already: pick another name (moving agents "
                    "between clients is `rmm agents move`)"
                )
            conn.execute(
                update(schema.clients)
                .where(schema.clients.c.id == row.id)
                .values(name=new_name, updated_at=now)
            )
            agents = schema.agents
            moved = tuple(
                conn.execute(select(agents.c.id).where(agents.c.client == name)).scalars()
            )
            conn.execute(update(agents).where(agents.c.client == name).values(client=new_name))
            tokens = schema.enrollment_tokens
            changed = conn.execute(
                update(tokens).where(tokens.c.client == name).values(client=new_name)
            )
            return Renamed(moved, changed.rowcount)

    # --- sites -----------------------------------------------------------------------------

    def create_site(self, record: SiteRecord) -> None:
        """Add a site to its client; raise NotFound or AlreadyExists."""
        with self.store.transaction(f"create site {record.client}/{record.name}") as conn:
            client = _client_row(conn, record.client)
            if client is None:
                raise NotFound(unknown_client(record.client))
            record.client_id = client.id
            if _site_row(conn, client.id, record.name) is not None:
                raise AlreadyExists(
                    f"site {record.client}/{record.name} exists already: see `rmm sites list "
                    f"--client {record.client}`"
                )
            try:
                conn.execute(insert(schema.sites).values(**_site_values(record)))
            except IntegrityError as exc:
                raise AlreadyExists(f"site {record.client}/{record.name} exists already") from exc

    def get_site(self, client: str, name: str) -> SiteRecord:
        """Return one site with its count of agents, or raise NotFound."""
        with self.store.transaction(f"read site {client}/{name}") as conn:
            found = self._sites(conn, client, name)
            if not found:
                raise NotFound(unknown_site(client, name))
            return found[0]

    def list_sites(self, client: str = "") -> list[SiteRecord]:
        """Return the sites of `client` (every client's when empty), by client and name."""
        with self.store.transaction("list sites") as conn:
            if client and _client_row(conn, client) is None:
                raise NotFound(unknown_client(client))
            return self._sites(conn, client, "")

    def _sites(self, conn: Connection, client: str, name: str) -> list[SiteRecord]:
        sites, clients = schema.sites, schema.clients
        query = select(sites, clients.c.name.label("client_name")).join(
            clients, clients.c.id == sites.c.client_id
        )
        if client:
            query = query.where(clients.c.name == client)
        if name:
            query = query.where(sites.c.name == name)
        rows = conn.execute(
            query.order_by(
                self.store.text_order(clients.c.name), self.store.text_order(sites.c.name)
            )
        ).all()
        found = [_site(row) for row in rows]
        if found:
            agents = schema.agents
            counted = select(agents.c.client, agents.c.site, func.count()).where(
                agents.c.revoked_at.is_(None)
            )
            if client:
                counted = counted.where(agents.c.client == client)
            counts = {
                (row[0], row[1]): int(row[2])
                for row in conn.execute(counted.group_by(agents.c.client, agents.c.site))
            }
            for site in found:
                site.agents = counts.get((site.client, site.name), 0)
        return found

    def update_site(
        self, client: str, name: str, new_name: str, time_zone: str, now: float
    ) -> Renamed:
        """Rename a site (on its agents and tokens too) and/or set its time zone, atomically."""
        with self.store.transaction(f"update site {client}/{name}") as conn:
            client_row = _client_row(conn, client)
            if client_row is None:
                raise NotFound(unknown_client(client))
            row = _site_row(conn, client_row.id, name)
            if row is None:
                raise NotFound(unknown_site(client, name))
            values: dict[str, Any] = {"updated_at": now}
            if time_zone:
                values["time_zone"] = time_zone
            moved: tuple[str, ...] = ()
            tokens_changed = 0
            if new_name and new_name != name:
                if _site_row(conn, client_row.id, new_name) is not None:
                    raise AlreadyExists(
                        f"site {client}/{new_name} exists already: pick another name (moving "
                        "agents between sites is `rmm agents move`)"
                    )
                values["name"] = new_name
                agents = schema.agents
                in_site = (agents.c.client == client) & (agents.c.site == name)
                moved = tuple(conn.execute(select(agents.c.id).where(in_site)).scalars())
                conn.execute(update(agents).where(in_site).values(site=new_name))
                tokens = schema.enrollment_tokens
                tokens_changed = conn.execute(
                    update(tokens)
                    .where(tokens.c.client == client, tokens.c.site == name)
                    .values(site=new_name)
                ).rowcount
                # Tickets name their site too (their client by id: a client rename is free).
                conn.execute(
                    update(schema.tickets)
                    .where(
                        schema.tickets.c.client_id == client_row.id, schema.tickets.c.site == name
                    )
                    .values(site=new_name)
                )
            conn.execute(update(schema.sites).where(schema.sites.c.id == row.id).values(**values))
            return Renamed(moved, tokens_changed)

    def ensure_place(self, client: str, site: str, by: str, now: float, new_id: Any) -> None:
        """Create the client and site records named, those that do not exist yet.

        `new_id()` makes an id. Two callers at once may race: the unique indexes keep one
        record, and the loser reads the winner's.
        """
        for attempt in range(2):
            try:
                with self.store.transaction(f"create client and site {client}/{site}") as conn:
                    row = _client_row(conn, client)
                    if row is None:
                        client_id = new_id()
                        conn.execute(
                            insert(schema.clients).values(
                                id=client_id,
                                name=client,
                                created_at=now,
                                created_by=by,
                                updated_at=now,
                            )
                        )
                    else:
                        client_id = row.id
                    if _site_row(conn, client_id, site) is None:
                        conn.execute(
                            insert(schema.sites).values(
                                id=new_id(),
                                client_id=client_id,
                                name=site,
                                time_zone="UTC",
                                created_at=now,
                                created_by=by,
                                updated_at=now,
                            )
                        )
                return
            except StorageError as exc:
                # A lost race: the other transaction's record is there to read now.
                if attempt == 1 or not isinstance(exc.__cause__, IntegrityError):
                    raise

    # --- contracts -------------------------------------------------------------------------

    def client_id(self, name: str) -> str:
        """Return the id of the client called `name`, or raise NotFound."""
        with self.store.transaction(f"read client {name}") as conn:
            row = _client_row(conn, name)
            if row is None:
                raise NotFound(unknown_client(name))
            return str(row.id)

    def create_contract(self, record: ContractRecord) -> None:
        """Add a client's contract; raise NotFound or AlreadyExists (one per client)."""
        with self.store.transaction(f"create the contract of {record.client}") as conn:
            client = _client_row(conn, record.client)
            if client is None:
                raise NotFound(unknown_client(record.client))
            record.client_id = client.id
            if self._contract_row(conn, client.id) is not None:
                raise AlreadyExists(
                    f"client {record.client!r} has a contract already: change it with "
                    f"`rmm contracts update {record.client}`"
                )
            try:
                conn.execute(insert(schema.contracts).values(**_contract_values(record)))
            except IntegrityError as exc:
                raise AlreadyExists(f"client {record.client!r} has a contract already") from exc

    def get_contract(self, client: str) -> ContractRecord:
        """Return the contract of the client called `client`, or raise NotFound."""
        found = self._contracts(client)
        if not found:
            self.client_id(client)  # NotFound for an unknown client
            raise NotFound(
                f"client {client!r} has no contract: create one with `rmm contracts create "
                f"--client {client} --type managed|block-hours|time-and-materials`"
            )
        return found[0]

    def list_contracts(self) -> list[ContractRecord]:
        """Return every contract, by client name."""
        return self._contracts("")

    def _contracts(self, client: str) -> list[ContractRecord]:
        contracts, clients = schema.contracts, schema.clients
        query = select(contracts, clients.c.name.label("client_name")).join(
            clients, clients.c.id == contracts.c.client_id
        )
        if client:
            query = query.where(clients.c.name == client)
        with self.store.transaction("read contracts") as conn:
            rows = conn.execute(query.order_by(self.store.text_order(clients.c.name))).all()
        return [_contract(row) for row in rows]

    def replace_contract(self, record: ContractRecord) -> None:
        """Write every field of an existing contract (its id and client stay)."""
        values = _contract_values(record)
        for fixed in ("id", "client_id", "created_at", "created_by"):
            values.pop(fixed)
        with self.store.transaction(f"update the contract of {record.client}") as conn:
            changed = conn.execute(
                update(schema.contracts).where(schema.contracts.c.id == record.id).values(**values)
            )
            if changed.rowcount != 1:
                raise NotFound(f"the contract of {record.client!r} is gone: create it again")

    @staticmethod
    def _contract_row(conn: Connection, client_id: str) -> Any:
        return conn.execute(
            select(schema.contracts.c.id).where(schema.contracts.c.client_id == client_id)
        ).first()


def unknown_client(name: str) -> str:
    """Return the error text for a client name that has no record."""
    return (
        f"unknown client {name!r}: see `rmm clients list`, or create it with `rmm clients create`"
    )


def unknown_site(client: str, name: str) -> str:
    """Return the error text for a site name its client does not have."""
    return (
        f"client {client!r} has no site {name!r}: see `rmm sites list --client {client}`, or "
        f"create it with `rmm sites create {client} {name}`"
    )


def _client_row(conn: Connection, name: str) -> Any:
    return conn.execute(select(schema.clients).where(schema.clients.c.name == name)).first()


def _site_row(conn: Connection, client_id: str, name: str) -> Any:
    sites = schema.sites
    return conn.execute(
        select(sites).where(sites.c.client_id == client_id, sites.c.name == name)
    ).first()


def _client(row: Any) -> ClientRecord:
    return ClientRecord(row.id, row.name, row.created_at, row.created_by, row.updated_at)


def _client_values(record: ClientRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "created_at": record.created_at,
        "created_by": record.created_by,
        "updated_at": record.updated_at,
    }


def _site(row: Any) -> SiteRecord:
    return SiteRecord(
        id=row.id,
        client_id=row.client_id,
        client=row.client_name,
        name=row.name,
        time_zone=row.time_zone,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
    )


def _site_values(record: SiteRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "client_id": record.client_id,
        "name": record.name,
        "time_zone": record.time_zone,
        "created_at": record.created_at,
        "created_by": record.created_by,
        "updated_at": record.updated_at,
    }


def _contract(row: Any) -> ContractRecord:
    return ContractRecord(
        id=row.id,
        client_id=row.client_id,
        client=row.client_name,
        type=row.type,
        period=row.period,
        currency=row.currency,
        business_hours=row.business_hours,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        hours_per_period=row.hours_per_period,
        warn_below_hours=row.warn_below_hours,
        rate=row.rate,
        sla=sla_from_json(row.sla),
        holidays=tuple(json.loads(row.holidays or "[]")),
    )


def _contract_values(record: ContractRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "client_id": record.client_id,
        "type": record.type,
        "hours_per_period": record.hours_per_period,
        "period": record.period,
        "warn_below_hours": record.warn_below_hours,
        "rate": record.rate,
        "currency": record.currency,
        "business_hours": record.business_hours,
        "holidays": json.dumps(list(record.holidays)),
        "sla": sla_to_json(record.sla),
        "created_at": record.created_at,
        "created_by": record.created_by,
        "updated_at": record.updated_at,
        "updated_by": record.updated_by,
    }


__all__: Sequence[str] = (
    "ClientRecord",
    "ContractRecord",
    "DeskStore",
    "Renamed",
    "SiteRecord",
    "SlaTarget",
)
