"""List pending Windows updates through the Windows Update Agent's COM API."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rmm_agent.collectors._patches import OTHER, PendingUpdate, sort_updates

SEARCH_CRITERIA = "IsInstalled=0 and IsHidden=0"
SOURCE = "windows-update"

# Update classifications by their CategoryID, which unlike the Name is not translated.
CLASSIFICATION_IDS = {
    "e6cf1350-c01b-414d-a61f-263d14d133b4": "critical",
    "0fa1201d-4330-4fa8-8ae9-b877473b6441": "security",
    "e0789628-ce08-4437-be74-2495b842f43b": "definition",
    "28bc880e-0592-4cbf-8f95-c79b17911d5f": "update_rollup",
    "b54e7d24-7add-428f-8b75-90a396fa584f": "feature_pack",
    "ebfc1fc5-71a4-4f7b-9aca-3b9a503104a0": "driver",
}
# English names, for a category whose ID is missing (WSUS-approved third-party catalogs).
CLASSIFICATION_NAMES = {
    "Critical Updates": "critical",
    "Security Updates": "security",
    "Definition Updates": "definition",
    "Update Rollups": "update_rollup",
    "Feature Packs": "feature_pack",
    "Drivers": "driver",
}
# An update in several classifications is counted once, under the most urgent.
WINDOWS_CLASSIFICATIONS = (
    "security",
    "critical",
    "definition",
    "update_rollup",
    "feature_pack",
    "driver",
    OTHER,
)
# IUpdate.Type: 1 software, 2 driver.
UPDATE_TYPE_DRIVER = 2

# Returns a COM object for a ProgID, as win32com.client.Dispatch does.
Dispatch = Callable[[str], Any]


def load_dispatch() -> Dispatch:
    """Return win32com.client.Dispatch; raise ImportError where pywin32 is missing."""
    module = importlib.import_module("win32com.client")
    dispatch: Dispatch = module.Dispatch
    return dispatch


def com_items(collection: Any) -> list[Any]:
    """Return the items of a COM collection (UpdateCollection, CategoryCollection...)."""
    return [collection.Item(i) for i in range(int(collection.Count))]


def update_to_dict(update: Any) -> dict[str, Any]:
    """Copy the IUpdate properties the parser reads into plain, JSON-ready values."""
    changed = update.LastDeploymentChangeTime
    return {
        "Title": str(update.Title),
        "Type": int(update.Type),
        "MsrcSeverity": str(update.MsrcSeverity or ""),
        "KBArticleIDs": [str(kb) for kb in com_items(update.KBArticleIDs)],
        "LastDeploymentChangeTime": changed.isoformat() if changed is not None else None,
        "Identity": {
            "UpdateID": str(update.Identity.UpdateID),
            "RevisionNumber": int(update.Identity.RevisionNumber),
        },
        "Categories": [
            {"Name": str(c.Name), "CategoryID": str(c.CategoryID), "Type": str(c.Type)}
            for c in com_items(update.Categories)
        ],
    }


def classify(update: Mapping[str, Any]) -> str:
    """Return an update's classification from its categories, the most urgent first."""
    found = set()
    for category in update.get("Categories") or []:
        if category.get("Type") not in (None, "UpdateClassification"):
            continue  # a product category ("Windows 11"), not a classification
        cid = str(category.get("CategoryID") or "").lower()
        found.add(CLASSIFICATION_IDS.get(cid) or CLASSIFICATION_NAMES.get(category.get("Name")))
    if update.get("Type") == UPDATE_TYPE_DRIVER:
        found.add("driver")
    return next((c for c in WINDOWS_CLASSIFICATIONS if c in found), OTHER)


def parse_timestamp(text: str | None) -> float | None:
    """Return an ISO 8601 time as epoch seconds, or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def parse_windows_updates(updates: Sequence[Mapping[str, Any]]) -> list[PendingUpdate]:
    """Turn updates (as update_to_dict copies them) into pending updates."""
    pending = []
    for update in updates:
        kbs = [f"KB{kb}" for kb in update.get("KBArticleIDs") or []]
        identity = update.get("Identity") or {}
        available = ", ".join(kbs) or f"rev {identity.get('RevisionNumber', 0)}"
        pending.append(
            PendingUpdate(
                str(update.get("Title") or identity.get("UpdateID") or "?"),
                None,
                available,
                classify(update),
                SOURCE,
                parse_timestamp(update.get("LastDeploymentChangeTime")),
            )
        )
    return sort_updates(pending)


class WindowsUpdateBackend:
    """Search the Windows Update Agent for updates it already knows about."""

    name = "windows-update"
    classifications: tuple[str, ...] = WINDOWS_CLASSIFICATIONS

    def __init__(self, *, dispatch: Dispatch | None = None) -> None:
        self._dispatch = dispatch

    def _com(self) -> Dispatch:
        """Return the dispatch function given, or pywin32's."""
        if self._dispatch is None:
            self._dispatch = load_dispatch()
        return self._dispatch

    def available(self) -> bool:
        """Tell whether pywin32 can reach COM (only on Windows)."""
        try:
            self._com()
        except ImportError:
            return False
        return True

    def stamp(self) -> object:
        """Return None: no cheap signal tells that the agent's results changed."""
        return None

    def lists_updated_at(self) -> float | None:
        """Return when Automatic Updates last searched successfully."""
        results = self._com()("Microsoft.Update.AutoUpdate").Results
        when = results.LastSearchSuccessDate
        return when.timestamp() if when is not None else None

    def read_updates(self) -> list[PendingUpdate]:
        """Search offline, against what the last scan downloaded, for updates not installed."""
        searcher = self._com()("Microsoft.Update.Session").CreateUpdateSearcher()
        # Online=False: no round trip to Microsoft or WSUS; the scheduled scan keeps it current.
        searcher.Online = False
        result = searcher.Search(SEARCH_CRITERIA)
        return parse_windows_updates([update_to_dict(u) for u in com_items(result.Updates)])
