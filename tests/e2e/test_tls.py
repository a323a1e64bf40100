"""TLS end to end: our own CA by default, pinning by fingerprint, the operator's certificate, and
mutual TLS with client certificates issued at enrollment."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import ssl
import stat
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rmm_proto import agent_pb2, agent_pb2_grpc
from rmm_server.tls import CertificateAuthority
from tests.helpers import (
    BIN,
    ServerProcess,
    enroll_with_token,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)

WRONG = "sha256:" + "0" * 64


def make_ca_and_server_cert(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """Create a CA and a server certificate for 127.0.0.1 signed by it, with openssl."""
    ca_key, ca_cert = directory / f"{name}-ca.key", directory / f"{name}-ca.pem"
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    ext = directory / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    p256 = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *p256, "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "2",
            "-subj", f"/CN={name} CA")  # fmt: skip
    openssl("req", *p256, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return ca_cert, cert, key


def ca_show(data_dir: Path) -> tuple[str, str]:
    """Run `rmm-server ca show` and return the PEM and the fingerprint it prints."""
    result = subprocess.run(
        [str(BIN / "rmm-server"), "ca", "show", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,  # a start-up under a loaded CI machine, not the command, is slow
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr.strip().removeprefix("fingerprint ")


def identity(state_dir: Path) -> dict[str, Any]:
    return dict(json.loads((state_dir / "identity.json").read_text()))


def reported(server: ServerProcess, agent_id: str, beyond: int = 0) -> int:
    """Return the agent's last sequence once it is past `beyond` (0 while not)."""
    for row in rmm_json(server, "agents", "list"):
        if row["id"] == agent_id and row["last_sequence"] > beyond:
            return int(row["last_sequence"])
    return 0


def token_for(server: ServerProcess) -> str:
    return str(rmm_json(server, "tokens", "create", "--client", "acme", "--site", "hq")["token"])


def tls_server(tmp_path: Path, name: str, *extra: str, grpc_port: int = 0) -> ServerProcess:
    return ServerProcess(
        data_dir=tmp_path / name,
        grpc_port=grpc_port or free_port(),
        http_port=free_port(),
        log_path=tmp_path / f"{name}.log",
        insecure=False,
        extra_args=["--no-policies", *extra],
    )


@pytest.fixture
def own_ca_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    """A server started with no TLS option at all; the CLI pins its CA by fingerprint."""
    server = tls_server(tmp_path, "server").start()
    _, fingerprint = ca_show(server.data_dir)
    monkeypatch.setenv("RMM_CA_FINGERPRINT", fingerprint)
    yield server
    server.stop()


