"""The server's own health, exported beside the fleet's series."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServerMetrics:
    """Counters and histograms of one server process, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reports_received = Counter(
            "rmm_server_reports_received",
            "Reports received from agents (duplicates included).",
            registry=self.registry,
        )
        self.reports_duplicate = Counter(
            "rmm_server_reports_duplicate",
            "Reports received again after they were stored (acknowledged, not stored twice).",
            registry=self.registry,
        )
        self.reports_conflicting = Counter(
            "rmm_server_reports_conflicting",
            "Reports refused because the server holds another report under their agent and "
            "sequence (a reused sequence number: agent state restored, lost or cloned). The log "
            "names the agent and sequence; `rmm agents show` counts them per agent.",
            registry=self.registry,
        )
        self.reports_rejected = Counter(
            "rmm_server_reports_rejected",
            "Reports refused as invalid, by reason.",
            ["reason"],
            registry=self.registry,
        )
        # Bounded labels: which budget refused (agent_bytes, free_space); the log line names
        # the agent, once per budget window.
        self.reports_refused = Counter(
            "rmm_server_reports_refused",
            "Reports not stored because a storage budget was reached, by budget: agent_bytes "
            "(the agent's bytes per window, --agent-byte-budget) or free_space (the disk reserve, "
            "--min-free-space). Refused reports stay in their agents' spools.",
            ["budget"],
            registry=self.registry,
        )
        # The same budgets, for the results agents send back for their commands (script
        # output, pulled files, listings): a refused one is stored as a failed command.
        self.command_results_refused = Counter(
            "rmm_server_command_results_refused",
            "Command results not stored because a storage budget was reached, by budget: "
            "agent_bytes (--agent-byte-budget, shared with the agent's reports) or free_space "
            "(--min-free-space). The command is stored as failed with the reason.",
            ["budget"],
            registry=self.registry,
        )
        for budget in ("agent_bytes", "free_space"):  # present at 0, so rate() has a start
            self.reports_refused.labels(budget=budget)
            self.command_results_refused.labels(budget=budget)
        self.exporter_series_dropped = Counter(
            "rmm_exporter_series_dropped",
            "Reported series left out of /metrics because their agent went over the exporter's "
            "per-agent budget of series or bytes (counted per report rendered).",
            registry=self.registry,
        )
        # Issue #11: what one agent may cost the event loop, and what one agent may hold open.
        self.reports_slowed = Counter(
            "rmm_server_reports_slowed",
            "Reports whose reading was delayed because their agent had spent its share of the "
            "event loop's CPU (checking reports, comparing inventories): the agent's stream waits, "
            "nothing is dropped. The log names the agent once a minute.",
            registry=self.registry,
        )
        self.reports_slowed_seconds = Counter(
            "rmm_server_reports_slowed_seconds",
            "Seconds agents' report streams waited for their CPU budget.",
            registry=self.registry,
        )
        self.report_streams_replaced = Counter(
            "rmm_server_report_streams_replaced",
            "Report streams ended because the same agent opened another one (one report stream "
            "per agent: the newer one is kept).",
            registry=self.registry,
        )
        self.report_shapes = Counter(
            "rmm_server_report_shapes",
            "Reports checked, by whether their series set was the agent's last one (hit: values "
            "checked only) or not (miss: checked in full).",
            ["result"],
            registry=self.registry,
        )
        self.report_processing = Histogram(
            "rmm_server_report_processing_seconds",
            "Time from receiving a report to acknowledging it (validation, storage, export).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.storage_batch = Histogram(
            "rmm_server_storage_batch_seconds",
            "Time to write one batch of reports to the database.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.storage_errors = Counter(
            "rmm_server_storage_errors",
            "Batches of reports the database refused or could not take.",
            registry=self.registry,
        )
        self.connected_agents = Gauge(
            "rmm_server_connected_agents",
            "Agents with an open report stream to this server process.",
            registry=self.registry,
        )
        self.command_streams = Gauge(
            "rmm_server_command_streams",
            "Agents with an open command stream to this server process.",
            registry=self.registry,
        )
        self.commands_issued = Counter(
            "rmm_server_commands_issued",
            "Remote commands signed and queued, by action.",
            ["action"],
            registry=self.registry,
        )
        self.enrollments = Counter(
            "rmm_server_enrollments",
            "Enrollment attempts by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "rmm_server_auth_failures",
            "Calls refused for a missing or wrong credential, by caller kind.",
            ["caller"],
            registry=self.registry,
        )
