"""`rmm scripts list|show` against a real server, its --script-library, and reloads."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmm_server.shipped import SHIPPED_SCRIPT_LIBRARY
from tests.helpers import BIN, ServerProcess, free_port, rmm, rmm_json, wait_for

CLEAN = """#!/usr/bin/env bash
# ---
# name: clean-tmp
# description: Remove [old] files from /tmp.
# shells: [bash, sh]
# timeout: 2m
# min_role: tier2
# args: "[DAYS]"
# ---
find /tmp -mtime +"${1:-7}" -delete
"""

PING = """#!/usr/bin/env python3
# ---
# description: Say pong.
# shells: [python]
# ---
print("pong")
"""


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "clean-tmp.sh").write_text(CLEAN)
    (folder / "ping.py").write_text(PING)
    (folder / "README.md").write_text("# not a script\n")
    return folder


@pytest.fixture
def library_server(tmp_path: Path, library: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--script-library", str(library)],
    ).start()
    yield process
    process.stop()


def listed(server: ServerProcess) -> list[str]:
    return [row["name"] for row in rmm_json(server, "scripts", "list")]


def test_list_and_show_the_servers_library(library_server: ServerProcess, library: Path) -> None:
    rows = rmm_json(library_server, "scripts", "list")
    assert rows == [
        {
            "name": "clean-tmp",
            "description": "Remove [old] files from /tmp.",
            "shell": "bash",
            "shells": ["bash", "sh"],
            "timeout_seconds": 120.0,
            "min_role": "tier2",
            "path": str(library / "clean-tmp.sh"),
            "params": [],
        },
        {
            "name": "ping",
            "description": "Say pong.",
            "shell": "python",
            "shells": ["python"],
            "timeout_seconds": 60.0,
            "min_role": "tier1",
            "path": str(library / "ping.py"),
            "params": [],
        },
    ]
    table = rmm(library_server, "scripts", "list").stdout
    for text in ("NAME", "SHELL", "TIMEOUT", "MIN ROLE", "DESCRIPTION", "clean-tmp", "2m"):
        assert text in table
    # Descriptions print as written, not as rich markup.
    assert "Remove [old] files from /tmp." in table

    shown = rmm_json(library_server, "scripts", "show", "clean-tmp")
    assert shown == {**rows[0], "body": CLEAN}
    text = rmm(library_server, "scripts", "show", "ping").stdout
    head, body = text.split("\n\n", 1)
    for field in ("name", "ping", "description", "Say pong.", "shells", "python", "timeout", "1m"):
        assert field in head
    assert "min role" in head and "tier1" in head and str(library / "ping.py") in head
    assert body == PING


def test_show_an_unknown_or_empty_name_fails_clearly(library_server: ServerProcess) -> None:
    missing = rmm(library_server, "scripts", "show", "pnig", check=False)
    assert missing.returncode == 4, missing.stderr
    assert "no script 'pnig'" in missing.stderr and "did you mean 'ping'?" in missing.stderr
    assert "known: clean-tmp, ping" in missing.stderr
    empty = rmm(library_server, "scripts", "show", " ", check=False)
    assert empty.returncode == 2 and "name a script" in empty.stderr


def test_sighup_reload_keeps_the_old_library_on_a_broken_edit(
    library_server: ServerProcess, library: Path
) -> None:
    assert listed(library_server) == ["clean-tmp", "ping"]
    process = library_server.process
    assert process is not None
    broken = library / "ping.py"
    broken.write_text(PING.replace("# shells: [python]", "# shells: [python]\n# colour: red"))
    process.send_signal(signal.SIGHUP)
    wait_for(
        lambda: "the previous script library (2 scripts) stays" in library_server.log(),
        60,
        "the server to refuse the broken library",
    )
    log = library_server.log()
    assert f"{broken}:5: unknown header key 'colour'" in log
    assert listed(library_server) == ["clean-tmp", "ping"]
    assert rmm_json(library_server, "scripts", "show", "ping")["body"] == PING

    broken.write_text(PING)
    (library / "uptime.sh").write_text(
        "#!/bin/sh\n# ---\n# description: Uptime.\n# shells: [sh]\n# ---\nuptime\n"
    )
    process.send_signal(signal.SIGHUP)
    wait_for(
        lambda: listed(library_server) == ["clean-tmp", "ping", "uptime"],
        60,
        "the fixed library to be taken",
    )


def test_policy_reload_reports_a_broken_library_and_keeps_the_old_one(
    library_server: ServerProcess, library: Path
) -> None:
    (library / "ping.py").unlink()
    (library / "pong.sh").write_text("#!/bin/sh\necho pong\n")
    result = rmm(library_server, "policy", "reload", check=False)
    assert result.returncode == 1
    assert f"{library / 'pong.sh'}:2: a .sh script without a header" in result.stderr
    assert listed(library_server) == ["clean-tmp", "ping"]
    assert "ping.py" in rmm_json(library_server, "scripts", "show", "ping")["path"]

    (library / "pong.sh").unlink()
    assert "reloaded" in rmm(library_server, "policy", "reload").stdout
    assert listed(library_server) == ["clean-tmp"]


def test_the_server_refuses_to_start_on_a_broken_library(tmp_path: Path, library: Path) -> None:
    (library / "ping.py").write_text(PING.replace("[python]", "[powershell]"))
    (library / "clean-tmp.sh").write_text(CLEAN.replace("tier2", "viewer"))
    result = subprocess.run(
        [
            str(BIN / "rmm-server"),
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--grpc-listen",
            f"127.0.0.1:{free_port()}",
            "--http-listen",
            f"127.0.0.1:{free_port()}",
            "--insecure",
            "--script-library",
            str(library),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "2 problem(s)" in result.stderr
    assert f"{library / 'clean-tmp.sh'}:7: min_role 'viewer'" in result.stderr
    assert f"{library / 'ping.py'}:4: the first shell 'powershell'" in result.stderr


def test_the_shipped_library_is_the_default(server: ServerProcess) -> None:
    rows = rmm_json(server, "scripts", "list")
    assert {row["name"] for row in rows} >= {"disk-usage", "top-processes", "flush-dns"}
    assert all(Path(row["path"]).parent == SHIPPED_SCRIPT_LIBRARY for row in rows)
    shown = rmm_json(server, "scripts", "show", "disk-usage")
    assert shown["body"] == (SHIPPED_SCRIPT_LIBRARY / "disk-usage.sh").read_text()
