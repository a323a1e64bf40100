"""Patching records: each agent's pending updates with their decisions, operators' approve and
decline records, install outcomes, and per-agent patch state (rmm_server/patching/ decides;
this module only stores and aggregates).

The effective state of one update on one agent is computed in SQL from its row (STATE_SQL), so
the fleet-wide view is one GROUP BY, however many agents and updates there are:
- declined: a decline (manual or a rule) holds it;
- approved: approved, or pending with a rule's deferral ended (`not_before` passed);
- failed: approved, and its last install attempt failed or was interrupted;
- pending: nothing approves it yet.
"installed" is not a row state: an installed update leaves the agent's list, and its outcome
stays in patch_results.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)

from rmm_server.storage import schema
from rmm_server.storage.store import Store, record_values

APPROVED = "approved"
DECLINED = "declined"
PENDING = "pending"
FAILED = "failed"
INSTALLED = "installed"
# The states `rmm patches list --state` filters on.
STATES = (PENDING, APPROVED, DECLINED, FAILED, INSTALLED)
# Install outcomes that leave an approved update failed until it installs.
FAILED_STATUSES = ("failed", "interrupted")
# Bound parameters per statement: SQLite allows 32,766; chunks stay well under.
CHUNK = 5000
_UPDATE_KEYS = ("agent_id", "update_id")
_UPDATE_COLUMNS = tuple(c.name for c in schema.patch_updates.c if c.name not in _UPDATE_KEYS)
_CATALOG_COLUMNS = (
    "name",
    "classification",
    "backend",
    "severity",
    "available",
    "reboot_required",
    "seen_at",
)


@dataclass(slots=True)
class UpdateRow:
    """One pending update on one agent, as stored (patch_updates)."""

    agent_id: str
    update_id: str
    name: str
    current: str | None
    available: str
    classification: str
    backend: str
    source: str
    severity: str
    published: float | None
    size_bytes: int | None
    reboot_required: bool
    first_seen: float
    decision: str  # approved, declined, pending
    why: str
    not_before: float | None = None
    last_status: str = ""
    last_message: str = ""
    last_attempt_at: float | None = None
    # The hardware ids a driver or firmware update is for, one a line ("" for none): a policy
    # rule's hardware_ids pin must match the same when decisions are recomputed from here.
    hardware_ids: str = ""

    def state(self, now: float) -> str:
        """Return the effective state (as STATE_SQL computes it)."""
        if self.decision == DECLINED:
            return DECLINED
        approved = self.decision == APPROVED or (
            self.not_before is not None and self.not_before <= now
        )
        if not approved:
            return PENDING
        return FAILED if self.last_status in FAILED_STATUSES else APPROVED

    def same_facts(self, other: UpdateRow) -> bool:
        """Say whether `other` describes the same update (the decision aside)."""
        return all(getattr(self, name) == getattr(other, name) for name in FACT_COLUMNS)


FACT_COLUMNS = (
    "name",
    "current",
    "available",
    "classification",
    "backend",
    "source",
    "severity",
    "published",
    "size_bytes",
    "reboot_required",
    "hardware_ids",
)


@dataclass(slots=True)
class DecisionRow:
    """An operator's approve or decline (patch_decisions)."""

    update_pattern: str  # an update id, or a glob over ids
    scope: str  # everywhere, client, site, agent
    target: str  # "", client, "client/site", agent id
    action: str  # approve, decline
    decided_by: str
    decided_at: float
    comment: str = ""


@dataclass(slots=True)
class ResultRow:
    """The last install outcome of one update on one agent (patch_results)."""

    agent_id: str
    update_id: str
    status: str  # installed, failed, skipped, locked, interrupted
    message: str
    version: str
    command_id: str
    at: float


@dataclass(slots=True)
class PatchAgentRow:
    """One agent's patch state (patch_agents)."""

    agent_id: str
    digest: str = ""
    reported_digest: str = ""
    listed_at: float | None = None
    truncated: bool = False
    reboot_pending: bool = False
    last_install_at: float | None = None
    install_requested_at: float | None = None
    install_requested_by: str = ""


