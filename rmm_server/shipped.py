"""What ships beside the code (a source checkout or an editable install): the default policies
and script library. Apart from app.py so that light commands need not import the server."""

from __future__ import annotations

from pathlib import Path

SHIPPED_POLICIES = Path(__file__).resolve().parent.parent / "policies"
SHIPPED_SCRIPT_LIBRARY = Path(__file__).resolve().parent.parent / "script-library"
