"""A rule's `remediate:` runs a library script when it fires; a fix that works resolves it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from rmm_common.tokens import bearer_metadata
from rmm_proto import operator_pb2, operator_pb2_grpc
from tests.helpers import (
    BIN,
    ServerProcess,
    end_process,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)

POLICY = """\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: fixer}
scope: {all: true}
consent: unattended
rules:
  - name: FixdMissing
    expr: '!process_running("rmmfixd")'
    severity: warning
    tier: L1
    remediate: {script: start-fixd, args: ["600"], interval: 1h}
"""

SCRIPT = """\
#!/bin/sh
# ---
# description: Start the rmmfixd test daemon.
# shells: [sh]
# timeout: 20s
# ---
set -e
cp /bin/sleep "{directory}/rmmfixd"
setsid "{directory}/rmmfixd" "$1" </dev/null >/dev/null 2>&1 &
echo "started rmmfixd"
"""


def daemons() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "rmmfixd"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fixer.yaml").write_text(POLICY)
    library = tmp_path / "library"
    library.mkdir()
    (library / "start-fixd.sh").write_text(SCRIPT.format(directory=tmp_path))
    proc = ServerProcess(
        tmp_path / "data",
        free_port(),
        free_port(),
        tmp_path / "server.log",
        extra_args=["--policies", str(policies), "--script-library", str(library)],
    )
    proc.start()
    try:
        yield proc
    finally:
        try:
            proc.stop()
        finally:
            for daemon in daemons():
                daemon.kill()


def alerts(server: ServerProcess) -> list[operator_pb2.AlertInfo]:
    stub = operator_pb2_grpc.OperatorServiceStub(grpc.insecure_channel(server.grpc_address))
    response = stub.ListAlerts(
        operator_pb2.ListAlertsRequest(states=["pending", "firing", "resolved"]),
        metadata=bearer_metadata(server.admin_token),
        timeout=10,
    )
    return list(response.alerts)


def test_a_firing_rule_runs_its_script_and_the_fix_resolves_the_alert(
    server: ServerProcess, tmp_path: Path
) -> None:
    assert not daemons(), "a leftover rmmfixd from another run"
    state = tmp_path / "agent"
    enroll_agent(server, state)
    agent: subprocess.Popen[bytes] = start_agent(state, tmp_path / "agent.log", 2.0)
    try:
        resolved = wait_for(
            lambda: [a for a in alerts(server) if a.state == "resolved"],
            180,
            "the alert to fire, the remediation to run and the next report to resolve it",
        )
        alert = resolved[0]
        events = [entry["event"] for entry in json.loads(alert.history_json)]
        assert "remediation" in events, alert.history_json
        result = next(
            entry for entry in json.loads(alert.history_json)
            if entry["event"] == "remediation result"
        )
        assert result["detail"].startswith("succeeded (exit 0) started rmmfixd"), result
        assert daemons(), "the remediation script did not start the daemon"

        audit = rmm_json(server, "audit", "list", "--limit", "100")
        sent = [e for e in audit if e["action"] == "command.sent"]
        assert any(e["operator"] == "policy:fixer/FixdMissing" for e in sent), audit
    finally:
        end_process(agent)


def test_a_remediation_naming_no_library_script_is_refused_when_policies_load(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A typo in `remediate.script` is found at load time, not when the alert fires at night."""
    policy_file = tmp_path / "policies" / "fixer.yaml"
    typo = POLICY.replace("script: start-fixd", "script: start-fixdd")
    line = typo.splitlines().index(
        '    remediate: {script: start-fixdd, args: ["600"], interval: 1h}'
    ) + 1

    # Reload: refused, naming the file, the line and the script; the previous set stays.
    policy_file.write_text(typo)
    refused = rmm(server, "policy", "reload", check=False)
    assert refused.returncode == 1
    assert f"{policy_file}:{line}: remediate.script 'start-fixdd' names no script" in (
        refused.stderr
    ), refused.stderr
    assert "previous policies stay in force" in refused.stderr

    # The script added to the library with the policy that names it: one reload takes both.
    library = tmp_path / "library"
    (library / "start-fixdd.sh").write_text(SCRIPT.format(directory=tmp_path))
    assert rmm_json(server, "policy", "reload")["ok"]

    # At start: the server refuses to start, saying the same.
    (library / "start-fixdd.sh").unlink()
    server.stop()
    started = subprocess.run(
        [
            str(BIN / "rmm-server"), "serve", "--data-dir", str(server.data_dir),
            "--grpc-listen", server.grpc_address, "--http-listen", f"127.0.0.1:{free_port()}",
            "--insecure", "--policies", str(tmp_path / "policies"),
            "--script-library", str(library),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode != 0
    assert f"{policy_file}:{line}: remediate.script 'start-fixdd' names no script" in (
        started.stderr
    ), started.stderr
