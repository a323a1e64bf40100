"""Alerts: their lifecycle, persistence and what operators do with them."""