@dataclass(slots=True)
class FleetUpdate:
    """One update across the agents asked about: what it is, and how many agents are in each
    state (the central view)."""

    update_id: str
    name: str
    classification: str
    backend: str
    severity: str
    available: str
    agents: int  # agents listing it as pending
    pending: int
    approved: int
    declined: int
    failed: int
    installed: int  # agents whose last install of it succeeded (it left their list)
    reboot_required: bool

    def count(self, state: str) -> int:
        """Return how many agents are in `state`."""
        return int(getattr(self, state))


@dataclass(slots=True)
class AgentCompliance:
    """One agent's patch compliance (`rmm patches report`)."""

    agent_id: str
    listed: bool  # the server holds the agent's update list
    pending: int
    approved_missing: int  # approved (failed ones too) and not installed
    declined: int
    failed: int
    last_install_at: float | None
    reboot_pending: bool
    # An operator's `rmm patches install` without --now, waiting for the next window.
    install_requested_at: float | None = None

    @property
    def compliant(self) -> bool:
        """An agent is compliant when it lists its updates and misses none approved for it."""
        return self.listed and self.approved_missing == 0


def _state_sql(now: float) -> Any:
    """Return the SQL expression of a patch_updates row's effective state at `now`."""
    table = schema.patch_updates
    approved = or_(
        table.c.decision == APPROVED,
        and_(
            table.c.decision == PENDING,
            table.c.not_before.is_not(None),
            table.c.not_before <= literal(now),
        ),
    )
    return case(
        (table.c.decision == DECLINED, literal(DECLINED)),
        (and_(approved, table.c.last_status.in_(FAILED_STATUSES)), literal(FAILED)),
        (approved, literal(APPROVED)),
        else_=literal(PENDING),
    )


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


