"""push_file and pull_file on real files."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from rmm_agent.actions import execute
from rmm_agent.config import AgentConfig
from rmm_proto import commands_pb2

from .helpers import Agent


def push(
    tmp_path: Path,
    path: Path | str,
    data: bytes,
    config: AgentConfig | None = None,
    **fields: Any,
) -> commands_pb2.CommandResult:
    fields.setdefault("sha256", hashlib.sha256(data).hexdigest())
    command = commands_pb2.Command(
        id="push-1", push_file=commands_pb2.PushFile(path=str(path), data=data, **fields)
    )
    return execute(command, Agent().context(command, state_dir=tmp_path, config=config))


def pull(
    tmp_path: Path, path: Path | str, config: AgentConfig | None = None, max_bytes: int = 0
) -> commands_pb2.CommandResult:
    command = commands_pb2.Command(
        id="pull-1", pull_file=commands_pb2.PullFile(path=str(path), max_bytes=max_bytes)
    )
    return execute(command, Agent().context(command, state_dir=tmp_path, config=config))


def test_push_then_pull_round_trip(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    target = tmp_path / "tool.bin"
    pushed = push(tmp_path, target, data, mode=0o750)
    assert pushed.status == commands_pb2.COMMAND_SUCCEEDED, pushed.error
    digest = hashlib.sha256(data).hexdigest()
    assert pushed.file == commands_pb2.FileResult(path=str(target), size=100_000, sha256=digest)
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    pulled = pull(tmp_path, target)
    assert pulled.status == commands_pb2.COMMAND_SUCCEEDED, pulled.error
    assert pulled.file == commands_pb2.FileResult(
        path=str(target), size=100_000, sha256=digest, data=data
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tool.bin"], "no temporary file left"


def test_default_mode_is_0644(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        assert (
            push(tmp_path, tmp_path / "motd", b"hello\n").status == commands_pb2.COMMAND_SUCCEEDED
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "motd").stat().st_mode) == 0o644


def test_a_wrong_checksum_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "motd"
    result = push(tmp_path, target, b"hello\n", sha256="00" * 32)
    assert result.status == commands_pb2.COMMAND_FAILED
    digest = hashlib.sha256(b"hello\n").hexdigest()
    assert result.error == (
        f"push {target}: the data's sha256 is {digest}, not {'00' * 32} as sent; the data was "
        "damaged on the way; nothing written"
    )
    assert list(tmp_path.iterdir()) == []
    result = push(tmp_path, target, b"hello\n", sha256="")
    assert result.error == f"push {target}: no sha256 given; nothing written"
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "motd"
    target.write_bytes(b"old\n")
    result = push(tmp_path, target, b"new\n")
    assert result.status == commands_pb2.COMMAND_FAILED
    assert result.error == f"{target} exists; push with --overwrite to replace it"
    assert target.read_bytes() == b"old\n"
    result = push(tmp_path, target, b"new\n", overwrite=True)
    assert result.status == commands_pb2.COMMAND_SUCCEEDED
    assert target.read_bytes() == b"new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["motd"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_a_replaced_file_keeps_its_owner(tmp_path: Path) -> None:
    target = tmp_path / "dotfile"
    target.write_bytes(b"old\n")
    os.chown(target, 1234, 2345)
    assert push(tmp_path, target, b"new\n", overwrite=True).status == commands_pb2.COMMAND_SUCCEEDED
    assert (target.stat().st_uid, target.stat().st_gid) == (1234, 2345)


def test_bad_targets_are_refused(tmp_path: Path) -> None:
    assert push(tmp_path, "etc/motd", b"x").error == (
        "path etc/motd is not absolute; give the full path"
    )
    missing = tmp_path / "no-dir" / "motd"
    assert push(tmp_path, missing, b"x").error == (
        f"directory {missing.parent} does not exist; create it first (`rmm files push` creates "
        "no directories)"
    )
    (tmp_path / "dir").mkdir()
    assert push(tmp_path, tmp_path / "dir", b"x", overwrite=True).error == (
        f"{tmp_path / 'dir'} exists and is not a regular file; refused"
    )
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_bytes(b"keep")
    assert push(tmp_path, link, b"x", overwrite=True).error == (
        f"{link} is a symbolic link; push to the path it points to instead"
    )
    assert link.is_symlink() and (tmp_path / "elsewhere").read_bytes() == b"keep"


def test_push_size_limit(tmp_path: Path) -> None:
    config = AgentConfig(max_file_bytes=100)
    target = tmp_path / "big"
    assert push(tmp_path, target, b"x" * 100, config).status == commands_pb2.COMMAND_SUCCEEDED
    result = push(tmp_path, tmp_path / "bigger", b"x" * 101, config)
    assert result.status == commands_pb2.COMMAND_FAILED
    assert result.error == (
        f"push {tmp_path / 'bigger'}: 101 bytes is over this host's limit of 100 bytes "
        "(max_file_bytes in the agent configuration)"
    )
    assert not (tmp_path / "bigger").exists()


def test_pull_size_limits(tmp_path: Path) -> None:
    target = tmp_path / "log"
    target.write_bytes(b"y" * 500)
    result = pull(tmp_path, target, max_bytes=499)
    assert result.status == commands_pb2.COMMAND_FAILED
    assert result.error == f"{target} is 500 bytes, over the limit of 499 bytes"
    assert not result.file.data
    result = pull(tmp_path, target, AgentConfig(max_file_bytes=400), max_bytes=1000)
    assert result.error == f"{target} is 500 bytes, over the limit of 400 bytes"
    assert pull(tmp_path, target, max_bytes=500).file.data == b"y" * 500


def test_pull_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    assert (
        pull(tmp_path, tmp_path).error
        == f"{tmp_path} is a directory; only regular files are pulled"
    )
    assert pull(tmp_path, tmp_path / "none").error == f"no file {tmp_path / 'none'}"
    assert pull(tmp_path, "relative/file").error == (
        "path relative/file is not absolute; give the full path"
    )


@pytest.mark.skipif(sys.platform.startswith("win"), reason="named pipes are POSIX")
def test_pull_of_a_named_pipe_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    results: list[commands_pb2.CommandResult] = []
    worker = threading.Thread(target=lambda: results.append(pull(tmp_path, fifo)), daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "pull_file blocked opening a named pipe"
    assert results[0].error == f"{fifo} is not a regular file; only regular files are pulled"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads all")
def test_pull_of_an_unreadable_file(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"s")
    target.chmod(0)
    assert pull(tmp_path, target).error == f"cannot read {target}: Permission denied"
