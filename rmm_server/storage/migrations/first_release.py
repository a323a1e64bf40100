"""The schema of the first release (commit f9bc941), frozen: revision 0001 creates exactly this,
and the migration tests build a previous-release database from it.

Never edit these tables: a change to the schema is a new revision in versions/.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
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
)
Index("ix_agents_client_site", agents.c.client, agents.c.site)

agent_tags = Table(
    "agent_tags",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("tag", String(200), primary_key=True),
)
Index("ix_agent_tags_tag", agent_tags.c.tag)
Index("ix_agents_hostname", agents.c.hostname)

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
