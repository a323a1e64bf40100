"""The agent's channel against real gRPC servers on loopback, plaintext and TLS (a CA made here,
as the server makes its own): the pinned CA is the only one trusted, a client certificate makes it
mutual, and each way a call fails is described in one line that says what to do."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from rmm_agent.state import Identity, StateDir
from rmm_agent.transport import (
    agent_address,
    agent_channel,
    describe_rpc_error,
    is_tls_refusal,
    make_client_key,
    open_channel,
)
from rmm_proto import agent_pb2, agent_pb2_grpc
from rmm_server.tls import CertificateAuthority, ServerTls, load_or_create

WAIT = 30.0
pytestmark = pytest.mark.timeout(120)


class Echo(agent_pb2_grpc.AgentServiceServicer):
    """Enroll answers with the token it was given; a token "hang" waits until released;
    "missing" is refused NOT_FOUND."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def Enroll(
        self, request: agent_pb2.EnrollRequest, context: grpc.ServicerContext
    ) -> agent_pb2.EnrollResponse:
        if request.token == "hang":
            self.release.wait(WAIT)
        if request.token == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return agent_pb2.EnrollResponse(agent_id=request.token)


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ServerTls:
    return load_or_create(tmp_path_factory.mktemp("server"))


@pytest.fixture
def echo() -> Echo:
    return Echo()


def serve(echo: Echo, credentials: grpc.ServerCredentials | None) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(echo, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def tls_server(echo: Echo, server_tls: ServerTls) -> Iterator[str]:
    server, address = serve(echo, server_tls.credentials())
    yield address
    echo.release.set()
    server.stop(grace=None).wait(WAIT)


@pytest.fixture
def plain_server(echo: Echo) -> Iterator[str]:
    server, address = serve(echo, None)
    yield address
    echo.release.set()
    server.stop(grace=None).wait(WAIT)


def enroll(channel: grpc.Channel, token: str = "ok", timeout: float = WAIT) -> str:
    try:
        response = agent_pb2_grpc.AgentServiceStub(channel).Enroll(
            agent_pb2.EnrollRequest(token=token), timeout=timeout
        )
        return str(response.agent_id)
    finally:
        channel.close()


def failure(channel: grpc.Channel, token: str = "ok", timeout: float = WAIT) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failed:
        enroll(channel, token, timeout)
    return failed.value


def other_ca() -> str:
    return CertificateAuthority.create("someone else's CA").pem.decode()


def test_the_pinned_ca_is_trusted(tls_server: str, server_tls: ServerTls) -> None:
    assert enroll(open_channel(tls_server, False, server_tls.ca_pem.decode())) == "ok"


def test_a_server_whose_certificate_another_ca_signed_is_refused_and_said_so(
    tls_server: str,
) -> None:
    error = failure(open_channel(tls_server, False, other_ca()))
    assert is_tls_refusal(error)
    said = describe_rpc_error(error, tls_server, pinned=True)
    assert said.startswith(
        f"refused the server at {tls_server}: its TLS certificate is not signed by the CA this "
        "agent pinned at enrollment, or not for that name (CERTIFICATE_VERIFY_FAILED"
    ), said
    assert (
        "if the server's CA changed on purpose, enroll again (rmm-agent enroll --force) and "
        "pin the server's CA with --ca-fingerprint sha256:<hex>"
    ) in said


def test_without_a_pinned_ca_a_private_ca_is_not_trusted_and_the_advice_is_to_pin_it(
    tls_server: str,
) -> None:
    # The system's CAs know nothing of the server's own CA.
    error = failure(open_channel(tls_server, False))
    assert is_tls_refusal(error)
    said = describe_rpc_error(error, tls_server, pinned=False)
    assert "no CA is pinned, so only the system's CAs are trusted" in said
    assert "enroll again (rmm-agent enroll --force) and pin the server's CA" in said


def test_a_server_that_is_not_there_is_unreachable_not_a_tls_problem() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    error = failure(open_channel(address, True))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert not is_tls_refusal(error)
    assert describe_rpc_error(error, address, pinned=True).startswith(
        f"cannot reach the server at {address}: "
    )


def test_a_slow_answer_and_a_refused_call_are_described(plain_server: str, echo: Echo) -> None:
    slow = failure(open_channel(plain_server, True), token="hang", timeout=0.2)
    echo.release.set()
    assert describe_rpc_error(slow, plain_server, pinned=False) == (
        f"the server at {plain_server} did not answer in time"
    )
    refused = failure(open_channel(plain_server, True), token="missing")
    assert describe_rpc_error(refused, plain_server, pinned=False) == (
        f"the server at {plain_server} refused the call (NOT_FOUND): no such thing"
    )


def test_mutual_tls_with_the_agents_own_key_and_certificate(
    tmp_path: Path, echo: Echo, server_tls: ServerTls
) -> None:
    clients = CertificateAuthority.create("client CA")
    credentials = grpc.ssl_server_credentials(
        [(server_tls.key_pem, server_tls.chain_pem)],
        root_certificates=clients.pem,
        require_client_auth=True,
    )
    server, address = serve(echo, credentials)
    try:
        key_pem, csr_pem = make_client_key()
        request = x509.load_pem_x509_csr(csr_pem.encode())
        assert request.is_signature_valid
        state = StateDir(tmp_path / "state")
        state.save_client_key(key_pem)
        host, port = address.rsplit(":", 1)
        identity = Identity(
            agent_id="agent1",
            credential="c",
            server=f"{host}:1",  # the main port; calls go to the mutual-TLS one
            client="acme",
            site="hq",
            ca_cert_pem=server_tls.ca_pem.decode(),
            client_cert_pem=clients.sign_client_csr(csr_pem, "agent1"),
            mtls_port=int(port),
        )
        assert enroll(agent_channel(identity, state.path)) == "ok"
        # Without its certificate the same server turns the agent away.
        refused = failure(open_channel(address, False, server_tls.ca_pem.decode()))
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=None).wait(WAIT)


@pytest.mark.parametrize(
    ("server", "mtls_port", "expected"),
    [
        ("rmm.example.net:50051", 0, "rmm.example.net:50051"),
        ("rmm.example.net:50051", 50052, "rmm.example.net:50052"),
        ("10.0.0.5:443", 8443, "10.0.0.5:8443"),
        ("[2001:db8::1]:50051", 50052, "[2001:db8::1]:50052"),
    ],
)
def test_calls_go_to_the_mutual_tls_port_when_the_agent_has_one(
    server: str, mtls_port: int, expected: str
) -> None:
    identity = Identity(
        agent_id="a", credential="c", server=server, client="x", site="y", mtls_port=mtls_port
    )
    assert agent_address(identity) == expected