def test_no_tls_option_means_tls_with_our_own_ca(
    own_ca_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = own_ca_server
    folder = server.data_dir / "tls"
    for name in ("ca.pem", "ca.key", "server.pem", "server.key"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    pem, fingerprint = ca_show(server.data_dir)
    der = ssl.PEM_cert_to_DER_cert(pem)
    assert fingerprint == "sha256:" + hashlib.sha256(der).hexdigest()
    assert f"TLS CA fingerprint {fingerprint}" in server.log()
    assert "(TLS)" in server.log()

    # Plaintext is refused: the port speaks only TLS.
    plain = subprocess.run(
        [str(BIN / "rmm"), "--server", server.grpc_address, "--token", server.admin_token,
         "--insecure", "agents", "list"],
        capture_output=True, text=True, timeout=60,
        env={"PATH": str(BIN)},
    )  # fmt: skip
    assert plain.returncode == 1, plain.stderr

    # The token comes with the fingerprint: in JSON, on the table's lines, in the installers.
    created = rmm_json(server, "tokens", "create", "--client", "acme", "--site", "hq")
    assert created["ca_fingerprint"] == fingerprint
    table = rmm(server, "tokens", "create", "--client", "acme", "--site", "hq")
    assert f"--ca-fingerprint {fingerprint}" in table.stderr
    for platform in ("linux", "windows", "macos"):
        line = rmm_json(server, "tokens", "create", "--client", "acme", "--site", "hq",
                        "--installer", platform)["installer"]  # fmt: skip
        assert "--ca-fingerprint" in line and fingerprint in line, platform

    # The CLI with a wrong fingerprint refuses the server and names both.
    monkeypatch.setenv("RMM_CA_FINGERPRINT", WRONG)
    refused = rmm(server, "agents", "list", check=False)
    assert refused.returncode == 1
    assert WRONG in refused.stderr and fingerprint in refused.stderr


def test_agent_pins_the_ca_by_fingerprint_and_reports_over_tls(
    own_ca_server: ServerProcess, tmp_path: Path
) -> None:
    server = own_ca_server
    pem, fingerprint = ca_show(server.data_dir)
    token = token_for(server)

    # Without a fingerprint or CA the agent trusts only the system's CAs: refused.
    # With --insecure it speaks plaintext to a TLS port: refused.
    for args in ([], ["--insecure"]):
        refused = enroll_with_token(server, tmp_path / "refused", token, *args)
        assert refused.returncode != 0, args
        assert "enrollment failed" in refused.stderr, refused.stderr
    # A wrong fingerprint: refused before any secret is sent, naming both fingerprints.
    wrong = enroll_with_token(server, tmp_path / "wrong", token, "--ca-fingerprint", WRONG)
    assert wrong.returncode == 1
    assert WRONG in wrong.stderr and fingerprint in wrong.stderr
    assert not (tmp_path / "wrong" / "identity.json").exists()
    exclusive = enroll_with_token(
        server, tmp_path / "x", token, "--ca-fingerprint", fingerprint, "--insecure"
    )
    assert exclusive.returncode == 2 and "exclude each other" in exclusive.stderr
    (row,) = [t for t in rmm_json(server, "tokens", "list") if token.startswith(f"rmme_{t['id']}")]
    assert row["uses"] == 0  # no refused attempt spent the token

    state_dir = tmp_path / "agent"
    enrolled = enroll_with_token(server, state_dir, token, "--ca-fingerprint", fingerprint)
    assert enrolled.returncode == 0, enrolled.stderr
    pinned = identity(state_dir)
    assert ssl.PEM_cert_to_DER_cert(pinned["ca_cert_pem"]) == ssl.PEM_cert_to_DER_cert(pem)
    assert not pinned["insecure"] and pinned["mtls_port"] == 0
    agent = start_agent(state_dir, tmp_path / "agent.log", 1.0)
    try:
        wait_for(lambda: reported(server, pinned["agent_id"]), 30, "a report over TLS")
    finally:
        agent.terminate()
        agent.wait(15)


def test_enrolled_agent_refuses_a_server_with_another_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's test: an agent that pinned its server's CA refuses a server with another."""
    first = tls_server(tmp_path, "first").start()
    grpc_port, http_port = first.grpc_port, first.http_port
    _, fingerprint = ca_show(first.data_dir)
    monkeypatch.setenv("RMM_CA_FINGERPRINT", fingerprint)
    state_dir, log = tmp_path / "agent", tmp_path / "agent.log"
    enrolled = enroll_with_token(
        first, state_dir, token_for(first), "--ca-fingerprint", fingerprint
    )
    assert enrolled.returncode == 0, enrolled.stderr
    agent_id = identity(state_dir)["agent_id"]
    agent = start_agent(state_dir, log, 1.0)
    impostor: ServerProcess | None = None
    try:
        seen = wait_for(lambda: reported(first, agent_id), 30, "a report to the first server")
        # The same server restarted keeps its CA and certificate: the agent carries on.
        first.stop()
        first.start()
        wait_for(lambda: reported(first, agent_id, seen), 30, "reports after a restart")
        first.stop()
        # Another server with its own CA on the same port.
        impostor = tls_server(tmp_path, "impostor", grpc_port=grpc_port)
        impostor.http_port = http_port
        impostor.start()
        _, other = ca_show(impostor.data_dir)
        assert other != fingerprint
        refusal = "ERROR rmm_agent.runner: refused the server at"

        def refused() -> list[str]:
            return [line for line in log.read_text().splitlines() if refusal in line]

        [line, *_] = wait_for(refused, 90, f"the agent to refuse the impostor (log: {log})")
        assert "not signed by the CA this agent pinned" in line
        assert "CERTIFICATE_VERIFY_FAILED" in line, line
        assert "enrolled agent" not in impostor.log()  # nothing reached it but handshakes
        assert agent.poll() is None  # it keeps trying: the real server may come back
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        if impostor is not None:
            impostor.stop()


def test_insecure_is_plaintext_and_has_no_fingerprint(
    server: ServerProcess, tmp_path: Path
) -> None:
    assert (
        rmm_json(server, "tokens", "create", "--client", "a", "--site", "b")["ca_fingerprint"]
        is None
    )
    assert not (server.data_dir / "tls").exists()
    refused = enroll_with_token(
        server, tmp_path / "a", token_for(server), "--ca-fingerprint", WRONG
    )
    assert refused.returncode == 1
    assert "no TLS at" in refused.stderr and "--insecure" in refused.stderr


def test_bad_tls_options_are_refused_at_start(tmp_path: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "rmm-server"), "serve", "--data-dir", str(tmp_path / "d"),
             "--grpc-listen", f"127.0.0.1:{free_port()}",
             "--http-listen", f"127.0.0.1:{free_port()}", "--no-policies", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    ca, cert = tmp_path / "ca.pem", tmp_path / "cert.pem"
    for args, message in (
        (["--insecure", "--require-client-certs"], "--insecure serves plaintext"),
        (["--tls-cert", str(cert)], "--tls-cert and --tls-key go together"),
        (["--tls-ca", str(ca)], "--tls-ca goes with --tls-cert"),
        (["--tls-san", "bad name"], "is not a host name or IP address"),
    ):
        result = serve(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, result.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")
def test_operators_certificate_with_its_ca_pinned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path, "rmm")
    server = tls_server(
        tmp_path, "server", "--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca)
    ).start()
    try:
        monkeypatch.setenv("RMM_CA_CERT", str(ca))
        created = rmm_json(server, "tokens", "create", "--client", "acme", "--site", "hq")
        openssl = subprocess.run(
            ["openssl", "x509", "-in", str(ca), "-noout", "-fingerprint", "-sha256"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        colons = openssl.stdout.strip().split("=", 1)[1]
        assert created["ca_fingerprint"] == "sha256:" + colons.replace(":", "").lower()
        assert not (server.data_dir / "tls").exists()  # the operator's, not ours
        token = created["token"]
        other_ca, _, _ = make_ca_and_server_cert(tmp_path, "other")
        for args in ([], ["--ca-cert", str(other_ca)], ["--insecure"]):
            refused = enroll_with_token(server, tmp_path / "refused", token, *args)
            assert refused.returncode != 0, args
            assert "enrollment failed" in refused.stderr
        # Both ways of trusting the operator's CA: its file, or its fingerprint (openssl's form).
        for name, args in (("file", ["--ca-cert", str(ca)]), ("pin", ["--ca-fingerprint", colons])):
            state_dir = tmp_path / name
            enrolled = enroll_with_token(server, state_dir, token, *args)
            assert enrolled.returncode == 0, enrolled.stderr
            agent = start_agent(state_dir, tmp_path / f"{name}.log", 1.0)
            try:
                agent_id = identity(state_dir)["agent_id"]
                wait_for(partial(reported, server, agent_id), 30, f"a report ({name})")
            finally:
                agent.terminate()
                agent.wait(15)
    finally:
        server.stop()


# --- mutual TLS ------------------------------------------------------------------------------


@pytest.fixture
def mtls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    mtls_port = free_port()
    server = tls_server(
        tmp_path, "server", "--require-client-certs", "--mtls-listen", f"127.0.0.1:{mtls_port}"
    ).start()
    _, fingerprint = ca_show(server.data_dir)
    monkeypatch.setenv("RMM_CA_FINGERPRINT", fingerprint)
    yield server
    server.stop()


def enroll_pinned(server: ServerProcess, state_dir: Path) -> dict[str, Any]:
    _, fingerprint = ca_show(server.data_dir)
    result = enroll_with_token(
        server, state_dir, token_for(server), "--ca-fingerprint", fingerprint
    )
    assert result.returncode == 0, result.stderr
    return identity(state_dir)


def run_briefly(state_dir: Path, log: Path, seconds: float = 30) -> int | None:
    """Run the agent until it exits or `seconds` pass; return its exit code (None: still ran)."""
    agent = start_agent(state_dir, log, 1.0)
    try:
        return agent.wait(seconds)
    except subprocess.TimeoutExpired:
        return None
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(15)


def test_mutual_tls_agent_reports_with_its_certificate(
    mtls_server: ServerProcess, tmp_path: Path
) -> None:
    server = mtls_server
    me = enroll_pinned(server, tmp_path / "a")
    assert me["mtls_port"] == int(server.extra_args[-1].rsplit(":", 1)[1])
    assert stat.S_IMODE((tmp_path / "a" / "client.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(me["client_cert_pem"].encode())
    assert cert.subject.rfc4514_string() == f"CN={me['agent_id']}"
    key = serialization.load_pem_private_key((tmp_path / "a" / "client.key").read_bytes(), None)
    assert key.public_key() == cert.public_key()  # the key never left the host
    ca = x509.load_pem_x509_certificate((server.data_dir / "tls" / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    agent = start_agent(tmp_path / "a", tmp_path / "a.log", 1.0)
    try:
        wait_for(lambda: reported(server, me["agent_id"]), 30, "a report over mutual TLS")
        wait_for(lambda: "command stream open" in (tmp_path / "a.log").read_text(), 30, "commands")
        # Remote actions travel on the same channel, with the same certificate.
        [ran] = rmm_json(server, "run", "--target", me["agent_id"], "--command", "echo mtls",
                         "--timeout", "30s")  # fmt: skip
        assert ran["status"] == "succeeded" and ran["stdout"] == "mtls\n", ran
    finally:
        agent.terminate()
        agent.wait(15)


def test_mutual_tls_refuses_a_credential_without_its_own_certificate(
    mtls_server: ServerProcess, tmp_path: Path
) -> None:
    server = mtls_server
    a = enroll_pinned(server, tmp_path / "a")
    b = enroll_pinned(server, tmp_path / "b")

    def variant(name: str, **changes: Any) -> Path:
        state_dir = tmp_path / name
        state_dir.mkdir()
        (state_dir / "identity.json").write_text(json.dumps({**a, **changes}))
        shutil.copy(tmp_path / "a" / "client.key", state_dir / "client.key")
        return state_dir

    # A's credential on the main port, showing no certificate.
    bare = variant("bare", client_cert_pem="", mtls_port=0)
    assert run_briefly(bare, tmp_path / "bare.log") == 3
    assert "presented no client certificate" in (tmp_path / "bare.log").read_text()

    # A's credential with B's certificate and key.
    swapped = variant("swapped", client_cert_pem=b["client_cert_pem"])
    shutil.copy(tmp_path / "b" / "client.key", swapped / "client.key")
    assert run_briefly(swapped, tmp_path / "swapped.log") == 3
    text = (tmp_path / "swapped.log").read_text()
    assert f"names agent '{b['agent_id']}'" in text and f"agent {a['agent_id']}'s" in text

    # A's credential with a certificate for A from another CA: the handshake itself fails.
    own_key = serialization.load_pem_private_key((tmp_path / "a" / "client.key").read_bytes(), None)
    assert isinstance(own_key, ec.EllipticCurvePrivateKey)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, a["agent_id"])]))
        .sign(own_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    forged = variant(
        "forged",
        client_cert_pem=CertificateAuthority.create("other").sign_client_csr(csr, a["agent_id"]),
    )
    assert run_briefly(forged, tmp_path / "forged.log", seconds=6) is None  # keeps retrying
    assert reported(server, a["agent_id"]) == 0  # not one report got through
    assert reported(server, b["agent_id"]) == 0


def test_mutual_tls_enrollment_needs_a_certificate_request(
    mtls_server: ServerProcess, tmp_path: Path
) -> None:
    server = mtls_server
    pem, _ = ca_show(server.data_dir)
    token = token_for(server)
    channel = grpc.secure_channel(server.grpc_address, grpc.ssl_channel_credentials(pem.encode()))
    try:
        with pytest.raises(grpc.RpcError) as refused:
            agent_pb2_grpc.AgentServiceStub(channel).Enroll(
                agent_pb2.EnrollRequest(token=token, agent_version="old"), timeout=30
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "sent no certificate request" in (refused.value.details() or "")
        with pytest.raises(grpc.RpcError) as garbage:
            agent_pb2_grpc.AgentServiceStub(channel).Enroll(
                agent_pb2.EnrollRequest(token=token, agent_version="x", csr_pem="junk"),
                timeout=30,
            )
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        channel.close()
    (row,) = [t for t in rmm_json(server, "tokens", "list") if token.startswith(f"rmme_{t['id']}")]
    assert row["uses"] == 0  # refused before the token was spent


# --- what a pinning mistake is told ------------------------------------------------------------


def unpinned_env(**extra: str) -> dict[str, str]:
    """Return an environment with no pin and no gRPC log settings of the caller's."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RMM_", "GRPC_VERBOSITY", "GRPC_TRACE"))
    }
    env.update(extra)
    return env


def assert_pin_advice(stderr: str) -> None:
    """The refusal says what is missing and where to get it, in one line, with no C-core log."""
    assert "no CA is pinned" in stderr, stderr
    assert "--ca-fingerprint" in stderr and "rmm-server ca show" in stderr, stderr
    assert "rmm tokens create" in stderr, stderr
    assert "ssl_transport_security" not in stderr and "Handshake failed" not in stderr, stderr
    assert "is --insecure needed" not in stderr and "this agent pinned" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_a_forgotten_pin_is_named_by_the_cli_and_enroll(
    own_ca_server: ServerProcess, tmp_path: Path
) -> None:
    """The issue's case: no fingerprint given; gRPC's own log line and wrong hints before."""
    server = own_ca_server
    env = unpinned_env(RMM_SERVER=server.grpc_address, RMM_TOKEN=server.admin_token)
    cli = subprocess.run(
        [str(BIN / "rmm"), "agents", "list"], capture_output=True, text=True, timeout=60, env=env
    )
    assert cli.returncode == 1
    assert_pin_advice(cli.stderr)
    assert "RMM_CA_FINGERPRINT" in cli.stderr

    enroll = subprocess.run(
        [str(BIN / "rmm-agent"), "enroll", "--server", server.grpc_address,
         "--token", token_for(server), "--state-dir", str(tmp_path / "agent")],
        capture_output=True, text=True, timeout=60, env=unpinned_env(),
    )  # fmt: skip
    assert enroll.returncode == 1
    assert enroll.stderr.startswith("rmm-agent: enrollment failed: the server at ")
    assert_pin_advice(enroll.stderr)

    # --insecure against a TLS server is named as that, not as a server that is down.
    plain = subprocess.run(
        [str(BIN / "rmm"), "--insecure", "agents", "list"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert plain.returncode == 1
    assert "closes --insecure connections; drop --insecure" in plain.stderr, plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1, plain.stderr


def test_tls_against_a_plaintext_server_says_it_runs_insecure(
    server: ServerProcess, tmp_path: Path
) -> None:
    env = unpinned_env(RMM_SERVER=server.grpc_address, RMM_TOKEN=server.admin_token)
    cli = subprocess.run(
        [str(BIN / "rmm"), "agents", "list"], capture_output=True, text=True, timeout=60, env=env
    )
    assert cli.returncode == 1
    assert "does not speak TLS" in cli.stderr and "--insecure" in cli.stderr, cli.stderr
    assert "Handshake failed" not in cli.stderr, cli.stderr


def test_an_agent_that_pinned_nothing_is_not_told_it_pinned_a_ca(
    own_ca_server: ServerProcess, tmp_path: Path
) -> None:
    """Enrolled trusting the system's CAs (here: a roots file holding the server's CA), then
    run where those CAs no longer vouch for the server: the log must not speak of a pin."""
    server = own_ca_server
    roots = server.data_dir / "tls" / "ca.pem"
    state_dir, log = tmp_path / "agent", tmp_path / "agent.log"
    enrolled = subprocess.run(
        [str(BIN / "rmm-agent"), "enroll", "--server", server.grpc_address,
         "--token", token_for(server), "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=60,
        env=unpinned_env(GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=str(roots)),
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    assert identity(state_dir)["ca_cert_pem"] == ""  # nothing pinned: the system's CAs
    other_roots = tmp_path / "other-roots.pem"
    other_roots.write_bytes(CertificateAuthority.create("other").pem)
    agent = subprocess.Popen(
        [str(BIN / "rmm-agent"), "run", "--state-dir", str(state_dir), "--interval", "1"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
        env=unpinned_env(GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=str(other_roots)),
    )  # fmt: skip
    try:
        marker = "ERROR rmm_agent.runner: refused the server at"

        def refused() -> list[str]:
            return [line for line in log.read_text().splitlines() if marker in line]

        [line, *_] = wait_for(refused, 60, f"the agent to refuse the server (log: {log})")
        assert "no CA is pinned" in line and "rmm-server ca show" in line, line
        assert "this agent pinned" not in line, line
        assert "ssl_transport_security" not in log.read_text()
    finally:
        agent.terminate()
        agent.wait(15)
