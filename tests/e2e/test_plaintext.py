"""Plaintext gRPC beyond loopback: refused by the server, the agent and the CLI unless the second
flag says so, and loud on stderr when it does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers import BIN, ServerProcess, free_port, wait_for

FLAG = "--allow-plaintext-beyond-loopback"


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def test_server_refuses_plaintext_on_every_interface_without_the_flag(tmp_path: Path) -> None:
    result = run(
        str(BIN / "rmm-server"), "serve", "--data-dir", str(tmp_path / "d"), "--insecure",
        "--grpc-listen", f"0.0.0.0:{free_port()}", "--http-listen", f"127.0.0.1:{free_port()}",
        "--no-policies",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert FLAG in result.stderr and "0.0.0.0" in result.stderr, result.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was made


def test_cli_and_enroll_refuse_plaintext_beyond_loopback_without_the_flag(
    tmp_path: Path,
) -> None:
    # 192.0.2.1 (TEST-NET-1) is never reached: the refusal comes before any connection.
    cli = run(str(BIN / "rmm"), "--server", "192.0.2.1:50051", "--token", "x", "--insecure",
              "agents", "list")  # fmt: skip
    assert cli.returncode == 2, cli.stderr
    assert FLAG in cli.stderr and "192.0.2.1:50051" in cli.stderr, cli.stderr
    enroll = run(str(BIN / "rmm-agent"), "enroll", "--server", "192.0.2.1:50051", "--token", "x",
                 "--state-dir", str(tmp_path / "a"), "--insecure")  # fmt: skip
    assert enroll.returncode == 2, enroll.stderr
    assert FLAG in enroll.stderr, enroll.stderr
    assert not (tmp_path / "a" / "identity.json").exists()


def test_plaintext_beyond_loopback_with_the_flag_warns_everywhere(tmp_path: Path) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--no-policies", FLAG],
    )
    # 0.0.0.0 listens on every interface; on Linux a client reaches it at 0.0.0.0 too.
    server_address = f"0.0.0.0:{server.grpc_port}"
    server.extra_args += ["--grpc-listen", server_address]
    server.start()
    agent = None
    try:
        assert "WARNING" in server.log() and "PLAINTEXT beyond loopback" in server.log()
        base = [str(BIN / "rmm"), "--server", server_address, "--token", server.admin_token,
                "--insecure", FLAG]  # fmt: skip
        created = run(*base, "tokens", "create", "--client", "acme", "--site", "hq",
                      "--output", "json")  # fmt: skip
        assert created.returncode == 0, created.stderr
        assert "WARNING: talking PLAINTEXT gRPC" in created.stderr
        token = json.loads(created.stdout)["token"]
        state_dir = tmp_path / "agent"
        enrolled = run(str(BIN / "rmm-agent"), "enroll", "--server", server_address,
                       "--token", token, "--state-dir", str(state_dir),
                       "--insecure", FLAG)  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        assert "WARNING: talking PLAINTEXT gRPC" in enrolled.stderr
        log = tmp_path / "agent.log"
        agent = subprocess.Popen(
            [str(BIN / "rmm-agent"), "run", "--state-dir", str(state_dir), "--interval", "1"],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: "WARNING: talking PLAINTEXT gRPC" in log.read_text(), 60, "the agent's warning"
        )
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(15)
        server.stop()
