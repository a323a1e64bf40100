"""The server's index of agent archives: which one is newest, who is offered it, streaming."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from packaging.version import Version

from rmm_common.errors import ConfigError, NotFound
from rmm_proto import agent_pb2
from rmm_server.updates import UpdateIndex, is_older, version_key

ORDERED = [
    "0.9",
    "1.0.dev1",
    "1.0a1",
    "1.0a2.dev3",
    "1.0a2",
    "1.0b1",
    "1.0rc1",
    "1.0",
    "1.0.post1.dev1",
    "1.0.post1",
    "1.0.1",
    "1.2",
    "1.10",
    "10.0.0",
]


def test_version_key_orders_like_pep_440() -> None:
    assert sorted(ORDERED, key=version_key) == ORDERED
    assert sorted(ORDERED, key=Version) == ORDERED
    assert version_key("1.0") == version_key("1.0.0")


@pytest.mark.parametrize("bad", ["", "v1.0", "1.0-beta", "latest", "1..0", "1.0+local"])
def test_version_key_refuses_other_forms(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a version"):
        version_key(bad)


def test_unparsable_agent_version_counts_as_older() -> None:
    assert is_older("garbage", "0.1.0")
    assert not is_older("0.2.0", "0.1.0")


def _archive(directory: Path, version: str, content: bytes) -> Path:
    path = directory / f"rmm-agent-{version}.pyz"
    path.write_bytes(content)
    return path


def _report(version: str, self_updatable: bool = True) -> agent_pb2.Report:
    return agent_pb2.Report(agent_version=version, self_updatable=self_updatable)


def test_index_offers_the_newest_archive_only_to_older_self_updatable_agents(
    tmp_path: Path,
) -> None:
    _archive(tmp_path, "0.2.0", b"two")
    newest = _archive(tmp_path, "0.10.0", b"ten")
    _archive(tmp_path, "0.9.1rc1", b"nine")
    (tmp_path / "README.txt").write_text("not an archive, ignored")
    index = UpdateIndex(tmp_path)
    index.scan()
    assert index.newest is not None and index.newest.path == newest

    offer = index.offer_for(_report("0.2.0"))
    assert offer is not None
    assert offer.version == "0.10.0"
    assert offer.size == 3
    assert offer.sha256 == hashlib.sha256(b"ten").hexdigest()
    assert index.offer_for(_report("0.10.0")) is None
    assert index.offer_for(_report("0.11.0")) is None
    assert index.offer_for(_report("0.2.0", self_updatable=False)) is None


def test_empty_directory_offers_nothing(tmp_path: Path) -> None:
    index = UpdateIndex(tmp_path)
    index.scan()
    assert index.offer_for(_report("0.0.1")) is None


def test_badly_named_archive_is_refused_with_the_fix_and_the_old_index_stays(
    tmp_path: Path,
) -> None:
    _archive(tmp_path, "0.2.0", b"two")
    index = UpdateIndex(tmp_path)
    index.scan()
    _archive(tmp_path, "new", b"?")
    with pytest.raises(ConfigError) as raised:
        index.scan()
    assert "rmm-agent-new.pyz" in str(raised.value)
    assert "rename it rmm-agent-<version>.pyz" in str(raised.value)
    assert index.newest is not None and index.newest.version == "0.2.0"


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        UpdateIndex(tmp_path / "nope").scan()


def test_chunks_stream_the_archive_and_refuse_one_changed_since_indexing(tmp_path: Path) -> None:
    content = os.urandom(1000)
    path = _archive(tmp_path, "1.0", content)
    index = UpdateIndex(tmp_path)
    index.scan()
    archive = index.get("1.0")
    assert b"".join(index.chunks(archive, chunk_bytes=64)) == content
    with pytest.raises(NotFound, match=r"offered: 1\.0"):
        index.get("2.0")
    path.write_bytes(content + b"more")
    with pytest.raises(ConfigError, match="changed since the server indexed it"):
        list(index.chunks(archive))
