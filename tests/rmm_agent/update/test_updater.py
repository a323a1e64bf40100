"""The agent's side of self-update: verified download, hand-over to the launcher, confirmation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from rmm_agent.update.launcher import Layout, write_json
from rmm_agent.update.updater import UpdateError, Updater, save_verified, updater_from_env
from rmm_proto import agent_pb2

ARCHIVE = b"new agent archive " * 1000
SHA = hashlib.sha256(ARCHIVE).hexdigest()


def _chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_save_verified_writes_the_archive_when_size_and_hash_match(tmp_path: Path) -> None:
    dest = tmp_path / "incoming" / "0.2.0.pyz"
    assert save_verified(_chunks(ARCHIVE), len(ARCHIVE), SHA, dest) == dest
    assert dest.read_bytes() == ARCHIVE
    assert list(dest.parent.iterdir()) == [dest]


@pytest.mark.parametrize(
    ("data", "size", "sha", "message"),
    [
        (ARCHIVE[:-1] + b"X", len(ARCHIVE), SHA, "sha256 is"),
        (ARCHIVE[:-10], len(ARCHIVE), SHA, "download cut short"),
        (ARCHIVE + b"extra", len(ARCHIVE), SHA, "more than the"),
    ],
    ids=["wrong-hash", "short", "too-long"],
)
def test_save_verified_refuses_and_leaves_nothing_behind(
    tmp_path: Path, data: bytes, size: int, sha: str, message: str
) -> None:
    dest = tmp_path / "incoming" / "0.2.0.pyz"
    with pytest.raises(UpdateError, match=message):
        save_verified(_chunks(data), size, sha, dest)
    assert list(dest.parent.iterdir()) == []


def test_save_verified_cleans_up_when_the_stream_breaks(tmp_path: Path) -> None:
    def broken() -> Iterator[bytes]:
        yield ARCHIVE[:100]
        raise UpdateError("downloading agent 0.2.0: cannot reach the server")

    dest = tmp_path / "incoming" / "0.2.0.pyz"
    with pytest.raises(UpdateError, match="cannot reach"):
        save_verified(broken(), len(ARCHIVE), SHA, dest)
    assert list(dest.parent.iterdir()) == []


class Harness:
    def __init__(self, tmp_path: Path, data: bytes = ARCHIVE) -> None:
        self.layout = Layout.of(tmp_path)
        self.now = 0.0
        self.data = data
        self.fetched: list[str] = []
        self.ready = 0

    def fetch(self, version: str) -> Iterable[bytes]:
        self.fetched.append(version)
        return _chunks(self.data)

    def on_ready(self) -> None:
        self.ready += 1

    def updater(self) -> Updater:
        def inline(target: Callable[[], None]) -> None:
            target()

        return Updater(
            self.layout,
            "0.1.0",
            self.fetch,
            self.on_ready,
            clock=lambda: self.now,
            wall_clock=lambda: 1000.0 + self.now,
            start_thread=inline,
            retry_after=600.0,
        )


def _ack(offer: agent_pb2.UpdateOffer | None = None, rejected: str = "") -> agent_pb2.ReportAck:
    ack = agent_pb2.ReportAck(sequence=1, rejected=rejected)
    if offer is not None:
        ack.update.CopyFrom(offer)
    return ack


OFFER = agent_pb2.UpdateOffer(version="0.2.0", sha256=SHA, size=len(ARCHIVE))


def test_an_offer_is_downloaded_verified_and_handed_to_the_launcher(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    updater = h.updater()
    updater.on_ack(_ack(OFFER))
    assert h.fetched == ["0.2.0"]
    assert h.layout.incoming_archive("0.2.0").read_bytes() == ARCHIVE
    request = json.loads(h.layout.update_request.read_text())
    assert request["from"] == "0.1.0" and request["to"] == "0.2.0" and request["sha256"] == SHA
    assert h.ready == 1
    updater.on_ack(_ack(OFFER))  # on its way out: no second download
    assert h.fetched == ["0.2.0"] and h.ready == 1


def test_first_good_ack_confirms_this_version(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    updater = h.updater()
    updater.on_ack(_ack(rejected="invalid"))
    assert not h.layout.confirmation("0.1.0").exists()
    updater.on_ack(_ack())
    assert h.layout.confirmation("0.1.0").exists()
    assert h.fetched == []


def test_a_bad_download_is_not_handed_over_and_retried_only_later(tmp_path: Path) -> None:
    h = Harness(tmp_path, data=ARCHIVE + b"tampered")
    updater = h.updater()
    updater.on_ack(_ack(OFFER))
    assert h.ready == 0
    assert not h.layout.update_request.exists()
    assert list(h.layout.incoming.iterdir()) == []
    h.now = 599.0
    updater.on_ack(_ack(OFFER))
    assert h.fetched == ["0.2.0"]
    h.data = ARCHIVE
    h.now = 601.0
    updater.on_ack(_ack(OFFER))
    assert h.fetched == ["0.2.0", "0.2.0"] and h.ready == 1


def test_rejected_same_and_malformed_offers_are_ignored(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.layout.root.mkdir(parents=True)
    write_json(h.layout.rejected, {"0.2.0": {"from": "0.1.0", "reason": "did not report"}})
    updater = h.updater()
    updater.on_ack(_ack(OFFER))
    updater.on_ack(_ack(agent_pb2.UpdateOffer(version="0.1.0", sha256=SHA, size=1)))
    updater.on_ack(_ack(agent_pb2.UpdateOffer(version="../x", sha256=SHA, size=1)))
    updater.on_ack(_ack(agent_pb2.UpdateOffer(version="0.3.0", sha256="nothex", size=1)))
    assert h.fetched == [] and h.ready == 0


def test_reports_say_they_can_update_and_carry_the_last_outcome(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.layout.root.mkdir(parents=True)
    outcome = {"state": "rolled_back", "from": "0.1.0", "to": "0.2.0", "reason": "r", "at": 1.0}
    write_json(h.layout.status, outcome)
    report = agent_pb2.Report()
    h.updater().decorate(report)
    assert report.self_updatable
    [result] = report.collectors
    info = json.loads(result.info_json)
    assert result.name == "update" and result.ok
    assert info["last"] == outcome and info["version"] == "0.1.0" and info["self_updatable"]


def test_only_agents_under_the_launcher_update_themselves(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert updater_from_env(tmp_path, "0.1.0", h.fetch, h.on_ready, {}) is None
    assert (
        updater_from_env(tmp_path, "0.1.0", h.fetch, h.on_ready, {"RMM_AGENT_LAUNCHER": "1"})
        is not None
    )
