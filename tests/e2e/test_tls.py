"""TLS with the operator's own certificate: agents and the CLI trust only the CA they are given."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    BIN,
    ServerProcess,
    enroll_with_token,
    free_port,
    rmm_json,
    start_agent,
    wait_for,
)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")


def make_ca_and_server_cert(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """Create a CA and a server certificate for 127.0.0.1 signed by it, with openssl."""
    ca_key, ca_cert = directory / f"{name}-ca.key", directory / f"{name}-ca.pem"
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    ext = directory / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_cert),
        "-days",
        "2",
        "-subj",
        f"/CN={name} CA",
    )
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca_cert, cert, key


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    ca, cert, key = make_ca_and_server_cert(tmp_path, "rmm")
    process = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        insecure=False,
        extra_args=["--tls-cert", str(cert), "--tls-key", str(key)],
    ).start()
    yield process, ca
    process.stop()


def test_agent_enrolls_and_reports_over_tls(
    tls_server: tuple[ServerProcess, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = tls_server
    monkeypatch.setenv("RMM_CA_CERT", str(ca))
    token = rmm_json(server, "tokens", "create", "--client", "acme", "--site", "hq")["token"]
    other_ca, _, _ = make_ca_and_server_cert(tmp_path, "other")
    for args in ([], ["--ca-cert", str(other_ca)], ["--insecure"]):
        refused = enroll_with_token(server, tmp_path / "refused", token, *args)
        assert refused.returncode != 0, args
        assert "enrollment failed" in refused.stderr
    state_dir = tmp_path / "agent"
    enrolled = enroll_with_token(server, state_dir, token, "--ca-cert", str(ca))
    assert enrolled.returncode == 0, enrolled.stderr
    agent = start_agent(state_dir, tmp_path / "agent.log", interval=1)
    try:
        wait_for(
            lambda: any(r["last_sequence"] >= 1 for r in rmm_json(server, "agents", "list")),
            15,
            "a report over TLS",
        )
    finally:
        agent.terminate()
        agent.wait(10)


def test_server_without_certificate_or_insecure_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(BIN / "rmm-server"),
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--grpc-listen",
            f"127.0.0.1:{free_port()}",
            "--http-listen",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "pass --tls-cert FILE and --tls-key FILE, or --insecure" in result.stderr
