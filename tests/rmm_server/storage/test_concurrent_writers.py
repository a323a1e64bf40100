"""Writers of one row at the same moment (two replicas, a resent report beside its original, two
operators): every write that replaces a row is one upsert, so none fails with a duplicate key
because it did not see the other's uncommitted insert. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from rmm_server.storage import Store, open_store
from rmm_server.storage.agent_history import AgentHistoryStore, HistoryPoint
from rmm_server.storage.patches import DecisionRow, PatchStore, UpdateRow

ROUNDS = 25


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    yield opened
    opened.close()


def side_by_side(write: Callable[[int, int], None]) -> None:
    """Run `write(round, writer)` in two threads released together, round after round."""
    barrier = threading.Barrier(2)

    def one(round_no: int, writer: int) -> None:
        barrier.wait()
        write(round_no, writer)

    with ThreadPoolExecutor(2) as pool:
        for round_no in range(ROUNDS):
            list(pool.map(one, [round_no, round_no], [0, 1]))  # raises what either raised


def test_two_replicas_flush_one_agents_chart_bucket(store: Store) -> None:
    history = AgentHistoryStore(store)

    def write(round_no: int, writer: int) -> None:
        point = HistoryPoint("a1", round_no * 300, 0.1 * writer, 0.5, None, 1.0, 2.0)
        history.write([point, point])  # a batch naming one bucket twice is taken too

    side_by_side(write)
    points = history.points("a1", 0)
    assert [p.bucket for p in points] == [n * 300 for n in range(ROUNDS)]


def test_two_operators_approve_one_update_at_once(store: Store) -> None:
    patches = PatchStore(store)

    def write(round_no: int, writer: int) -> None:
        record = DecisionRow(f"apt:pkg{round_no}", "client", "acme", "approve", f"op{writer}", 1.0)
        patches.put_decision_records([record])

    side_by_side(write)
    records = patches.decision_records()
    assert sorted(r.update_pattern for r in records) == sorted(f"apt:pkg{n}" for n in range(ROUNDS))


def test_two_writers_of_one_agents_patch_state_at_once(store: Store) -> None:
    patches = PatchStore(store)

    def write(round_no: int, writer: int) -> None:
        if writer:
            patches.set_reboot_pending(f"a{round_no}", True)
        else:
            patches.note_reported_digest(f"a{round_no}", "d" * 64)

    side_by_side(write)
    for n in range(ROUNDS):
        state = patches.agent_state(f"a{n}")
        assert state is not None and state.reboot_pending and state.reported_digest == "d" * 64


def test_a_list_naming_one_update_twice_is_stored_once(store: Store) -> None:
    """Two ids the agent sent differently can be one id once cut to the column's length."""
    patches = PatchStore(store)
    first, second = (
        UpdateRow(
            "a1",
            "apt:x",
            "x",
            "1",
            version,
            "security",
            "apt",
            "",
            "",
            None,
            None,
            False,
            1.0,
            "pending",
            "",
        )
        for version in ("2", "3")
    )
    patches.write_list("a1", [first, second], [], "d1", False, 1.0)
    rows = patches.agent_updates("a1")
    assert [(r.update_id, r.available) for r in rows] == [("apt:x", "3")]
