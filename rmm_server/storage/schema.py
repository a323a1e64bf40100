"""Tables. The server keeps each agent's latest state and raw reports as compressed blobs;
long-term history is Prometheus' job.

A change here needs a migration revision (rmm_server/storage/migrations/versions/): write it with
`.venv/bin/python -m rmm_server.storage.migrations revision "what changed"`; tests/rmm_server/
test_migrations.py fails, naming the column or table, while schema.py and the revisions differ."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    Unicode,
)

metadata = MetaData()

enrollment_tokens = Table(
    "enrollment_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("secret_hash", String(64), nullable=False),
    Column("client", String(200), nullable=False),
    Column("site", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", Float),
    Column("max_uses", Integer),
    Column("uses", Integer, nullable=False, default=0),
    Column("revoked_at", Float),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("credential_hash", String(64), nullable=False),
    Column("client", String(200), nullable=False),
    Column("site", String(200), nullable=False),
    Column("hostname", String(255), nullable=False, default=""),
    Column("os", String(32), nullable=False, default=""),
    Column("os_name", String(200), nullable=False, default=""),
    Column("os_version", String(100), nullable=False, default=""),
    Column("kernel", String(200), nullable=False, default=""),
    Column("arch", String(32), nullable=False, default=""),
    Column("agent_version", String(64), nullable=False, default=""),
    Column("enrollment_token_id", String(32)),
    Column("enrolled_at", Float, nullable=False),
    Column("last_seen", Float),
    Column("interval_seconds", Integer, nullable=False, default=30),
    Column("first_sequence", BigInteger),
    Column("last_sequence", BigInteger, nullable=False, default=0),
    Column("summary", Text, nullable=False, default="{}"),  # JSON key metrics of latest report
    Column("inventory_hash", String(64), nullable=False, default=""),
    Column("inventory", LargeBinary),  # zlib-compressed JSON
    Column("inventory_updated_at", Float),
    Column("revoked_at", Float),
    # Credential rotation: an operator's request (cleared once the agent uses its new
    # credential), and the new credential's hash, valid beside the old one until first used.
    Column("rotate_requested_at", Float),
    Column("pending_credential_hash", String(64)),
    # `host=NAME` lookups (storage/agent_lookup.py): the hostname's look-alike key, and the
    # hostname it was made from; rows whose hostname changed since are keyed at the next lookup.
    Column("hostname_key", String(255), nullable=False, server_default=""),
    Column("hostname_keyed", String(255), nullable=False, server_default=""),
)
Index("ix_agents_client_site", agents.c.client, agents.c.site)
Index("ix_agents_hostname_key", agents.c.hostname_key)
# Only the rows to key: empty while no agent was enrolled or renamed since the last lookup.
Index(
    "ix_agents_hostname_unkeyed",
    agents.c.id,
    sqlite_where=agents.c.hostname_keyed != agents.c.hostname,
    postgresql_where=agents.c.hostname_keyed != agents.c.hostname,
)

agent_tags = Table(
    "agent_tags",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("tag", String(200), primary_key=True),
)
Index("ix_agent_tags_tag", agent_tags.c.tag)
Index("ix_agents_hostname", agents.c.hostname)
# The order of `rmm agents list` (storage/agent_list.py): a page is a range of this index.
Index("ix_agents_list_order", agents.c.client, agents.c.site, agents.c.hostname, agents.c.id)

reports = Table(
    "reports",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("sequence", BigInteger, primary_key=True),
    Column("collected_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("body", LargeBinary, nullable=False),  # zlib-compressed rmm.v1.Report
)
Index("ix_reports_received_at", reports.c.received_at)

operators = Table(
    "operators",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    # Added after the first release (revision 0002).
    Column("created_by", String(200), nullable=False, server_default=""),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("rule_key", String(400), nullable=False),
    Column("rule_name", String(200), nullable=False),
    Column("agent_id", String(64), nullable=False),
    Column("client", String(200), nullable=False),
    Column("site", String(200), nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("series_labels", Text, nullable=False),  # JSON object
    Column("labels", Text, nullable=False, default="{}"),  # JSON object: the rule's labels
    Column("state", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("tier", String(8), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_active_at", Float, nullable=False),
    Column("fired_at", Float),
    Column("resolved_at", Float),
    Column("value", Float),
    Column("annotations", Text, nullable=False),  # JSON object
    Column("acknowledged_by", String(200)),
    Column("acknowledged_at", Float),
    Column("ack_comment", Text),
    Column("history", Text, nullable=False),  # JSON list of {at, event, by, detail}
    Column("updated_at", Float, nullable=False),
)
Index("ix_alerts_state", alerts.c.state)
Index("ix_alerts_fingerprint", alerts.c.fingerprint)
Index("ix_alerts_agent", alerts.c.agent_id)
# Reports (migration 0019): a client's month of alerts, and every client's over a period.
Index("ix_alerts_client_fired", alerts.c.client, alerts.c.fired_at)
Index("ix_alerts_fired", alerts.c.fired_at)

silences = Table(
    "silences",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("matchers", Text, nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_silences_ends_at", silences.c.ends_at)

maintenance_windows = Table(
    "maintenance_windows",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("schedule", String(200), nullable=False),
    Column("start_at", Float),
    Column("duration_seconds", Float, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("scope", Text, nullable=False),  # JSON {clients, sites, agents, tags}
    Column("created_by", String(200), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("ended_at", Float),
)

notification_failures = Table(
    "notification_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("receiver", String(200), nullable=False),
    Column("notifier", String(64), nullable=False),
    Column("error", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("group_key", Text, nullable=False),
    Column("alert_ids", Text, nullable=False),  # JSON list
)
Index("ix_notification_failures_at", notification_failures.c.at)

commands = Table(
    "commands",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("run_id", String(32), nullable=False, default=""),
    Column("agent_id", String(64), nullable=False),
    Column("hostname", String(255), nullable=False, default=""),
    Column("operator", String(200), nullable=False),
    Column("action", String(32), nullable=False),
    Column("summary", Text, nullable=False),
    Column("status", Integer, nullable=False),  # rmm.v1.CommandStatus
    Column("issued_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("finished_at", Float),
    Column("signed", LargeBinary, nullable=False),  # rmm.v1.SignedCommand
    Column("result", LargeBinary),  # rmm.v1.CommandResult
    Column("error", Text, nullable=False, default=""),
    # What listings show of a result they leave out (a pulled file's), revision 0020.
    Column("result_note", Text, nullable=False, server_default=""),
)
Index("ix_commands_agent_status", commands.c.agent_id, commands.c.status)
Index("ix_commands_run", commands.c.run_id)
Index("ix_commands_issued_at", commands.c.issued_at)

# The audit log (rmm_server/audit.py, docs/audit.md). seq is assigned by the writer, never by the
# database, so that it runs 1, 2, 3... with no gaps; INTEGER on SQLite makes it the rowid.
audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "seq",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("at", Float, nullable=False),
    Column("operator", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", String(400), nullable=False),
    Column("details_json", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_log_at", audit_log.c.at)
Index("ix_audit_log_operator", audit_log.c.operator)
Index("ix_audit_log_target", audit_log.c.target)

# One row (id 1): where the kept chain starts (the last archived entry's seq and hash) and where
# it ends (the head). Appends lock it, which serializes them across server replicas.
audit_anchor = Table(
    "audit_anchor",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("archived_through", BigInteger, nullable=False),
    Column("anchor_hash", String(64), nullable=False),
    Column("archived_at", Float),
    Column("head_seq", BigInteger, nullable=False),
    Column("head_hash", String(64), nullable=False),
    # The newest signed checkpoint written to a checkpoint file (its head seq, time, the line's
    # SHA-256 and its replica): a checkpoint file replaced by an older copy of itself lacks it.
    Column("checkpoint_seq", BigInteger),
    Column("checkpoint_at", Float),
    Column("checkpoint_digest", String(64)),
    Column("checkpoint_replica", String(200)),
)


# Patch windows (rmm_server/patching/windows.py): APScheduler's SQLAlchemyJobStore keeps one job
# per window here, with exactly its own columns (it creates the table only where it is missing).
patch_jobs = Table(
    "patch_jobs",
    metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)

# One row per opened occurrence of a patch window (rmm_server/patching/rollout.py): its rings'
# progress and each agent's step, as JSON; its commands carry the run's id as their run_id.
patch_runs = Table(
    "patch_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("window", String(255), nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False),
    Column("state", String(16), nullable=False),  # open, closed
    Column("progress_json", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)
Index("ix_patch_runs_window_start", patch_runs.c.window, patch_runs.c.starts_at, unique=True)
Index("ix_patch_runs_state", patch_runs.c.state)

# Patching (rmm_server/patching/, docs/patching.md). Each agent's pending updates as its patches
# collector last listed them, with the decision for each (approved, declined or pending: P1's
# approval rules and the manual records below, recomputed when either changes) and the outcome
# of the last install attempt while it is still pending.
patch_updates = Table(
    "patch_updates",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("update_id", String(400), primary_key=True),
    Column("name", String(400), nullable=False),
    Column("current", String(200)),
    Column("available", String(200), nullable=False),
    Column("classification", String(32), nullable=False),
    Column("backend", String(64), nullable=False),
    Column("source", String(400), nullable=False, default=""),
    Column("severity", String(64), nullable=False, default=""),
    Column("published", Float),
    Column("size_bytes", BigInteger),
    Column("reboot_required", Boolean, nullable=False, default=False),
    Column("first_seen", Float, nullable=False),
    Column("decision", String(16), nullable=False),  # approved, declined, pending
    Column("why", Text, nullable=False, default=""),
    # A rule approves it once its deferral ends, at this time (the decision stays pending).
    Column("not_before", Float),
    Column("last_status", String(16), nullable=False, default=""),  # failed, locked, ...
    Column("last_message", Text, nullable=False, default=""),
    Column("last_attempt_at", Float),
    # A driver's or firmware's hardware ids, one a line: policy pins match on them (0013).
    Column("hardware_ids", Text, nullable=False, default="", server_default=""),
)
# The fleet view counts states per update from this index alone (an index-only scan on
# SQLite: 500,000 rows in a fraction of a second, where reading the table took seconds).
Index(
    "ix_patch_updates_state",
    patch_updates.c.update_id,
    patch_updates.c.decision,
    patch_updates.c.last_status,
    patch_updates.c.not_before,
)

# What the fleet knows of each update id (name, classification, newest facts reported), so the
# fleet view reads one row per update instead of every agent's.
patch_catalog = Table(
    "patch_catalog",
    metadata,
    Column("update_id", String(400), primary_key=True),
    Column("name", String(400), nullable=False),
    Column("classification", String(32), nullable=False),
    Column("backend", String(64), nullable=False),
    Column("severity", String(64), nullable=False, default=""),
    Column("available", String(200), nullable=False),
    Column("reboot_required", Boolean, nullable=False, default=False),
    Column("seen_at", Float, nullable=False),
)

# Per agent: which list the server holds (its digest), the digest last reported (different when
# a report carrying the list was lost: the agent sends it again within 6 h), whether a reboot
# waits, the last successful install, and an operator's request to install in the next window.
patch_agents = Table(
    "patch_agents",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("digest", String(64), nullable=False, default=""),
    Column("reported_digest", String(64), nullable=False, default=""),
    Column("listed_at", Float),
    Column("truncated", Boolean, nullable=False, default=False),
    Column("reboot_pending", Boolean, nullable=False, default=False),
    Column("last_install_at", Float),
    Column("install_requested_at", Float),
    Column("install_requested_by", String(200), nullable=False, default=""),
)

# Operators' approve and decline records (rmm_server.patching.model.ManualDecision).
patch_decisions = Table(
    "patch_decisions",
    metadata,
    Column("update_pattern", String(400), primary_key=True),  # an id or a glob over ids
    Column("scope", String(16), primary_key=True),  # everywhere, client, site, agent
    Column("target", String(400), primary_key=True),  # "", client, client/site, agent id
    Column("action", String(16), nullable=False),  # approve, decline
    Column("decided_by", String(200), nullable=False),
    Column("decided_at", Float, nullable=False),
    Column("comment", Text, nullable=False, default=""),
)

# The last install outcome of each update an agent was asked to install (from its
# InstallUpdatesResult): what `rmm patches list --state installed` and the reports show.
patch_results = Table(
    "patch_results",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("update_id", String(400), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("version", String(200), nullable=False, default=""),
    Column("command_id", String(32), nullable=False, default=""),
    Column("at", Float, nullable=False),
)
Index("ix_patch_results_update", patch_results.c.update_id)

# The dashboard's charts (rmm_server/web/history.py): one row per agent per 5-minute bucket, the
# bucket's mean CPU and memory use, fullest disk and network rates, kept 24 h. Bounded: 288 rows
# an agent, pruned by bucket.
agent_history = Table(
    "agent_history",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("bucket", Integer, primary_key=True),  # unix seconds at the bucket's start
    Column("cpu_ratio", Float),
    Column("memory_ratio", Float),
    Column("disk_ratio", Float),
    Column("receive_bytes_per_second", Float),
    Column("transmit_bytes_per_second", Float),
    Index("ix_agent_history_bucket", "bucket"),
)

# The desk (issue #15, docs/desk.md). Clients and sites as records: agents, enrollment tokens and
# alerts still carry the client's and site's names (every scope, label and list order reads
# them), and the desk keeps those names and these records in step (a rename changes both in one
# transaction). Names are unique: a client's among clients, a site's within its client.
clients = Table(
    "clients",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_clients_name", "name", unique=True),
)

sites = Table(
    "sites",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("client_id", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("time_zone", String(64), nullable=False),  # IANA name, e.g. Europe/Berlin
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_sites_client_name", "client_id", "name", unique=True),
)

# One contract per client: its type, what it buys (hours a period, or a rate) and its SLA
# targets per severity as JSON ({"critical": {"acknowledge_seconds": .., "resolve_seconds": ..,
# "clock": "24x7" | "business"}, ...}).
contracts = Table(
    "contracts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("client_id", String(32), nullable=False),
    Column("type", String(24), nullable=False),  # managed, block-hours, time-and-materials
    Column("hours_per_period", Float),  # block-hours only
    Column("period", String(16), nullable=False),  # month
    Column("warn_below_hours", Float),  # block-hours only: warn the client under this
    Column("rate", Float),  # time-and-materials only, per hour
    Column("currency", String(8), nullable=False),
    # e.g. "mon-fri 08:00-18:00; sat 09:00-12:00" (desk/contracts.py parses it)
    Column("business_hours", String(400), nullable=False),
    Column("holidays", Text, nullable=False, server_default="[]"),  # JSON: ["2026-12-25", ...]
    Column("sla", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Index("ix_contracts_client", "client_id", unique=True),
)

# Tickets (work orders). Nothing here is ever deleted: a ticket is closed or archived, its
# events and time entries only appended.
tickets = Table(
    "tickets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(32), nullable=False),
    Column("site", String(200), nullable=False),  # "" when it concerns no one site
    Column("agent_id", String(64), nullable=False),  # ""
    Column("alert_id", String(32), nullable=False),  # ""
    Column("title", Text, nullable=False),
    Column("tier", String(8), nullable=False),  # L1, L2, L3
    Column("priority", String(16), nullable=False),  # critical, warning, info
    Column("status", String(16), nullable=False),  # new, in-progress, waiting, resolved, closed
    Column("assignee", String(200), nullable=False),
    Column("opened_at", Float, nullable=False),
    Column("opened_by", String(200), nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("acknowledged_at", Float),
    Column("ack_due_at", Float),  # from the contract's SLA; None: no target
    Column("resolve_due_at", Float),
    Column("sla_breaches", String(32), nullable=False),  # "acknowledge,resolve": escalated for
    Column("resolved_at", Float),
    Column("resolution", Text, nullable=False),
    Column("closed_at", Float),
    Column("archived_at", Float),
    Column("archived_by", String(200), nullable=False),
    Index("ix_tickets_client_status", "client_id", "status"),
    Index("ix_tickets_status", "status"),
    # Revision 0012: the alert episode's fingerprint (rule, agent, series), so that the same
    # problem firing again reopens its ticket instead of opening another.
    Column("alert_fingerprint", String(64), nullable=False, server_default=""),
    Index("ix_tickets_alert_fingerprint", "alert_fingerprint"),
    # Revision 0015: the code a user checks a caller with (rmm-agent verify), the diagnostic
    # snapshot (JSON) a user's own help request carries, and a host's tickets found by agent.
    Column("verify_code", String(16), nullable=False, server_default=""),
    Column("snapshot", Text, nullable=False, server_default=""),
    Index("ix_tickets_agent", "agent_id"),
    # Revision 0019: what the problem is about (rmm tickets open --category), for trends.
    Column("category", String(100), nullable=False, server_default=""),
)

ticket_events = Table(
    "ticket_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("by", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # opened, note, status, assign, escalate, time
    Column("text", Text, nullable=False),
    Index("ix_ticket_events_ticket", "ticket_id"),
)

ticket_time = Table(
    "ticket_time",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", Integer, nullable=False),
    Column("client_id", String(32), nullable=False),
    Column("period", String(7), nullable=False),  # YYYY-MM (UTC) it counts against
    Column("at", Float, nullable=False),
    Column("by", String(200), nullable=False),
    Column("minutes", Float, nullable=False),
    Column("note", Text, nullable=False),
    Column("billable_amount", Float),  # time and materials only
    Index("ix_ticket_time_client_period", "client_id", "period"),
    Index("ix_ticket_time_ticket", "ticket_id"),
)

# Contract reports (issue #15, rmm_server/desk/reports.py): each period an agent was offline,
# recorded by the leader's offline check (rmm_server/desk/availability.py) when the agent
# missed its report intervals, from its last report until the first report after it
# (ended_at None while it lasts). Other sources keep no month: agent_history 24 h, reports
# their retention, and offline alerts only where a policy has such a rule.
agent_offline = Table(
    "agent_offline",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", String(64), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Index("ix_agent_offline_agent_start", "agent_id", "started_at"),
    Index("ix_agent_offline_ended", "ended_at"),  # the open ones: ended_at IS NULL
)

# Dashboard sessions (rmm_server/web/sessions.py), shared by replicas and kept across restarts.
# Only a hash of each session's id is stored, never the cookie's value: whoever reads this table
# cannot act as the operator. The CSRF token is derived from the id, so it is stored nowhere.
dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # web/sessions.py id_hash(cookie value)
    Column("operator_id", String(32), nullable=False),
    Column("operator", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_used", Float, nullable=False),  # written at most once a minute a session
    Index("ix_dashboard_sessions_operator", "operator_id"),
    Index("ix_dashboard_sessions_last_used", "last_used"),
)
