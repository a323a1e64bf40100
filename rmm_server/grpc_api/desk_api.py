"""Clients, sites and contracts as operators see them (docs/desk.md). The logic is
rmm_server.desk; these only convert. The guard audits every call that changes anything."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import cached_property

import grpc.aio

from rmm_common.errors import InvalidArgument
from rmm_proto import operator_pb2
from rmm_server.alerts.service import AlertService
from rmm_server.cluster import Cluster
from rmm_server.desk.contracts import Contracts, ContractTerms
from rmm_server.desk.notices import tell_hours_low, tell_tiers
from rmm_server.desk.places import Places
from rmm_server.desk.tickets import Tickets
from rmm_server.fleet import Fleet
from rmm_server.grpc_api.guard import current_operator
from rmm_server.roles import Role
from rmm_server.storage import AgentRecord, Store
from rmm_server.storage.desk import ClientRecord, ContractRecord, SiteRecord, SlaTarget
from rmm_server.storage.tickets import TicketEvent, TicketRecord


def client_to_proto(client: ClientRecord) -> operator_pb2.ClientInfo:
    """Convert a client record to its message."""
    return operator_pb2.ClientInfo(
        id=client.id,
        name=client.name,
        created_at=client.created_at,
        created_by=client.created_by,
        updated_at=client.updated_at,
        sites=client.sites,
        agents=client.agents,
        has_contract=client.has_contract,
    )


def site_to_proto(site: SiteRecord) -> operator_pb2.SiteInfo:
    """Convert a site record to its message."""
    return operator_pb2.SiteInfo(
        id=site.id,
        client=site.client,
        name=site.name,
        time_zone=site.time_zone,
        created_at=site.created_at,
        created_by=site.created_by,
        updated_at=site.updated_at,
        agents=site.agents,
    )


def contract_to_proto(contract: ContractRecord) -> operator_pb2.ContractInfo:
    """Convert a contract record to its message (unset terms stay unset)."""
    return operator_pb2.ContractInfo(
        id=contract.id,
        client=contract.client,
        type=contract.type,
        hours_per_period=contract.hours_per_period,
        period=contract.period,
        warn_below_hours=contract.warn_below_hours,
        rate=contract.rate,
        currency=contract.currency,
        business_hours=contract.business_hours,
        holidays=list(contract.holidays),
        sla=[
            operator_pb2.SlaTarget(
                severity=severity,
                acknowledge_seconds=target.acknowledge_seconds,
                resolve_seconds=target.resolve_seconds,
                clock=target.clock,
            )
            for severity, target in sorted(contract.sla.items())
        ],
        created_at=contract.created_at,
        created_by=contract.created_by,
        updated_at=contract.updated_at,
        updated_by=contract.updated_by,
    )


def terms_from_proto(request: operator_pb2.ContractTermsRequest) -> ContractTerms:
    """Convert a contract request to the terms it asks for; refuse a severity named twice."""
    sla: dict[str, SlaTarget] = {}
    for item in request.sla:
        severity = item.severity.strip().lower()
        if severity in sla:
            raise InvalidArgument(f"SLA for {severity!r} is given twice: give it once")
        sla[severity] = SlaTarget(
            item.acknowledge_seconds, item.resolve_seconds, item.clock.strip().lower() or "24x7"
        )
    return ContractTerms(
        type=request.type.strip().lower(),
        hours_per_period=(
            request.hours_per_period if request.HasField("hours_per_period") else None
        ),
        warn_below_hours=(
            request.warn_below_hours if request.HasField("warn_below_hours") else None
        ),
        rate=request.rate if request.HasField("rate") else None,
        currency=request.currency,
        business_hours=request.business_hours,
        sla=sla,
        # An update keeps the holidays unless dates are given or the list is cleared.
        holidays=()
        if request.clear_holidays
        else (tuple(request.holidays) if request.holidays else None),
    )


def _need(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(f"name the {what}: see `rmm {what}s list`")
    return value


class DeskApi:
    """OperatorService mixin; built from the servicer's store, fleet, cluster and clock."""

    store: Store
    fleet: Fleet
    cluster: Cluster
    clock: Callable[[], float]

    @cached_property
    def places(self) -> Places:
        """Clients and sites, kept in step with the fleet (the servicer's own)."""
        return Places(self.store, self.fleet, self.cluster, getattr(self, "clock", time.time))

    @cached_property
    def contracts(self) -> Contracts:
        """Clients' contracts."""
        return Contracts(self.store, getattr(self, "clock", time.time))

    async def CreateClient(
        self, request: operator_pb2.CreateClientRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ClientInfo:
        by = current_operator.get().name
        return client_to_proto(await asyncio.to_thread(self.places.create_client, request.name, by))

    async def ListClients(
        self, request: operator_pb2.ListClientsRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListClientsResponse:
        found = await asyncio.to_thread(self.places.list_clients)
        return operator_pb2.ListClientsResponse(clients=[client_to_proto(c) for c in found])

    async def GetClient(
        self, request: operator_pb2.GetClientRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ClientInfo:
        name = _need(request.name, "client")
        return client_to_proto(await asyncio.to_thread(self.places.get_client, name))

    async def UpdateClient(
        self, request: operator_pb2.UpdateClientRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ClientInfo:
        name = _need(request.name, "client")
        if not request.new_name.strip():
            raise InvalidArgument(f"client {name!r}: say what to change (--name NEW)")
        by = current_operator.get().name
        return client_to_proto(await self.places.rename_client(name, request.new_name, by))

    async def CreateSite(
        self, request: operator_pb2.CreateSiteRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.SiteInfo:
        client = _need(request.client, "client")
        by = current_operator.get().name
        site = await asyncio.to_thread(
            self.places.create_site, client, request.name, request.time_zone, by
        )
        return site_to_proto(site)

    async def ListSites(
        self, request: operator_pb2.ListSitesRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListSitesResponse:
        found = await asyncio.to_thread(self.places.list_sites, request.client)
        return operator_pb2.ListSitesResponse(sites=[site_to_proto(s) for s in found])

    async def GetSite(
        self, request: operator_pb2.GetSiteRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.SiteInfo:
        client, name = _need(request.client, "client"), _need(request.name, "site")
        return site_to_proto(await asyncio.to_thread(self.places.get_site, client, name))

    async def UpdateSite(
        self, request: operator_pb2.UpdateSiteRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.SiteInfo:
        client, name = _need(request.client, "client"), _need(request.name, "site")
        by = current_operator.get().name
        site = await self.places.update_site(client, name, request.new_name, request.time_zone, by)
        return site_to_proto(site)

    async def CreateContract(
        self, request: operator_pb2.ContractTermsRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ContractInfo:
        client = _need(request.client, "client")
        terms = terms_from_proto(request)
        by = current_operator.get().name
        return contract_to_proto(await asyncio.to_thread(self.contracts.create, client, terms, by))

    async def ListContracts(
        self, request: operator_pb2.ListContractsRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListContractsResponse:
        found = await asyncio.to_thread(self.contracts.list)
        return operator_pb2.ListContractsResponse(contracts=[contract_to_proto(c) for c in found])

    async def GetContract(
        self, request: operator_pb2.GetContractRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ContractInfo:
        client = _need(request.client, "client")
        return contract_to_proto(await asyncio.to_thread(self.contracts.get, client))

    async def UpdateContract(
        self, request: operator_pb2.ContractTermsRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ContractInfo:
        client = _need(request.client, "client")
        terms = terms_from_proto(request)
        by = current_operator.get().name
        return contract_to_proto(await asyncio.to_thread(self.contracts.update, client, terms, by))


def ticket_to_proto(ticket: TicketRecord) -> operator_pb2.TicketInfo:
    """Convert a ticket (with whatever story it was read with) to its message."""
    return operator_pb2.TicketInfo(
        id=ticket.id,
        client=ticket.client,
        site=ticket.site,
        agent_id=ticket.agent_id,
        alert_id=ticket.alert_id,
        title=ticket.title,
        tier=ticket.tier,
        priority=ticket.priority,
        status=ticket.status,
        assignee=ticket.assignee,
        opened_at=ticket.opened_at,
        opened_by=ticket.opened_by,
        updated_at=ticket.updated_at,
        acknowledged_at=ticket.acknowledged_at or 0.0,
        ack_due_at=ticket.ack_due_at or 0.0,
        resolve_due_at=ticket.resolve_due_at or 0.0,
        sla_breaches=ticket.sla_breaches,
        resolved_at=ticket.resolved_at or 0.0,
        resolution=ticket.resolution,
        closed_at=ticket.closed_at or 0.0,
        archived_at=ticket.archived_at or 0.0,
        archived_by=ticket.archived_by,
        verify_code=ticket.verify_code,
        snapshot_json=ticket.snapshot,
        category=ticket.category,
        events=[
            operator_pb2.TicketEventInfo(at=e.at, by=e.by, kind=e.kind, text=e.text)
            for e in ticket.events
        ],
        time=[
            operator_pb2.TicketTimeEntry(
                at=t.at,
                by=t.by,
                minutes=t.minutes,
                note=t.note,
                period=t.period,
                billable_amount=t.billable_amount,
            )
            for t in ticket.time
        ],
    )


def _ticket_id(value: int) -> int:
    if value <= 0:
        raise InvalidArgument("name the ticket by its number: see `rmm tickets list`")
    return value


class TicketApi:
    """OperatorService mixin for tickets; built from the servicer's store, clock and alerts."""

    store: Store
    alerts: AlertService
    # Told every ticket event operators cause (the server sets the PSA webhook here).
    ticket_events: tuple[Callable[[TicketRecord, TicketEvent], None], ...] = ()

    def _find_agent(self, ident: str, require_client: bool = False) -> AgentRecord:
        raise NotImplementedError  # the servicer's own (OperatorServicer._find_agent)

    @cached_property
    def tickets(self) -> Tickets:
        """Tickets on the servicer's store and clock."""
        return Tickets(
            self.store, getattr(self, "clock", time.time), on_event=list(self.ticket_events)
        )

    def _operator(self) -> tuple[str, Role]:
        operator = current_operator.get()
        return operator.name, Role.parse(operator.role)

    async def OpenTicket(
        self, request: operator_pb2.OpenTicketRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.TicketInfo:
        client, site, agent_id = request.client.strip(), request.site.strip(), ""
        if request.agent.strip():
            agent = await asyncio.to_thread(self._find_agent, request.agent.strip())
            if client and client != agent.client:
                raise InvalidArgument(
                    f"agent {agent.id} belongs to client {agent.client!r}, not {client!r}: "
                    "drop --client or name the right one"
                )
            client, site, agent_id = agent.client, site or agent.site, agent.id
        if not client:
            raise InvalidArgument("name the ticket's client (--client) or its agent (--agent)")
        by, _role = self._operator()
        ticket = await asyncio.to_thread(
            self.tickets.open,
            client,
            request.title,
            request.priority,
            by,
            request.tier,
            site,
            agent_id,
            category=request.category,
        )
        return ticket_to_proto(ticket)

    async def ListTickets(
        self, request: operator_pb2.ListTicketsRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListTicketsResponse:
        found = await asyncio.to_thread(
            self.tickets.find,
            request.client,
            request.status,
            request.tier,
            request.archived,
            request.limit or 500,
        )
        return operator_pb2.ListTicketsResponse(tickets=[ticket_to_proto(t) for t in found])

    async def GetTicket(
        self, request: operator_pb2.GetTicketRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.TicketInfo:
        ticket = await asyncio.to_thread(self.tickets.get, _ticket_id(request.id))
        return ticket_to_proto(ticket)

    async def NoteTicket(
        self, request: operator_pb2.NoteTicketRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.TicketInfo:
        by, _role = self._operator()
        ticket = await asyncio.to_thread(
            self.tickets.note, _ticket_id(request.id), request.text, request.status, by
        )
        return ticket_to_proto(ticket)

    async def AssignTicket(
        self, request: operator_pb2.AssignTicketRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.TicketInfo:
        by, _role = self._operator()
        ticket = await asyncio.to_thread(
            self.tickets.assign, _ticket_id(request.id), request.assignee, by
        )
        return ticket_to_proto(ticket)

    async def EscalateTicket(
        self, request: operator_pb2.EscalateTicketRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.TicketInfo:
        by, _role = self._operator()
        ticket = await asyncio.to_thread(
            self.tickets.escalate, _ticket_id(request.id), request.reason, by
        )
        await tell_tiers(self.alerts.submit, [ticket])
        return ticket_to_proto(ticket)

    async def ResolveTicket(
        self, request: operator_pb2.ResolveTicketRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.TicketInfo:
        by, _role = self._operator()
        ticket = await asyncio.to_thread(
            self.tickets.resolve, _ticket_id(request.id), request.resolution, by
        )
        return ticket_to_proto(ticket)

    async def ReopenTicket(
        self, request: operator_pb2.ReopenTicketRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.TicketInfo:
        by, _role = self._operator()
        ticket = await asyncio.to_thread(
            self.tickets.reopen, _ticket_id(request.id), request.reason, by
        )
        return ticket_to_proto(ticket)

    async def CloseTicket(
        self, request: operator_pb2.CloseTicketRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.TicketInfo:
        by, role = self._operator()
        ticket = await asyncio.to_thread(self.tickets.close, _ticket_id(request.id), role, by)
        return ticket_to_proto(ticket)

    async def ArchiveTicket(
        self, request: operator_pb2.ArchiveTicketRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.TicketInfo:
        by, role = self._operator()
        ticket = await asyncio.to_thread(self.tickets.archive, _ticket_id(request.id), role, by)
        return ticket_to_proto(ticket)

    async def LogTicketTime(
        self, request: operator_pb2.LogTicketTimeRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.LogTicketTimeResponse:
        by, _role = self._operator()
        logged = await asyncio.to_thread(
            self.tickets.log_time, _ticket_id(request.id), request.minutes, request.note, by
        )
        await tell_hours_low(self.alerts.submit, logged.ticket, logged.warning)
        return operator_pb2.LogTicketTimeResponse(
            ticket=ticket_to_proto(logged.ticket),
            used_hours=logged.used_hours,
            hours_left=logged.hours_left,
            warning=logged.warning,
            billable_amount=logged.billable_amount,
        )
