"""Storage behind one interface: SQLite as the embedded default, PostgreSQL for scale."""

from rmm_server.storage.store import (
    AgentRecord,
    EnrollmentTokenRecord,
    OperatorRecord,
    Store,
    StoredReport,
    open_store,
)

__all__ = [
    "AgentRecord",
    "EnrollmentTokenRecord",
    "OperatorRecord",
    "Store",
    "StoredReport",
    "open_store",
]