class PatchStore:
    """Read and write patching records through the server's Store (same engine and errors)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- each agent's list -----------------------------------------------------------------

    def digests(self) -> dict[str, str]:
        """Return the digest of the list held for each agent that has one."""
        table = schema.patch_agents
        with self.store.transaction("read the patch list digests") as conn:
            return {
                str(row.agent_id): str(row.digest)
                for row in conn.execute(select(table.c.agent_id, table.c.digest))
            }

    def agent_state(self, agent_id: str) -> PatchAgentRow | None:
        """Return one agent's patch state, or None when it never reported a list."""
        table = schema.patch_agents
        with self.store.transaction("read an agent's patch state") as conn:
            row = conn.execute(select(table).where(table.c.agent_id == agent_id)).mappings().first()
        return PatchAgentRow(**row) if row is not None else None

    def agent_states(self) -> dict[str, PatchAgentRow]:
        """Return every agent's patch state."""
        with self.store.transaction("read the agents' patch state") as conn:
            return {
                str(row["agent_id"]): PatchAgentRow(**row)
                for row in conn.execute(select(schema.patch_agents)).mappings()
            }

    def agent_updates(self, agent_id: str) -> list[UpdateRow]:
        """Return the pending updates held for one agent, by name."""
        table = schema.patch_updates
        with self.store.transaction("read an agent's pending updates") as conn:
            rows = conn.execute(
                select(table)
                .where(table.c.agent_id == agent_id)
                .order_by(self.store.text_order(table.c.name), table.c.update_id)
            ).mappings()
            return [UpdateRow(**row) for row in rows]

    def agent_results(self, agent_id: str) -> list[ResultRow]:
        """Return the last install outcome of each update one agent was asked to install."""
        table = schema.patch_results
        with self.store.transaction("read an agent's install outcomes") as conn:
            rows = conn.execute(
                select(table).where(table.c.agent_id == agent_id).order_by(table.c.update_id)
            ).mappings()
            return [ResultRow(**row) for row in rows]

    def write_list(
        self,
        agent_id: str,
        upserts: Sequence[UpdateRow],
        removed: Sequence[str],
        digest: str,
        truncated: bool,
        now: float,
    ) -> None:
        """Make the agent's stored list its new one: `upserts` replace rows (new or changed),
        `removed` leave, and the agent's state holds `digest`; one transaction."""
        table = schema.patch_updates
        with self.store.transaction(f"store the pending updates of agent {agent_id}") as conn:
            for chunk in _chunks(removed):
                conn.execute(
                    delete(table).where(
                        and_(table.c.agent_id == agent_id, table.c.update_id.in_(chunk))
                    )
                )
            if upserts:
                # An upsert, not delete-then-insert: another writer of the same list (a
                # resent report, another replica) may insert a row this one did not see.
                # One statement may not touch a row twice (ids cut to the column's length
                # can meet): the last row of an id stands.
                latest = {row.update_id: row for row in upserts}
                conn.execute(
                    self.store.upsert(table, _UPDATE_KEYS, _UPDATE_COLUMNS),
                    [record_values(row) for row in latest.values()],
                )
                self._put_catalog(conn, upserts, now)
            self._put_agent(
                conn,
                agent_id,
                {
                    "digest": digest,
                    "reported_digest": digest,
                    "listed_at": now,
                    "truncated": truncated,
                },
            )

    def _put_catalog(self, conn: Connection, rows: Sequence[UpdateRow], now: float) -> None:
        """Record what the fleet knows of each update id: its latest report's facts."""
        table = schema.patch_catalog
        latest = {row.update_id: row for row in rows}
        values = [
            {
                "update_id": row.update_id,
                "name": row.name,
                "classification": row.classification,
                "backend": row.backend,
                "severity": row.severity,
                "available": row.available,
                "reboot_required": row.reboot_required,
                "seen_at": now,
            }
            for row in latest.values()
        ]
        conn.execute(self.store.upsert(table, ["update_id"], _CATALOG_COLUMNS), values)

    def note_reported_digest(self, agent_id: str, digest: str) -> None:
        """Record the digest an agent reported without its list (the server lacks that one)."""
        with self.store.transaction(f"note the patch digest of agent {agent_id}") as conn:
            self._put_agent(conn, agent_id, {"reported_digest": digest})

    def set_reboot_pending(self, agent_id: str, pending: bool) -> None:
        """Record whether the agent waits for a reboot."""
        with self.store.transaction(f"note the reboot state of agent {agent_id}") as conn:
            self._put_agent(conn, agent_id, {"reboot_pending": pending})

    def _put_agent(self, conn: Connection, agent_id: str, values: dict[str, Any]) -> None:
        # One upsert: a check-then-insert lets two writers of one agent both insert.
        conn.execute(
            self.store.upsert(schema.patch_agents, ["agent_id"], sorted(values)),
            {**record_values(PatchAgentRow(agent_id)), **values},
        )

    # --- decisions -------------------------------------------------------------------------

    def decision_records(self) -> list[DecisionRow]:
        """Return every operator approve and decline record."""
        with self.store.transaction("read the patch decisions") as conn:
            return [
                DecisionRow(**row)
                for row in conn.execute(select(schema.patch_decisions)).mappings()
            ]

    def put_decision_records(self, records: Sequence[DecisionRow]) -> None:
        """Store approve or decline records, each replacing the one of its update and scope."""
        if not records:
            return
        table = schema.patch_decisions
        keys = ("update_pattern", "scope", "target")
        columns = [c.name for c in table.c if c.name not in keys]
        # The last of one key in `records` stands (one upsert cannot touch a row twice).
        latest = {tuple(getattr(r, key) for key in keys): r for r in records}
        with self.store.transaction(f"store {len(records)} patch decisions") as conn:
            conn.execute(
                self.store.upsert(table, keys, columns),
                [record_values(r) for r in latest.values()],
            )

    def update_ids(self) -> list[str]:
        """Return every update id any agent listed (the catalog keeps ids installed since)."""
        table = schema.patch_catalog
        with self.store.transaction("read the update ids") as conn:
            return [str(v) for v in conn.execute(select(table.c.update_id)).scalars()]

    def rows_of_updates(self, update_ids: Sequence[str]) -> list[UpdateRow]:
        """Return every agent's row of the given updates."""
        table = schema.patch_updates
        rows: list[UpdateRow] = []
        with self.store.transaction("read pending updates") as conn:
            for chunk in _chunks(list(update_ids)):
                result = conn.execute(select(table).where(table.c.update_id.in_(chunk)))
                rows.extend(UpdateRow(**row) for row in result.mappings())
        return rows

    def all_rows(self) -> list[UpdateRow]:
        """Return every agent's rows (a policy reload decides them all again)."""
        with self.store.transaction("read every pending update") as conn:
            return [
                UpdateRow(**row) for row in conn.execute(select(schema.patch_updates)).mappings()
            ]

    def set_decisions(self, changes: Sequence[tuple[str, str, str, str, float | None]]) -> None:
        """Store decisions as (agent_id, update_id, decision, why, not_before), one statement."""
        if not changes:
            return
        table = schema.patch_updates
        statement = (
            update(table)
            .where(
                and_(
                    table.c.agent_id == bindparam("a_id"),
                    table.c.update_id == bindparam("u_id"),
                )
            )
            .values(decision=bindparam("d"), why=bindparam("w"), not_before=bindparam("nb"))
        )
        with self.store.transaction(f"store {len(changes)} patch decisions") as conn:
            conn.execute(
                statement,
                [{"a_id": a, "u_id": u, "d": d, "w": w, "nb": nb} for a, u, d, w, nb in changes],
            )

    # --- install requests and outcomes -----------------------------------------------------

    def request_install(self, agent_ids: Sequence[str], by: str, now: float) -> None:
        """Mark agents to install their approved updates in their next window."""
        with self.store.transaction(f"mark {len(agent_ids)} agents for install") as conn:
            for agent_id in agent_ids:
                self._put_agent(
                    conn, agent_id, {"install_requested_at": now, "install_requested_by": by}
                )

    def clear_install_requests(self, agent_ids: Sequence[str]) -> None:
        """Forget the install marks of agents (their window ran)."""
        table = schema.patch_agents
        with self.store.transaction("clear install requests") as conn:
            for chunk in _chunks(list(agent_ids)):
                conn.execute(
                    update(table)
                    .where(table.c.agent_id.in_(chunk))
                    .values(install_requested_at=None, install_requested_by="")
                )

    def approved_updates(self, agent_ids: Sequence[str], now: float) -> dict[str, list[str]]:
        """Return the ids of each agent's approved updates still to install (failed included:
        a failed install is tried again)."""
        table = schema.patch_updates
        state = _state_sql(now)
        found: dict[str, list[str]] = {}
        with self.store.transaction("read approved updates") as conn:
            for chunk in _chunks(list(agent_ids)):
                rows = conn.execute(
                    select(table.c.agent_id, table.c.update_id)
                    .where(and_(table.c.agent_id.in_(chunk), state.in_((APPROVED, FAILED))))
                    .order_by(table.c.agent_id, table.c.update_id)
                )
                for agent_id, update_id in rows:
                    found.setdefault(str(agent_id), []).append(str(update_id))
        return found

    def record_results(
        self, results: Sequence[ResultRow], reboot_required: dict[str, bool]
    ) -> None:
        """Store install outcomes: installed updates leave the agent's list (the agent's rescan
        found them current), the others keep their row with the outcome; agents with an
        installed update get their last install time, and their reboot state."""
        updates_table = schema.patch_updates
        results_table = schema.patch_results
        with self.store.transaction(f"store {len(results)} install outcomes") as conn:
            for row in results:
                conn.execute(
                    delete(results_table).where(
                        and_(
                            results_table.c.agent_id == row.agent_id,
                            results_table.c.update_id == row.update_id,
                        )
                    )
                )
                where = and_(
                    updates_table.c.agent_id == row.agent_id,
                    updates_table.c.update_id == row.update_id,
                )
                if row.status == INSTALLED:
                    conn.execute(delete(updates_table).where(where))
                else:
                    conn.execute(
                        update(updates_table)
                        .where(where)
                        .values(
                            last_status=row.status,
                            last_message=row.message,
                            last_attempt_at=row.at,
                        )
                    )
            if results:
                conn.execute(results_table.insert(), [record_values(r) for r in results])
            installed_at: dict[str, float] = {}
            for row in results:
                if row.status == INSTALLED:
                    installed_at[row.agent_id] = max(row.at, installed_at.get(row.agent_id, 0.0))
            for agent_id in {row.agent_id for row in results} | set(reboot_required):
                values: dict[str, Any] = {}
                if agent_id in installed_at:
                    values["last_install_at"] = installed_at[agent_id]
                if reboot_required.get(agent_id):
                    values["reboot_pending"] = True
                if values:
                    self._put_agent(conn, agent_id, values)

    # --- views -----------------------------------------------------------------------------

    def fleet_view(self, agent_ids: Sequence[str] | None, now: float) -> list[FleetUpdate]:
        """Return one entry per update the agents list (None: every agent), with how many agents
        are in each state; an update no agent lists any more appears when one installed it.

        The counts come from ix_patch_updates_state alone (update_id and the state columns: an
        index-only scan on SQLite), the names and versions from the catalog, one row per id.
        """
        table = schema.patch_updates
        # Three sums, not one per state: the others follow (see STATE_SQL's order).
        approving = or_(
            table.c.decision == APPROVED,
            and_(table.c.decision == PENDING, table.c.not_before <= literal(now)),
        )
        columns = (
            table.c.update_id,
            func.count(),
            func.sum(case((table.c.decision == DECLINED, 1), else_=0)),
            func.sum(case((approving, 1), else_=0)),
            func.sum(case((and_(approving, table.c.last_status.in_(FAILED_STATUSES)), 1), else_=0)),
        )
        # update id -> agents, pending, approved, declined, failed, installed
        counts: dict[str, list[int]] = {}
        results = schema.patch_results
        with self.store.transaction("summarise pending updates") as conn:
            for where in self._agent_filters(table.c.agent_id, agent_ids):
                query = select(*columns).group_by(table.c.update_id)
                if where is not None:
                    query = query.where(where)
                for update_id, *numbers in conn.execute(query):
                    found = counts.setdefault(str(update_id), [0] * 6)
                    total, declined, approvals, failed = (int(n) for n in numbers)
                    found[0] += total
                    found[1] += total - declined - approvals
                    found[2] += approvals - failed
                    found[3] += declined
                    found[4] += failed
            for where in self._agent_filters(results.c.agent_id, agent_ids):
                query = (
                    select(results.c.update_id, func.count())
                    .where(results.c.status == INSTALLED)
                    .group_by(results.c.update_id)
                )
                if where is not None:
                    query = query.where(where)
                for update_id, installed in conn.execute(query):
                    counts.setdefault(str(update_id), [0] * 6)[5] += int(installed)
            catalog = self._catalog(conn, list(counts))
        view = []
        for update_id, (agents, pending, approved, declined, failed, installed) in counts.items():
            facts = catalog.get(update_id)
            backend, _, key = update_id.partition(":")
            view.append(
                FleetUpdate(
                    update_id=update_id,
                    name=str(facts["name"]) if facts else key or update_id,
                    classification=str(facts["classification"]) if facts else "",
                    backend=str(facts["backend"]) if facts else backend,
                    severity=str(facts["severity"]) if facts else "",
                    available=str(facts["available"]) if facts else "",
                    agents=agents,
                    pending=pending,
                    approved=approved,
                    declined=declined,
                    failed=failed,
                    installed=installed,
                    reboot_required=bool(facts["reboot_required"]) if facts else False,
                )
            )
        return sorted(view, key=lambda u: (u.name, u.update_id))

    def _catalog(self, conn: Connection, update_ids: Sequence[str]) -> dict[str, Any]:
        table = schema.patch_catalog
        found: dict[str, Any] = {}
        for chunk in _chunks(list(update_ids)):
            for row in conn.execute(select(table).where(table.c.update_id.in_(chunk))).mappings():
                found[str(row["update_id"])] = row
        return found

    def count_listed(self, agent_ids: Sequence[str] | None) -> int:
        """Return how many of the agents (None: all) have their update list held."""
        table = schema.patch_agents
        total = 0
        with self.store.transaction("count the agents with an update list") as conn:
            for where in self._agent_filters(table.c.agent_id, agent_ids):
                query = select(func.count()).select_from(table).where(table.c.digest != "")
                if where is not None:
                    query = query.where(where)
                total += int(conn.execute(query).scalar_one())
        return total

    def apply_manual(
        self,
        update_id: str,
        agent_ids: Sequence[str] | None,
        excluded: Sequence[str],
        decision: str,
        why: str,
    ) -> int:
        """Give the rows of one update an operator's decision: those of `agent_ids` (None:
        every agent) but `excluded` (held by a record that outranks it). Return the rows that
        changed. A manual record overrides every rule, so no rule is consulted."""
        table = schema.patch_updates
        changed = 0
        differs = or_(
            table.c.decision != decision, table.c.why != why, table.c.not_before.is_not(None)
        )
        with self.store.transaction(f"record a decision on {update_id}") as conn:
            scopes: list[Any] = (
                [None]
                if agent_ids is None
                else [table.c.agent_id.in_(c) for c in _chunks(list(agent_ids))]
            )
            for where in scopes:
                statement = (
                    update(table)
                    .where(and_(table.c.update_id == update_id, differs))
                    .values(decision=decision, why=why, not_before=None)
                )
                if where is not None:
                    statement = statement.where(where)
                for chunk in _chunks(list(excluded)):
                    statement = statement.where(table.c.agent_id.not_in(chunk))
                changed += conn.execute(statement).rowcount
        return changed

    @staticmethod
    def _agent_filters(column: Any, agent_ids: Sequence[str] | None) -> list[Any]:
        if agent_ids is None:
            return [None]
        ids = list(agent_ids)
        return [column.in_(chunk) for chunk in _chunks(ids)] or [column.in_([])]

    def compliance(self, agent_ids: Sequence[str] | None, now: float) -> list[AgentCompliance]:
        """Return each agent's compliance (None: every agent with a patch state)."""
        table = schema.patch_updates
        state = _state_sql(now)

        def count(*names: str) -> Any:
            return func.sum(case((state.in_(names), 1), else_=0))

        per_agent: dict[str, tuple[int, int, int, int]] = {}
        with self.store.transaction("summarise patch compliance") as conn:
            for where in self._agent_filters(table.c.agent_id, agent_ids):
                query = select(
                    table.c.agent_id,
                    count(PENDING),
                    count(APPROVED, FAILED),
                    count(DECLINED),
                    count(FAILED),
                ).group_by(table.c.agent_id)
                if where is not None:
                    query = query.where(where)
                for agent_id, pending, missing, declined, failed in conn.execute(query):
                    per_agent[str(agent_id)] = (
                        int(pending),
                        int(missing),
                        int(declined),
                        int(failed),
                    )
            agents = schema.patch_agents
            states: dict[str, Any] = {}
            for where in self._agent_filters(agents.c.agent_id, agent_ids):
                query = select(agents)
                if where is not None:
                    query = query.where(where)
                for row in conn.execute(query).mappings():
                    states[str(row["agent_id"])] = row
        wanted = list(agent_ids) if agent_ids is not None else sorted(states)
        report: list[AgentCompliance] = []
        for agent_id in wanted:
            agent_state = states.get(agent_id)
            pending, missing, declined, failed = per_agent.get(agent_id, (0, 0, 0, 0))
            report.append(
                AgentCompliance(
                    agent_id=agent_id,
                    listed=agent_state is not None and bool(agent_state["digest"]),
                    pending=pending,
                    approved_missing=missing,
                    declined=declined,
                    failed=failed,
                    last_install_at=agent_state["last_install_at"] if agent_state else None,
                    reboot_pending=bool(agent_state["reboot_pending"]) if agent_state else False,
                    install_requested_at=(
                        agent_state["install_requested_at"] if agent_state else None
                    ),
                )
            )
        return report
