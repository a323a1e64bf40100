"""Consent prompts name the operator, the MSP and the ticket, end to end: a real server
(`--msp-name`), a real agent asking through a real dialog program (consent_ask_command, a
script that records what it is shown and answers yes), `rmm run --ticket N` and a run without.

Nobody is logged in on a test machine, and consent asks only logged-in users; the agent runs
in a mount namespace of its own whose /run holds a utmp naming one session (root on a
terminal), so the host's own utmp and every other process are left alone. Needs root and
unshare(1): skipped otherwise, saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import (
    BIN,
    ServerProcess,
    end_process,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    wait_for,
)
from tests.rmm_server.desk.test_psa import SigningReceiver

pytestmark = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) to give the agent a utmp with a logged-in user",
)

POLICY = """\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: ask-first}
scope: {all: true}
consent: ask
"""

USER_PROCESS = 7


def utmp_entry(user: str, line: str) -> bytes:
    """One glibc `struct utmp` (x86-64 and aarch64 layout, 384 bytes) of a logged-in user."""
    return struct.pack(
        "hi32s4s32s256shhiii16s20s",
        USER_PROCESS,
        os.getpid(),
        line.encode(),
        line[-4:].encode(),
        user.encode(),
        b"",
        0,
        0,
        0,
        int(time.time()),
        0,
        b"",
        b"",
    )


def start_agent_with_a_user(
    state_dir: Path, log_path: Path, config: Path
) -> subprocess.Popen[bytes]:
    """Start `rmm-agent run` in its own mount namespace where root is logged in on pts/9."""
    utmp = state_dir.parent / "utmp"
    utmp.write_bytes(utmp_entry("root", "pts/9"))
    script = 'mount -t tmpfs rmm-test-run /run && cp "$1" /run/utmp && shift && exec "$@"'
    return subprocess.Popen(
        [
            "unshare",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
            str(utmp),
            str(BIN / "rmm-agent"),
            "run",
            "--state-dir",
            str(state_dir),
            "--interval",
            "30",
            "--config",
            str(config),
        ],
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )


def shown(folder: Path) -> list[str]:
    """The arguments the dialog program was last started with."""
    return [a.decode() for a in (folder / "dialog.args").read_bytes().split(b"\0")[:-1]]


def test_the_prompt_names_operator_msp_and_ticket_or_no_ticket(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "ask.yaml").write_text(POLICY)
    dialog = tmp_path / "dialog"
    dialog.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do printf "%s\\0" "$a"; done > "{tmp_path}/dialog.args.new"\n'
        f'mv "{tmp_path}/dialog.args.new" "{tmp_path}/dialog.args"\n'
        "exit 0\n"
    )
    dialog.chmod(0o755)
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"consent_ask_command: [{dialog}, '{{message}}', '{{operator}}', '{{msp}}', '{{ticket}}']\n"
    )
    # The same server signs its PSA posts: the option's path from the command line to the post.
    secret = tmp_path / "psa-secret"
    secret.write_text("the-psa-shared-secret-0123456789\n")
    psa = SigningReceiver(b"the-psa-shared-secret-0123456789")
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=[
            "--policies", str(policies), "--msp-name", "Acme IT",
            "--psa-webhook", psa.url, "--psa-webhook-secret-file", str(secret),
        ],
    )  # fmt: skip
    agent = None
    try:
        server.start()
        agent_id = enroll_agent(server, tmp_path / "agent", client="acme", site="hq")
        alice = rmm_json(server, "operators", "add", "alice", "--role", "tier2")["token"]
        agent = start_agent_with_a_user(tmp_path / "agent", tmp_path / "agent.log", config)

        def stream_open() -> bool:
            assert agent is not None and agent.poll() is None, (tmp_path / "agent.log").read_text()
            found = re.search(r"^rmm_server_command_streams (\S+)$", server.metrics(), re.M)
            return found is not None and float(found.group(1)) == 1

        wait_for(stream_open, 60, "the agent's command stream")
        number = str(
            rmm_json(server, "tickets", "open", "--client", "acme", "--title", "Printer")["id"]
        )

        ran = rmm(
            server, "run", "-t", agent_id, "--command", "echo fixed", "--ticket", number,
            token=alice,
        )  # fmt: skip
        assert "fixed" in ran.stdout, (ran.stdout, ran.stderr)
        message, operator, msp, ticket = shown(tmp_path)
        assert message.startswith(
            f"alice of Acme IT (via remote management, ticket {number}) asks to act on this "
            "computer: "
        ), message
        assert (operator, msp, ticket) == ("alice", "Acme IT", f"ticket {number}")

        ran = rmm(server, "run", "-t", agent_id, "--command", "echo fixed", token=alice)
        assert "fixed" in ran.stdout, (ran.stdout, ran.stderr)
        message, operator, msp, ticket = shown(tmp_path)
        assert message.startswith(
            "alice of Acme IT (via remote management, no ticket) asks to act"
        ), message
        assert (operator, msp, ticket) == ("alice", "Acme IT", "no ticket")

        # Every ticket event reached the PSA signed with the secret in the file.
        wait_for(lambda: [b["event"]["kind"] for b in psa.bodies][:1] == ["opened"], 30, "the PSA")
        assert psa.refused == 0 and psa.bodies[0]["ticket"]["id"] == int(number)
    finally:
        end_process(agent)
        if server.process is not None:
            server.stop()
        psa.server.shutdown()
        psa.server.server_close()
