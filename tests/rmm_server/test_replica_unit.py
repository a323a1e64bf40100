"""deploy/systemd/rmm-server@.service (N replicas on one host sharing the gRPC port) passes
`systemd-analyze verify` as an instance, and differs from the single server's unit only where
it must: what it starts and where the database URL comes from."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).parents[2] / "deploy" / "systemd"
TEMPLATE = DEPLOY / "rmm-server@.service"


def settings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_template_is_the_server_unit_with_its_replica_flags() -> None:
    single, template = settings((DEPLOY / "rmm-server.service").read_text()), settings(
        TEMPLATE.read_text()
    )
    [exec_start] = [line for line in template if line.startswith("ExecStart=")]
    for flag in ("--reuse-port", "--replica-id %H-%i", "--http-listen 0.0.0.0:%i"):
        assert f" {flag} " in exec_start, exec_start
    assert "EnvironmentFile=/etc/rmm/server.env" in template  # RMM_DB: the shared PostgreSQL
    differs = {"ExecStart=", "Description=", "EnvironmentFile="}
    assert [line for line in template if not line.startswith(tuple(differs))] == [
        line for line in single if not line.startswith(tuple(differs))
    ]


def test_an_instance_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    # verify needs an executable ExecStart and an existing EnvironmentFile: a stub for both;
    # every other line is checked as written.
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    env = tmp_path / "server.env"
    env.write_text("RMM_DB=postgresql://rmm@db.example:5432/rmm\n")
    lines = []
    for line in TEMPLATE.read_text().splitlines():
        if line.startswith(("ExecStart=", "ExecReload=")):
            key, command = line.split("=", 1)
            lines.append(f"{key}={stub} {command.split(' ', 1)[1]}")
        elif line.startswith("EnvironmentFile="):
            lines.append(f"EnvironmentFile={env}")
        else:
            lines.append(line)
    instance = tmp_path / "rmm-server@9465.service"
    instance.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(instance)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )
