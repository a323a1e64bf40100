"""The operators' web dashboard, served by the server's HTTP listener (docs/dashboard.md)."""

from __future__ import annotations

from rmm_server.web.routes import Dashboard, DashboardDeps
from rmm_server.web.sessions import Session, Sessions

__all__ = ["Dashboard", "DashboardDeps", "Session", "Sessions"]
