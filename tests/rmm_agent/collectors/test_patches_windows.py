"""Test the Windows Update backend on a recorded search, fed through the pure parser."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rmm_agent.collectors.patches_windows import (
    SEARCH_CRITERIA,
    WindowsUpdateBackend,
    classify,
    parse_windows_updates,
)

from .helpers import fixture_text


def recorded() -> list[dict[str, Any]]:
    updates: list[dict[str, Any]] = json.loads(fixture_text("windows_update_search_win11.json"))
    return updates


def test_parse_recorded_search() -> None:
    updates = parse_windows_updates(recorded())
    by_kb = {u.available: u.classification for u in updates}
    assert by_kb == {
        "KB5036893": "security",
        "KB2267602": "definition",  # matched by ID although the name is localised
        "KB5036620": "update_rollup",
        "KB890830": "critical",
        "rev 1": "driver",  # a driver: no KB, no classification category, Type 2
        "KB5036980": "other",
    }
    assert all(u.current is None and u.source == "windows-update" for u in updates)
    assert [u.name for u in updates] == sorted(u.name for u in updates)
    assert (
        min(u.published for u in updates if u.published)
        == datetime(2024, 3, 12, tzinfo=UTC).timestamp()
    )


def test_the_most_urgent_classification_wins() -> None:
    both = {
        "Categories": [
            {"Name": "Updates", "CategoryID": "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83",
             "Type": "UpdateClassification"},
            {"Name": "Security Updates", "CategoryID": "", "Type": "UpdateClassification"},
        ]
    }  # fmt: skip
    assert classify(both) == "security"
    assert classify({}) == "other"


class ComCollection:
    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.Count = len(items)

    def Item(self, i: int) -> Any:
        return self.items[i]


class Obj:
    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


def com_update(data: dict[str, Any]) -> Obj:
    """Rebuild the COM object graph the recorded dict was copied from."""
    changed = data["LastDeploymentChangeTime"]
    return Obj(
        Title=data["Title"],
        Type=data["Type"],
        MsrcSeverity=data["MsrcSeverity"] or None,
        KBArticleIDs=ComCollection(data["KBArticleIDs"]),
        LastDeploymentChangeTime=datetime.fromisoformat(changed) if changed else None,
        Identity=Obj(**data["Identity"]),
        Categories=ComCollection([Obj(**c) for c in data["Categories"]]),
    )


class FakeSearcher:
    def __init__(self, updates: list[Obj]) -> None:
        self.updates = updates
        self.Online = True
        self.criteria: list[str] = []

    def Search(self, criteria: str) -> Obj:
        assert self.Online is False, "monitoring must not go to Microsoft or WSUS"
        self.criteria.append(criteria)
        return Obj(Updates=ComCollection(self.updates))


def test_backend_walks_the_com_objects_offline() -> None:
    searcher = FakeSearcher([com_update(u) for u in recorded()])
    last_search = datetime(2024, 4, 24, 3, 0, tzinfo=UTC)
    objects = {
        "Microsoft.Update.Session": Obj(CreateUpdateSearcher=lambda: searcher),
        "Microsoft.Update.AutoUpdate": Obj(Results=Obj(LastSearchSuccessDate=last_search)),
    }
    backend = WindowsUpdateBackend(dispatch=objects.__getitem__)
    assert backend.available()
    assert backend.read_updates() == parse_windows_updates(recorded())
    assert searcher.criteria == [SEARCH_CRITERIA]
    assert backend.lists_updated_at() == last_search.timestamp()
    assert backend.stamp() is None


def test_unavailable_without_pywin32() -> None:
    assert not WindowsUpdateBackend().available()  # pywin32 is never installed off Windows
