"""Bad arguments exit 2 (usage) with a message that names the flag and the fix, in all three
command lines, before anything is connected to or created."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rmm_common.cliparams import host_port, listen_address
from rmm_common.errors import InvalidArgument
from tests.helpers import BIN


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("127.0.0.1", "--server '127.0.0.1' has no port: give HOST:PORT, e.g. 127.0.0.1:50051"),
        ("::1", "--server '::1' has no port: give HOST:PORT, e.g. [::1]:50051"),
        ("rmm.example.net:x", "is not HOST:PORT: give HOST:PORT, e.g. rmm.example.net:50051"),
        (
            "http://rmm.example.net:50051/",
            "--server 'http://rmm.example.net:50051/': give HOST:PORT without a scheme (http:// "
            "is not part of a gRPC address), e.g. rmm.example.net:50051",
        ),
        ("grpc://rmm.example.net", "without a scheme (grpc:// is not part of a gRPC address), "
         "e.g. rmm.example.net:50051"),
        ("h:0", "--server 'h:0': port 0 is not between 1 and 65535"),
        ("h:70000", "port 70000 is not between 1 and 65535"),
    ],
)  # fmt: skip
def test_bad_server_addresses_say_how_to_write_one(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        host_port(value, "--server")
    assert message in str(raised.value)


def test_good_addresses_pass_stripped() -> None:
    assert host_port(" rmm.example.net:50051 ", "--server") == "rmm.example.net:50051"
    assert host_port("[::1]:50051", "--server") == "[::1]:50051"
    assert listen_address("0.0.0.0:0", "--grpc-listen") == "0.0.0.0:0"  # any free port
    with pytest.raises(InvalidArgument, match=r"e\.g\. 127\.0\.0\.1:9464"):
        listen_address("127.0.0.1", "--http-listen")


def run(program: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [str(BIN / program), *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "RMM_TOKEN": "unused", **(env or {})},
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


NO_SERVER = {"RMM_SERVER": ""}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--server", "127.0.0.1", "agents", "list"], NO_SERVER,
         "Error: --server '127.0.0.1' has no port: give HOST:PORT, e.g. 127.0.0.1:50051"),
        (["--server", "http://127.0.0.1:50051", "agents", "list"], NO_SERVER,
         "give HOST:PORT without a scheme (http:// is not part of a gRPC address), "
         "e.g. 127.0.0.1:50051"),
        (["agents", "list"], {"RMM_SERVER": "localhost"},
         "Error: RMM_SERVER (for --server) 'localhost' has no port"),
        (["--server", "127.0.0.1:9", "--ca-fingerprint", "junk", "agents", "list"], NO_SERVER,
         "Error: --ca-fingerprint 'junk' is not a SHA-256 fingerprint"),
    ],
    ids=["no-port", "scheme", "env-no-port", "fingerprint"],
)  # fmt: skip
def test_rmm_usage_errors_exit_2(args: list[str], env: dict[str, str], message: str) -> None:
    code, output = run("rmm", *args, env=env)
    assert (code, message in output) == (2, True), output
    assert "Traceback" not in output and "cannot reach" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "127.0.0.1"], "Error: --server '127.0.0.1' has no port"),
        (["--server", "https://rmm.example.net"], "without a scheme (https:// is not part"),
        (["--server", "127.0.0.1:9", "--ca-fingerprint", "zz"],
         "Error: --ca-fingerprint 'zz' is not a SHA-256 fingerprint"),
    ],
    ids=["no-port", "scheme", "fingerprint"],
)  # fmt: skip
def test_agent_enroll_usage_errors_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    state = tmp_path / "state"
    code, output = run("rmm-agent", "enroll", *args, "--token", "t", "--state-dir", str(state))
    assert (code, message in output) == (2, True), output
    assert not state.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http-listen", "127.0.0.1"],
         "Error: --http-listen '127.0.0.1' has no port: give HOST:PORT, e.g. 127.0.0.1:9464"),
        (["--grpc-listen", "http://127.0.0.1:50051", "--insecure"],
         "Error: --grpc-listen 'http://127.0.0.1:50051': give HOST:PORT without a scheme"),
        (["--mtls-listen", "0.0.0.0"], "Error: --mtls-listen '0.0.0.0' has no port"),
        (["--retention", "2 days"], "Error: --retention: duration '2 days' is not understood"),
        (["--db", "mysql://rmm:s3cret@db/rmm"],
         "Error: --db: mysql:// is not a database this server runs on: write postgresql://"),
    ],
    ids=["http-no-port", "grpc-scheme", "mtls-no-port", "duration", "db-scheme"],
)  # fmt: skip
def test_server_usage_errors_exit_2_before_anything_is_made(
    tmp_path: Path, args: list[str], message: str
) -> None:
    data = tmp_path / "data"
    code, output = run("rmm-server", "serve", "--data-dir", str(data), *args)
    assert (code, message in output) == (2, True), output
    assert "Traceback" not in output and "s3cret" not in output
    assert not data.exists()
